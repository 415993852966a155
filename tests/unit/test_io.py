"""io.py: atomic writes that never leave a half file, JSON/JSONL round trips, line-precise errors, torn tails."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from hybridcot.io import (
    HybridcotError,
    JsonlAppender,
    atomic_write,
    iter_jsonl,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- atomic_write ----

def test_atomic_write_keeps_old_file_when_writer_raises(tmp_path: Path) -> None:
    f = tmp_path / "out.txt"
    f.write_text("old content\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(f) as h:
        h.write("new content that must not land")
        raise RuntimeError("boom")
    assert f.read_text(encoding="utf-8") == "old content\n"
    assert _leftovers(tmp_path) == []


def test_atomic_write_failure_on_fresh_path_creates_nothing(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "new.json"
    with pytest.raises(KeyboardInterrupt), atomic_write(f) as h:
        h.write("{")
        raise KeyboardInterrupt  # BaseException, as a Ctrl-C mid-write is
    assert not f.exists()
    assert list(f.parent.iterdir()) == []


def test_atomic_write_replaces_and_makes_parents(tmp_path: Path) -> None:
    f = tmp_path / "a" / "b" / "x.bin"
    with atomic_write(f, "wb") as h:
        h.write(b"\x00\xff")
    with atomic_write(f, "wb") as h:
        h.write(b"second")
    assert f.read_bytes() == b"second"
    assert _leftovers(f.parent) == []


def test_atomic_write_gives_normal_permissions(tmp_path: Path) -> None:
    # mkstemp makes 0600 files; an artifact should get the mode a plain open() gives (0666 & ~umask),
    # and a replaced file keeps its mode.
    umask = os.umask(0o022)
    os.umask(umask)
    f = tmp_path / "m.json"
    write_json(f, {"a": 1})
    assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask
    os.chmod(f, 0o640)
    write_json(f, {"a": 2})
    assert stat.S_IMODE(f.stat().st_mode) == 0o640


# ---- JSON ----

def test_write_read_json_round_trip(tmp_path: Path) -> None:
    obj = {"name": "ΔA ∑ \\boxed{7}", "xs": [1, 2.5, None, True], "nested": {"k": []}}
    write_json(tmp_path / "m.json", obj)
    assert read_json(tmp_path / "m.json") == obj
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert "ΔA" in text and text.endswith("\n")  # not \u-escaped, newline-terminated


def test_write_json_converts_numpy_paths_and_sets(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"a": np.arange(3), "p": Path("x/y"), "s": {3, 1}})
    assert read_json(tmp_path / "m.json") == {"a": [0, 1, 2], "p": "x/y", "s": [1, 3]}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(tmp_path / "bad.json", {"o": object()})
    assert not (tmp_path / "bad.json").exists() and _leftovers(tmp_path) == []


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(HybridcotError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{\n  "a": 1,\n  "b": \n}\n', encoding="utf-8")
    with pytest.raises(HybridcotError, match=r"bad\.json:4: invalid JSON"):
        read_json(tmp_path / "bad.json")


# ---- JSONL ----

def test_jsonl_round_trip_skips_blank_lines(tmp_path: Path) -> None:
    recs = [{"id": i, "text": "é\n∑"} for i in range(3)]
    assert write_jsonl(tmp_path / "r.jsonl", iter(recs)) == 3
    assert read_jsonl(tmp_path / "r.jsonl") == recs
    (tmp_path / "g.jsonl").write_text('{"a": 1}\n\n   \n{"a": 2}\n', encoding="utf-8")
    assert list(iter_jsonl(tmp_path / "g.jsonl")) == [(1, {"a": 1}), (4, {"a": 2})]


@pytest.mark.parametrize(("body", "pattern"), [
    (b'{"a": 1}\n{"a": \n{"a": 3}\n', r"bad\.jsonl:2: invalid JSON: .* \(column \d+\)"),
    (b'{"a": 1}\n{"a": 2}\n[1, 2]\n', r"bad\.jsonl:3: expected a JSON object, got list"),
    (b'{"a": 1}\n"text"\n', r"bad\.jsonl:2: expected a JSON object, got str"),
    (b'{"a": 1}\n{"a": "\xff\xfe"}\n', r"bad\.jsonl:2: not valid UTF-8 \(byte \d+\)"),
])
def test_iter_jsonl_errors_name_file_and_line(tmp_path: Path, body: bytes, pattern: str) -> None:
    (tmp_path / "bad.jsonl").write_bytes(body)
    with pytest.raises(HybridcotError, match=pattern) as e:
        read_jsonl(tmp_path / "bad.jsonl")
    assert "\n" not in str(e.value)
    # the same errors hold with allow_torn_tail: these lines are terminated, so they are not torn
    with pytest.raises(HybridcotError, match=pattern):
        read_jsonl(tmp_path / "bad.jsonl", allow_torn_tail=True)


def test_iter_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HybridcotError, match="nope.jsonl: file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("tail", [b'{"id": 3, "te', b'{"id": 3, "t": "\xe2\x88', b"{"])
def test_allow_torn_tail_drops_only_the_unterminated_last_line(tmp_path: Path, tail: bytes) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(b'{"id": 1}\n{"id": 2}\n' + tail)
    assert read_jsonl(f, allow_torn_tail=True) == [{"id": 1}, {"id": 2}]
    with pytest.raises(HybridcotError, match=r"t\.jsonl:3: "):
        read_jsonl(f)


def test_allow_torn_tail_still_rejects_a_bad_middle_line(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(b'{"id": 1}\n{"id": \n{"id": 3}')
    with pytest.raises(HybridcotError, match=r"t\.jsonl:2: invalid JSON"):
        read_jsonl(f, allow_torn_tail=True)


def test_unterminated_but_whole_last_record_is_kept(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(b'{"id": 1}\n{"id": 2}')
    assert read_jsonl(f) == read_jsonl(f, allow_torn_tail=True) == [{"id": 1}, {"id": 2}]


# ---- JsonlAppender ----

def test_appender_truncates_torn_tail_then_appends_whole_lines(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_bytes(b'{"id": 1}\n{"id": 2}\n{"id": 3, "sam')
    with JsonlAppender(f, fsync_every=1) as app:
        assert f.read_bytes() == b'{"id": 1}\n{"id": 2}\n'  # cut on open, before any write
        app.write({"id": 3, "text": "∑ done"})
        app.write({"id": 4})
        # flushed per record: a reader sees whole lines while the appender is still open
        assert [r["id"] for r in read_jsonl(f)] == [1, 2, 3, 4]
    data = f.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 4
    assert read_jsonl(f)[2] == {"id": 3, "text": "∑ done"}


def test_appender_keeps_a_whole_unterminated_record(tmp_path: Path) -> None:
    # iter_jsonl(allow_torn_tail=True) yields this record, so a resume counts it as done: the appender
    # must keep it (terminating the line), not cut it, or the record would be lost for good.
    f = tmp_path / "s.jsonl"
    f.write_bytes(b'{"id": 1}\n{"id": 2}')
    done = {r["id"] for r in read_jsonl(f, allow_torn_tail=True)}
    with JsonlAppender(f) as app:
        app.write({"id": 3})
    assert done == {1, 2}
    assert read_jsonl(f) == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_appender_creates_file_and_parents_and_close_is_idempotent(tmp_path: Path) -> None:
    f = tmp_path / "deep" / "new.jsonl"
    app = JsonlAppender(f)
    app.write({"x": np.float32(0.5)})
    app.close()
    app.close()
    assert json.loads(f.read_text(encoding="utf-8")) == {"x": 0.5}


def test_appender_on_a_file_with_only_a_torn_line(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_bytes(b'{"id": 1, "tex')
    with JsonlAppender(f) as app:
        app.write({"id": 1})
    assert f.read_bytes() == b'{"id": 1}\n'


def test_swap_dir_into_place_replaces_folders_files_and_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from hybridcot.io import swap_dir_into_place

    def folder(name: str, text: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "f.txt").write_text(text)
        return d

    out = tmp_path / "out"
    swap_dir_into_place(folder("t1", "one"), out)  # fresh
    assert (out / "f.txt").read_text() == "one"
    swap_dir_into_place(folder("t2", "two"), out)  # over a folder
    assert (out / "f.txt").read_text() == "two"
    link = tmp_path / "link"
    link.symlink_to(out)
    swap_dir_into_place(folder("t3", "three"), link)  # over a symlink: the link goes, its target stays
    assert not link.is_symlink() and (link / "f.txt").read_text() == "three" and (out / "f.txt").read_text() == "two"
    # a failing rename puts the old folder back, whole
    real = os.replace
    calls = []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(a, b)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        swap_dir_into_place(folder("t4", "four"), out)
    monkeypatch.setattr(os, "replace", real)
    assert (out / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
