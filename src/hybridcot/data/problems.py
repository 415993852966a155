"""Problem sets: load GSM8K / MATH / AIME / AMC-style files or the embedded world, one `Problem` type.

    from hybridcot.data.problems import load_problems
    load_problems("../shared/data/benchmarks/math500.json")
    load_problems("world:test:500:seed=0:levels=1,5")

A spec is either a file path or a world spec.

**Files**: `.jsonl` (one object a line), `.json` (a list of objects, or `{"data": [...]}`),
`.parquet` (read with pyarrow). The format is detected per record:

* GSM8K: `question` + `answer` whose text has a `#### N` line -> answer N, the worked solution
  kept in `meta["solution"]`;
* MATH: `problem` + `solution` with `\\boxed{}` (+ `answer` if present, which wins over the
  boxed one); `level` "Level 3" -> 3;
* generic: `problem` (or `question`) + `answer`, optional `id`, `level`, `source`, `meta`.

Answers given as numbers are kept as text (`27.0` -> "27"). Ids are the record's `id` (or
`unique_id`), else `<file stem>-<index>`; a duplicate id is an error. Other fields go into `meta`.

**World specs**: `world:<split>:<n>[:seed=<int>][:levels=<l>,<l>...]`, with split one of
train/val/test, `n` > 0 problems, seed default 0, levels (1..5) default all; e.g.
`world:train:2000:seed=1`. The same spec always gives the same problems.

Bad input raises HybridcotError with one line naming the file, the JSONL line (or `[index]` of
a JSON/Parquet record) and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridcot.grading import extract_boxed, extract_gsm8k_answer
from hybridcot.io import HybridcotError, write_jsonl

MAX_LINE_BYTES = 10 * 1024 * 1024
EXPECTED = "expected GSM8K 'question'/'answer', MATH 'problem'/'solution', or 'problem'/'answer'"
WORLD_GRAMMAR = "world:<train|val|test>:<n>[:seed=<int>][:levels=<l>,<l>...]"
WORLD_SPLITS = ("train", "val", "test")
_GSM8K_FINAL = re.compile(r"^\s*####", re.MULTILINE)
_KNOWN = {"id", "unique_id", "problem", "question", "answer", "solution", "level", "source", "meta"}


@dataclass
class Problem:
    id: str
    problem: str
    answer: str
    level: int | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        """A plain dict that `load_problems` reads back as the same Problem."""
        rec: dict[str, Any] = {"id": self.id, "problem": self.problem, "answer": self.answer,
                               "level": self.level, "source": self.source}
        if self.meta:
            rec["meta"] = self.meta
        return rec


def load_problems(spec: str | os.PathLike, *, limit: int | None = None, source: str | None = None) -> list[Problem]:
    """Problems from a file or a `world:` spec (see the module docstring); at most `limit` of them.

    `source`, if given, overrides each problem's source (default: the record's, else the file stem).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise HybridcotError(f"limit must be a non-negative integer or None, got {limit!r}")
    if isinstance(spec, str) and spec.startswith("world:"):
        problems = _load_world(spec)
        if source is not None:
            for p in problems:
                p.source = source
        return problems if limit is None else problems[:limit]
    path = Path(spec)
    if not path.is_file():
        raise HybridcotError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = _iter_jsonl(path)
    elif suffix == ".json":
        records = _iter_json(path)
    elif suffix == ".parquet":
        records = _iter_parquet(path)
    else:
        raise HybridcotError(f"{path}: unsupported problem file type '{suffix}' "
                             f"(expected .jsonl, .json, .parquet, or a spec like 'world:test:500:seed=0')")
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for index, (where, rec) in enumerate(records):
        if limit is not None and len(problems) >= limit:
            break
        p = problem_from_record(rec, where=where, default_id=f"{path.stem}-{index}", default_source=path.stem)
        if source is not None:
            p.source = source
        if p.id in first_seen:
            raise HybridcotError(f"{where}: field 'id' duplicates id {p.id!r} (first seen at {first_seen[p.id]})")
        first_seen[p.id] = where
        problems.append(p)
    if not problems and limit != 0:
        raise HybridcotError(f"{path}: no problems in file")
    return problems


