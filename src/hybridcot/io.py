"""Plain-artifact I/O: atomic writes, JSON, JSONL with line-precise errors.

Every artifact a stage writes goes through `atomic_write` (temp file in the same folder, fsync,
rename), so a crash never leaves a file that a later stage would read as complete. JSONL outputs
that grow (samples, rollouts) are appended a whole line at a time and flushed, and readers skip a
torn last line left by a kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class HybridcotError(Exception):
    """A user-facing error: printed as one line by the CLI (no traceback unless --debug)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temp file beside `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (or the replaced file's).
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=_json_default)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise HybridcotError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise HybridcotError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise HybridcotError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    n = 0
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike, *, allow_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, record). Blank lines are skipped.

    A malformed line raises HybridcotError naming file and line. With `allow_torn_tail`, a last line
    without its newline that does not parse (a write cut short by a kill) is silently dropped: that
    is how append-only outputs resume.
    """
    path = Path(path)
    if not path.exists():
        raise HybridcotError(f"{path}: file not found")
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    last = len(lines)
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        torn = i == last and not data.endswith(b"\n")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if torn and allow_torn_tail:
                return
            raise HybridcotError(f"{path}:{i}: not valid UTF-8 (byte {e.start})") from None
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            if torn and allow_torn_tail:
                return
            raise HybridcotError(f"{path}:{i}: invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(rec, dict):
            raise HybridcotError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
        yield i, rec


def read_jsonl(path: str | os.PathLike, *, allow_torn_tail: bool = False) -> list[dict]:
    return [r for _, r in iter_jsonl(path, allow_torn_tail=allow_torn_tail)]


class JsonlAppender:
    """Append whole records to a JSONL file that a killed run can resume.

    On open, a torn last line (no trailing newline) is truncated away, so the file only ever holds
    complete records. Each `write` flushes; `fsync_every` bounds how much a power loss can cost.
    """

    def __init__(self, path: str | os.PathLike, fsync_every: int = 16):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_torn_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._since_sync = 0
        self.fsync_every = fsync_every

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
        self._f.flush()
        self._since_sync += 1
        if self._since_sync >= self.fsync_every:
            os.fsync(self._f.fileno())
            self._since_sync = 0

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    """Cut an unterminated last line, or terminate it when it is a whole JSON object.

    The second case (a record written without its newline) is what `iter_jsonl(allow_torn_tail=True)`
    yields as complete, so a resume that counted it as done must not lose it here.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            whole = isinstance(json.loads(data[cut:].decode("utf-8")), dict)
        except (UnicodeDecodeError, json.JSONDecodeError):
            whole = False
        if whole:
            f.write(b"\n")
        else:
            f.truncate(cut)


_UMASK: int | None = None


def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def _json_default(o: Any):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def swap_dir_into_place(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename the finished folder `tmp` to `out`. An existing `out` (folder, file or symlink) is moved
    aside first and removed only once `tmp` is in place: deleting it first would leave, after a kill,
    a half-deleted folder that may still hold the marker saying it is finished."""
    import shutil
    import time

    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
