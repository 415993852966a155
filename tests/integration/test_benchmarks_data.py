"""The real benchmark files: each loads with its documented count, and the grader agrees with their golds.

    pytest -q -s tests/integration/test_benchmarks_data.py   # -s shows the MATH-500 count

Skips (with the reason) where ../shared/data/benchmarks is absent; HYBRIDCOT_BENCHMARKS overrides.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from hybridcot.data.problems import load_problems
from hybridcot.grading import extract_boxed, extract_gsm8k_answer, grade_many, math_verify_statuses

# counts from shared/data/README.md
COUNTS = {
    "gsm8k_test.jsonl": 1319,
    "gsm8k_train.jsonl": 7473,
    "math500.json": 500,
    "aime_2024.json": 30,
    "aime_2025.json": 30,
    "amc_2023.json": 40,
}


def _file(benchmarks_dir: Path, name: str) -> Path:
    path = benchmarks_dir / name
    if not path.is_file():
        pytest.skip(f"{name} not found in {benchmarks_dir}")
    return path


@pytest.mark.parametrize("name,count", sorted(COUNTS.items()))
def test_benchmark_loads_with_its_count(benchmarks_dir: Path, name: str, count: int) -> None:
    problems = load_problems(_file(benchmarks_dir, name))
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    assert all(p.problem.strip() and p.answer.strip() for p in problems)
    assert all(p.source == Path(name).stem for p in problems)


def test_every_gsm8k_gold_comes_from_its_final_line(benchmarks_dir: Path) -> None:
    n = 0
    for name in ("gsm8k_test.jsonl", "gsm8k_train.jsonl"):
        path = _file(benchmarks_dir, name)
        raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        problems = load_problems(path)
        golds = [extract_gsm8k_answer(r["answer"]) for r in raw]
        assert [p.answer for p in problems] == golds
        assert all(re.fullmatch(r"-?\d+(\.\d+)?", g) for g in golds), "GSM8K golds are plain numbers"
        # plain numbers take the fast path: the whole set grades in well under a second
        t = time.perf_counter()
        results = grade_many([f"The answer is \\boxed{{{g}}}." for g in golds], golds)
        assert all(r.correct for r in results) and time.perf_counter() - t < 5
        n += len(golds)
    assert n == COUNTS["gsm8k_test.jsonl"] + COUNTS["gsm8k_train.jsonl"]


def test_math500_solution_boxed_matches_answer(benchmarks_dir: Path) -> None:
    path = _file(benchmarks_dir, "math500.json")
    records = json.loads(path.read_text(encoding="utf-8"))
    problems = load_problems(path)
    assert all(extract_boxed(r["solution"]) is not None for r in records)
    t = time.perf_counter()
    results = grade_many([r["solution"] for r in records], [p.answer for p in problems], timeout=10.0)
    elapsed = time.perf_counter() - t
    n_correct = sum(r.correct for r in results)
    misses = [(p.id, p.answer, r.extracted, r.reason) for p, r in zip(problems, results) if not r.correct]
    print(f"\nMATH-500: {n_correct}/{len(records)} gold solutions grade correct against 'answer' "
          f"({elapsed:.1f}s); misses: {misses[:5]}")
    assert n_correct >= 0.99 * len(records), misses
    # most golds are string-equal to the boxed text, so also check math-verify alone (no shortcuts)
    t = time.perf_counter()
    statuses = math_verify_statuses([r.extracted or "" for r in results], [p.answer for p in problems], timeout=10.0)
    n_mv = statuses.count("correct")
    print(f"MATH-500 by math-verify alone: {n_mv}/{len(records)} ({time.perf_counter() - t:.1f}s)")
    assert n_mv >= 0.99 * len(records), [(p.id, s) for p, s in zip(problems, statuses) if s != "correct"][:10]


def test_aime_and_amc_solutions(benchmarks_dir: Path) -> None:
    """AIME 2024 ships solutions too: each one's boxed answer (where it has one) matches its answer."""
    path = _file(benchmarks_dir, "aime_2024.json")
    problems = load_problems(path)
    boxed = [(p.meta["solution"], p.answer) for p in problems if extract_boxed(p.meta.get("solution", ""))]
    results = grade_many([s for s, _ in boxed], [a for _, a in boxed])
    assert sum(r.correct for r in results) >= 0.9 * len(boxed)
    assert all(p.answer.isdigit() for p in problems)
