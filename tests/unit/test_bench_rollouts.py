"""bench/rollouts.py: its worker on the pico model both ways (same samples, fewer prefill tokens when
shared), the comparison it reports, and importance's share_prefix switch (no timing asserts)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_bench
from hybridcot.data.world import generate_problems, write_long
from hybridcot.io import write_jsonl
from hybridcot.longshort.importance import ImportanceConfig, sharing_kwargs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "rollouts.py"


def _bench():
    return load_bench("rollouts")


def test_share_prefix_switch_maps_to_each_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"chunks": "c.jsonl", "model": "m", "output": "o"}
    assert ImportanceConfig(**base).share_prefix is True
    assert sharing_kwargs(ImportanceConfig(**base, backend="hf")) == {}  # on: the backends' default
    assert sharing_kwargs(ImportanceConfig(**base, backend="hf", share_prefix=False)) == {"share_prefix": False}
    assert sharing_kwargs(ImportanceConfig(**base, backend="http", share_prefix=False)) == {}
    monkeypatch.setattr("hybridcot.generation.base.vllm_importable", lambda: True)
    assert sharing_kwargs(ImportanceConfig(**base, backend="vllm", share_prefix=False)) == \
        {"enable_prefix_caching": False}


def test_worker_both_ways_on_the_pico_model(pico_model_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(0)
    recs = []
    for p in generate_problems(2, seed=5, levels=(1, 2)):
        th = write_long(p, rng)
        recs.append({"id": p.id, "problem": p.problem, "answer": p.answer, "level": p.level,
                     "thoughts": [{"text": t.text, "steps": [k, k + 1]} for k, t in enumerate(th)]})
    write_jsonl(tmp_path / "chunks.jsonl", recs)
    B = _bench()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDCOT_THREADS": "1"}
    runs = []
    for mode in B.MODES:
        proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", "hf", mode, "--chunks",
                               str(tmp_path / "chunks.jsonl"), "--model", str(pico_model_dir), "--out",
                               str(tmp_path / mode), "--n", "3", "--max-tokens", "4", "--batch-size", "6"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        runs.append(json.loads(line[len("RESULT "):]))
    shared, independent = runs
    n_prefixes = sum(len(r["thoughts"]) + 1 for r in recs)
    assert shared["n_prefixes"] == independent["n_prefixes"] == n_prefixes and shared["n_cots"] == 2
    assert independent["cost"]["prefill_tokens"] == independent["cost"]["naive_prefill_tokens"]
    assert shared["cost"]["naive_prefill_tokens"] == independent["cost"]["naive_prefill_tokens"]
    # batch of 6 rows = 2 prefixes x 3 rollouts: each prompt once, then its last token for the other 2 rows
    assert shared["cost"]["prefill_tokens"] == independent["cost"]["prefill_tokens"] // 3 + 2 * n_prefixes
    c = B.compare(runs)
    assert c["prefill_ratio_independent_over_shared"] > 2
    assert c["wall_ratio_independent_over_shared"] > 0 and c["rollouts"] == 3 * n_prefixes
    assert c["same_accuracies"] and c["shared_generated_tokens"] == c["independent_generated_tokens"]
