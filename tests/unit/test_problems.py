"""Problem loading: formats, ids, world specs, and a one-line error for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridcot.data.problems import (
    MAX_LINE_BYTES,
    Problem,
    load_problems,
    parse_world_spec,
    problem_from_record,
    write_problems,
)
from hybridcot.io import HybridcotError


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_formats_are_detected_per_record(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "mixed.jsonl", [
        {"question": "Ann has 1,200 apples...", "answer": "She has <<1200+3=1203>>1203.\n#### 1,203"},
        {"problem": "What is $1/2$?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": "Level 3",
         "type": "Algebra"},
        {"problem": "P3", "solution": "so \\boxed{7}", "answer": "8", "unique_id": "test/x.json"},
        {"id": 17, "problem": "P4", "answer": 27.0, "level": 2, "source": "amc"},
        {"question": "P5", "answer": 3},
        {"problem": "P6", "solution": "\\boxed{\\sqrt{2}}", "answer": None},
    ])
    ps = load_problems(f)
    assert [p.answer for p in ps] == ["1203", "\\frac{1}{2}", "8", "27", "3", "\\sqrt{2}"]
    assert [p.id for p in ps] == ["mixed-0", "mixed-1", "test/x.json", "17", "mixed-4", "mixed-5"]
    assert [p.level for p in ps] == [None, 3, None, 2, None, None]
    assert [p.source for p in ps] == ["mixed", "mixed", "mixed", "amc", "mixed", "mixed"]
    assert ps[0].meta["solution"].endswith("#### 1,203")
    assert ps[1].meta == {"solution": "It is $\\boxed{\\frac{1}{2}}$.", "type": "Algebra"}
    assert ps[0].problem == "Ann has 1,200 apples..."
    assert [p.source for p in load_problems(f, source="mine", limit=2)] == ["mine", "mine"]


def test_json_list_and_data_wrapper(tmp_path: Path) -> None:
    recs = [{"problem": f"p{i}", "answer": str(i)} for i in range(5)]
    (tmp_path / "a.json").write_text(json.dumps(recs))
    (tmp_path / "b.json").write_text(json.dumps({"data": recs}))
    a, b = load_problems(tmp_path / "a.json"), load_problems(str(tmp_path / "b.json"), limit=3)
    assert [p.answer for p in a] == ["0", "1", "2", "3", "4"]
    assert [p.id for p in b] == ["b-0", "b-1", "b-2"]


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"problem": "p", "answer": "1"}, {"problem": "q", "answer": "2"}]),
                   tmp_path / "t.parquet")
    assert [p.answer for p in load_problems(tmp_path / "t.parquet")] == ["1", "2"]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(HybridcotError, match=r"bad\.parquet: cannot read Parquet"):
        load_problems(tmp_path / "bad.parquet")


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    ps = [Problem("a", "What is 1+1?", "2", level=1, source="world", meta={"ops": ["+"]}),
          Problem("b", "x?", "\\frac{1}{2}")]
    assert write_problems(tmp_path / "out" / "p.jsonl", ps) == 2
    assert load_problems(tmp_path / "out" / "p.jsonl") == [ps[0], Problem("b", "x?", "\\frac{1}{2}", source="p")]
    assert not list((tmp_path / "out").glob(".*tmp"))


# ---------------------------------------------------------------- bad input: one line naming file, line, field

GOOD = {"problem": "p", "answer": "1"}
MISSING = "(expected GSM8K 'question'/'answer', MATH 'problem'/'solution', or 'problem'/'answer')"


@pytest.mark.parametrize("bad,message", [
    ({"problem": "p"}, f"field 'answer' is missing {MISSING}"),
    ({"answer": "1"}, f"field 'problem' is missing {MISSING}"),
    ({"problem": "", "answer": "1"}, "field 'problem' is empty"),
    ({"problem": "p", "answer": "  "}, "field 'answer' is empty"),
    ({"problem": "p", "answer": None}, f"field 'answer' is missing (null) {MISSING}"),
    ({"problem": 5, "answer": "1"}, "field 'problem' has type int, expected a string"),
    ({"problem": "p", "answer": [1, 2]}, "field 'answer' has type list, expected a string or number"),
    ({"problem": "p", "answer": True}, "field 'answer' has type bool, expected a string or number"),
    ({"problem": "p", "answer": "1", "level": "hard"}, "field 'level' must be an integer or 'Level N', got 'hard'"),
    ({"problem": "p", "answer": "1", "id": ["x"]}, "field 'id' must be a non-empty string or integer"),
    ({"problem": "p", "solution": "no box"}, "field 'solution' has no \\boxed{} answer"),
    ({"question": "q", "answer": "work\n####"}, "field 'answer' has an empty '####' line"),
    ({"problem": "p", "answer": "1", "meta": 3}, "field 'meta' has type int, expected an object"),
    ({"problem": "p", "answer": "1", "source": 3}, "field 'source' has type int, expected a string"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_bad_record_names_file_line_and_field(tmp_path: Path, bad, message: str) -> None:
    f = _jsonl(tmp_path / "data.jsonl", [GOOD] * 6 + [bad])
    with pytest.raises(HybridcotError) as e:
        load_problems(f)
    assert str(e.value) == f"{f}:7: {message}" or str(e.value).startswith(f"{f}:7: {message}")
    assert "\n" not in str(e.value)
    # the same record in a JSON array is named by its index
    (tmp_path / "data.json").write_text(json.dumps([GOOD, bad]))
    with pytest.raises(HybridcotError, match=r"data\.json\[1\]: "):
        load_problems(tmp_path / "data.json")


def test_bad_files(tmp_path: Path) -> None:
    def err(name: str, data: bytes) -> str:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(HybridcotError) as e:
            load_problems(tmp_path / name)
        assert "\n" not in str(e.value)
        return str(e.value)

    good = json.dumps(GOOD).encode() + b"\n"
    assert err("a.jsonl", good * 2 + b'{"problem": "p", "answer": \n') == f"{tmp_path}/a.jsonl:3: invalid JSON: Expecting value (column 28)"
    assert err("b.jsonl", good + b'{"problem": "\xff\xfe", "answer": "1"}\n') == f"{tmp_path}/b.jsonl:2: not valid UTF-8 (byte 13 of the line)"
    big = b'{"problem": "' + b"x" * (MAX_LINE_BYTES + 1) + b'", "answer": "1"}\n'
    assert err("c.jsonl", good + big).startswith(f"{tmp_path}/c.jsonl:2: line is 10.0 MiB, over the 10 MiB limit")
    assert err("d.json", b'[\n{"problem": "p",\n "answer": }]') == f"{tmp_path}/d.json:3: invalid JSON: Expecting value (column 12)"
    assert err("e.json", b'{"rows": []}').startswith(f"{tmp_path}/e.json: expected a list of problem objects")
    assert err("f.json", b'[{"problem": "p", "answer": "\xc3"}]').startswith(f"{tmp_path}/f.json:1: not valid UTF-8")
    assert err("g.csv", b"problem,answer\n").startswith(f"{tmp_path}/g.csv: unsupported problem file type '.csv'")
    assert err("h.jsonl", b"\n\n") == f"{tmp_path}/h.jsonl: no problems in file"
    dup = json.dumps({"id": "x", **GOOD}).encode() + b"\n"
    assert err("i.jsonl", dup + good + dup) == f"{tmp_path}/i.jsonl:3: field 'id' duplicates id 'x' (first seen at {tmp_path}/i.jsonl:1)"
    with pytest.raises(HybridcotError, match="nope.jsonl: file not found"):
        load_problems(tmp_path / "nope.jsonl")
    with pytest.raises(HybridcotError, match="limit must be"):
        load_problems(tmp_path / "a.jsonl", limit=-1)


def test_problem_from_record_directly() -> None:
    p = problem_from_record({"question": "q", "answer": "x\n#### $5"}, default_id="q-1")
    assert (p.id, p.answer) == ("q-1", "5")
    with pytest.raises(HybridcotError, match=r"^row 3: field 'answer' is missing"):
        problem_from_record({"problem": "p"}, where="row 3")


# ---------------------------------------------------------------- world specs


def test_world_specs_are_reproducible() -> None:
    a = load_problems("world:test:50:seed=0")
    assert a == load_problems("world:test:50:seed=0")
    assert len(a) == 50 and len({p.id for p in a}) == 50
    assert {p.level for p in a} == {1, 2, 3, 4, 5}
    assert all(p.source == "world" and p.answer.lstrip("-").isdigit() for p in a)
    assert a[0].meta["operands"] and "ops" in a[0].meta
    assert [p.problem for p in load_problems("world:test:50:seed=1")] != [p.problem for p in a]
    assert [p.problem for p in load_problems("world:train:50:seed=0")] != [p.problem for p in a]
    lv = load_problems("world:train:20:seed=3:levels=1,5", limit=7)
    assert len(lv) == 7 and {p.level for p in lv} == {1, 5}


def test_world_answers_are_right() -> None:
    for p in load_problems("world:val:30:seed=2"):
        ops, operands = p.meta["ops"], p.meta["operands"]
        expr = str(operands[0]) + "".join(f"{o}{x}" for o, x in zip(ops, operands[1:]))
        assert expr in p.problem and str(eval(expr)) == p.answer


@pytest.mark.parametrize("spec,why", [
    ("world:test", "needs at least a split and a count"),
    ("world:dev:10", "split must be one of"),
    ("world:test:0", "count must be a positive integer"),
    ("world:test:ten", "count must be a positive integer"),
    ("world:test:10:seed=x", "seed must be an integer"),
    ("world:test:10:levels=0,6", "levels must be a comma list"),
    ("world:test:10:temp=1", "unknown option 'temp'"),
    ("world:test:10:seed", "is not key=value"),
    ("world:test:10:seed=1:seed=2", "given twice"),
])
def test_bad_world_specs(spec: str, why: str) -> None:
    with pytest.raises(HybridcotError) as e:
        load_problems(spec)
    assert why in str(e.value) and "grammar: world:" in str(e.value) and spec in str(e.value)


def test_parse_world_spec_defaults() -> None:
    assert parse_world_spec("world:train:2000") == {"split": "train", "n": 2000, "seed": 0, "levels": (1, 2, 3, 4, 5)}