def write_problems(path: str | os.PathLike, problems: Iterable[Problem]) -> int:
    """Write problems as JSONL atomically; returns how many."""
    return write_jsonl(path, (p.to_record() for p in problems))


# ---------------------------------------------------------------- one record


def problem_from_record(rec: dict, *, where: str = "record", default_id: str = "problem",
                        default_source: str = "") -> Problem:
    """One Problem from a GSM8K, MATH or generic record; HybridcotError names `where` and the field."""
    if not isinstance(rec, dict):
        raise HybridcotError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    meta: dict[str, Any] = {k: v for k, v in rec.items() if k not in _KNOWN}
    if "meta" in rec and rec["meta"] is not None:
        if not isinstance(rec["meta"], dict):
            raise HybridcotError(f"{where}: field 'meta' has type {type(rec['meta']).__name__}, expected an object")
        meta.update(rec["meta"])
    text_key = "problem" if "problem" in rec else "question" if "question" in rec else None
    if text_key is None:
        raise HybridcotError(f"{where}: field 'problem' is missing ({EXPECTED})")
    text = _text(rec, text_key, where)
    solution = rec.get("solution")
    answer_raw = rec.get("answer")
    if isinstance(answer_raw, str) and _GSM8K_FINAL.search(answer_raw):  # GSM8K
        try:
            answer = extract_gsm8k_answer(answer_raw)
        except ValueError:
            raise HybridcotError(f"{where}: field 'answer' has an empty '####' line") from None
        meta["solution"] = answer_raw
    elif answer_raw is not None:  # generic, or MATH with an explicit answer
        answer = _answer(answer_raw, where)
        if solution is not None:
            meta["solution"] = _text(rec, "solution", where)
    elif solution is not None:  # MATH without an answer field
        solution = _text(rec, "solution", where)
        boxed = extract_boxed(solution)
        if boxed is None or not boxed.strip():
            raise HybridcotError(f"{where}: field 'solution' has no \\boxed{{}} answer and field 'answer' is missing")
        answer = boxed.strip()
        meta["solution"] = solution
    else:
        null = " (null)" if "answer" in rec else ""
        raise HybridcotError(f"{where}: field 'answer' is missing{null} ({EXPECTED})")
    pid = rec.get("id", rec.get("unique_id"))
    id_key = "id" if "id" in rec else "unique_id"
    if pid is None:
        pid = default_id
    elif isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
        raise HybridcotError(f"{where}: field '{id_key}' must be a non-empty string or integer, got {pid!r}")
    src = rec.get("source")
    if src is not None and not isinstance(src, str):
        raise HybridcotError(f"{where}: field 'source' has type {type(src).__name__}, expected a string")
    if "unique_id" in rec and "id" in rec:
        meta["unique_id"] = rec["unique_id"]
    return Problem(id=str(pid), problem=text, answer=answer, level=_level(rec.get("level"), where),
                   source=src or default_source, meta=meta)


def _text(rec: dict, key: str, where: str) -> str:
    v = rec[key]
    if v is None:
        raise HybridcotError(f"{where}: field '{key}' is missing (null)")
    if not isinstance(v, str):
        raise HybridcotError(f"{where}: field '{key}' has type {type(v).__name__}, expected a string")
    if not v.strip():
        raise HybridcotError(f"{where}: field '{key}' is empty")
    return v


def _answer(v: Any, where: str) -> str:
    if v is None:
        raise HybridcotError(f"{where}: field 'answer' is missing (null)")
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise HybridcotError(f"{where}: field 'answer' has type {type(v).__name__}, expected a string or number")
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise HybridcotError(f"{where}: field 'answer' is not a finite number: {v}")
        return str(int(v)) if v.is_integer() else repr(v)
    s = str(v).strip()
    if not s:
        raise HybridcotError(f"{where}: field 'answer' is empty")
    return s


_LEVEL_RE = re.compile(r"(?:level\s*)?(\d+)", re.IGNORECASE)


def _level(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise HybridcotError(f"{where}: field 'level' must be an integer or 'Level N', got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        m = _LEVEL_RE.fullmatch(v.strip())
        if m:
            return int(m.group(1))
        if v.strip().lower() in ("", "level ?", "?"):  # MATH has a few "Level ?"
            return None
    raise HybridcotError(f"{where}: field 'level' must be an integer or 'Level N', got {v!r}")


# ---------------------------------------------------------------- readers: (where, record) pairs


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    data = path.read_bytes()
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path}:{lineno}"
        if len(raw) > MAX_LINE_BYTES:
            raise HybridcotError(f"{where}: line is {len(raw) / 2**20:.1f} MiB, over the "
                                 f"{MAX_LINE_BYTES // 2**20} MiB limit for one record")
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HybridcotError(f"{where}: not valid UTF-8 (byte {e.start} of the line)") from None
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            raise HybridcotError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
        yield where, rec


def _iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise HybridcotError(f"{path}:{line}: not valid UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise HybridcotError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        got = f"an object with keys {sorted(obj)[:5]}" if isinstance(obj, dict) else type(obj).__name__
        raise HybridcotError(f'{path}: expected a list of problem objects or {{"data": [...]}}, got {got}')
    for i, rec in enumerate(obj):
        yield f"{path}[{i}]", rec


def _iter_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises many types for a bad file
        raise HybridcotError(f"{path}: cannot read Parquet: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    for i, rec in enumerate(rows):
        yield f"{path}[{i}]", rec


# ---------------------------------------------------------------- the embedded world


def parse_world_spec(spec: str) -> dict:
    """`world:test:500:seed=0:levels=1,5` -> {"split": "test", "n": 500, "seed": 0, "levels": (1, 5)}."""
    from hybridcot.data.world import LEVELS

    def bad(why: str) -> HybridcotError:
        return HybridcotError(f"world spec {spec!r}: {why} (grammar: {WORLD_GRAMMAR})")

    parts = spec.split(":")
    if len(parts) < 3 or parts[0] != "world":
        raise bad("needs at least a split and a count")
    split, n_text, options = parts[1], parts[2], parts[3:]
    if split not in WORLD_SPLITS:
        raise bad(f"split must be one of {list(WORLD_SPLITS)}, got {split!r}")
    if not n_text.isdigit() or int(n_text) <= 0:
        raise bad(f"count must be a positive integer, got {n_text!r}")
    out: dict[str, Any] = {"split": split, "n": int(n_text), "seed": 0, "levels": tuple(sorted(LEVELS))}
    seen = set()
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key in seen:
            raise bad(f"option {opt!r} is not key=value" if not eq else f"option {key!r} given twice")
        seen.add(key)
        if key == "seed":
            if not re.fullmatch(r"-?\d+", value):
                raise bad(f"seed must be an integer, got {value!r}")
            out["seed"] = int(value)
        elif key == "levels":
            items = value.split(",")
            if not all(x.isdigit() and int(x) in LEVELS for x in items):
                raise bad(f"levels must be a comma list of {sorted(LEVELS)}, got {value!r}")
            out["levels"] = tuple(int(x) for x in items)
        else:
            raise bad(f"unknown option {key!r}")
    return out


def _load_world(spec: str) -> list[Problem]:
    from hybridcot.data.world import generate_problems

    opts = parse_world_spec(spec)
    problems = []
    for wp in generate_problems(opts["n"], opts["seed"], split=opts["split"], levels=opts["levels"]):
        rec = wp.to_record()
        meta = {k: v for k, v in rec.items() if k not in _KNOWN}
        problems.append(Problem(id=rec["id"], problem=rec["problem"], answer=rec["answer"], level=rec["level"],
                                source=rec.get("source", "world"), meta=meta))
    return problems
