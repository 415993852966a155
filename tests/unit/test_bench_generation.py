"""bench/generation.py: its hf worker and the whole bench (hf only) on the pico model over small batch
sizes, and the summary it builds from run records (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_bench

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "generation.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDCOT_THREADS": "1", "HYBRIDCOT_QUIET": "1"}


def _bench():
    return load_bench("generation")


def _lines(stdout: str, tag: str) -> list[dict]:
    return [json.loads(x[len(tag) + 1:]) for x in stdout.splitlines() if x.startswith(tag + " ")]


def test_hf_worker_runs_every_batch_size(pico_model_dir: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", "hf", "world", "--model-path",
                           str(pico_model_dir), "--batch-sizes", "2,1", "--max-tokens", "4", "--repeats", "2"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (res,) = _lines(proc.stdout, "RESULT")
    assert res["model"] == "world" and res["backend"] == "hf" and res["model_path"] == str(pico_model_dir)
    assert res["engine"]["torch_threads"] == 1 and res["load_s"] >= 0
    recs = res["records"]
    assert [r["batch_size"] for r in recs] == [1, 2] and [r["prompts"] for r in recs] == [1, 2]
    assert _lines(proc.stdout, "RECORD") == recs  # one progress record per batch size, as it finishes
    for r in recs:
        assert r["model"] == "world" and r["backend"] == "hf" and r["max_tokens"] == 4
        assert 0 < r["tokens"] <= 4 * r["batch_size"] and r["seconds"] > 0 and r["tokens_per_s"] > 0
        assert len(r["tokens_per_s_repeats"]) == 2 and r["tokens_per_s"] in r["tokens_per_s_repeats"]
        assert r["prefill_tokens"] > 0 and 0 <= r["finished_length"] <= r["batch_size"]


def test_bench_hf_only_writes_the_json(pico_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "generation.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "world", "--backends", "hf", "--model-path",
                           str(pico_model_dir), "--batch-sizes", "1,2", "--max-tokens", "4", "--output", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert sum("world" in x and " hf " in x and "tok/s" in x for x in lines) == 2  # one per batch size
    assert lines[-1].startswith("generation: transformers only") and str(out) in lines[-1]
    data = json.loads(out.read_text())
    assert data["bench"] == "generation" and data["settings"]["batch_sizes"] == [1, 2]
    assert data["settings"]["temperature"] == 0.6 and data["settings"]["top_p"] == 0.95
    assert isinstance(data["vllm_importable"], bool) and data["max_tokens"] == 4
    assert [(r["model"], r["backend"], r["batch_size"]) for r in data["runs"]] == [("world", "hf", 1), ("world", "hf", 2)]
    s = data["summary"]
    assert s["vllm_over_hf_tokens_per_s"] is None and s["target_ge_3x"] is False and s["vllm_ran"] is False
    assert s["vllm_over_hf_by_model"] == {"world": None} and s["vllm_over_hf_by_batch"] == {"world": {}}
    assert s["best_batch"]["world"]["hf"] in (1, 2) and set(s["tokens_per_s"]["world"]["hf"]) == {"1", "2"}
    assert "note" in s


def _runs(tps: dict) -> list[dict]:
    """Fake run records from {(model, backend): {batch: tokens/s}}."""
    return [{"model": m, "backend": be, "batch_size": b, "tokens_per_s": v}
            for (m, be), d in tps.items() for b, v in d.items()]


def test_summary_takes_the_largest_batch_at_least_16() -> None:
    B = _bench()
    runs = _runs({("smollm2", "hf"): {1: 10.0, 4: 30.0, 16: 50.0, 64: 60.0},
                  ("smollm2", "vllm"): {1: 12.0, 4: 60.0, 16: 150.0, 64: 240.0},
                  ("world", "hf"): {1: 100.0, 4: 200.0, 16: 400.0, 64: 300.0},
                  ("world", "vllm"): {1: 100.0, 4: 300.0, 16: 800.0, 64: 900.0}})
    s = B.summarize(runs, ["smollm2", "world"], vllm_ok=True)
    assert s["vllm_over_hf_tokens_per_s"] == 4.0 and s["ratio_batch_size"] == 64 and s["target_ge_3x"] is True
    assert s["vllm_over_hf_by_batch"]["smollm2"] == {"1": 1.2, "4": 2.0, "16": 3.0, "64": 4.0}
    assert s["vllm_over_hf_by_model"] == {"smollm2": 4.0, "world": 3.0}
    assert s["best_batch"] == {"smollm2": {"hf": 64, "vllm": 64}, "world": {"hf": 16, "vllm": 64}}
    assert s["tokens_per_s"]["world"]["hf"]["16"] == 400.0 and s["vllm_ran"] is True and "note" not in s
    assert "4.0x" in B.summary_line(s, Path("/tmp/g.json")) and "yes" in B.summary_line(s, Path("/tmp/g.json"))

    # vLLM stopped at 16 (64 missing): the ratio is taken at 16, the largest batch both ran; below 3x
    runs = _runs({("smollm2", "hf"): {1: 10.0, 16: 50.0, 64: 60.0}, ("smollm2", "vllm"): {1: 12.0, 16: 100.0}})
    s = B.summarize(runs, ["smollm2"], vllm_ok=True)
    assert s["vllm_over_hf_tokens_per_s"] == 2.0 and s["ratio_batch_size"] == 16 and s["target_ge_3x"] is False
    assert "NO" in B.summary_line(s, Path("/tmp/g.json"))

    # only small batches ran: no headline ratio, but the per-batch ratios are there
    runs = _runs({("smollm2", "hf"): {1: 10.0, 4: 20.0}, ("smollm2", "vllm"): {1: 30.0, 4: 80.0}})
    s = B.summarize(runs, ["smollm2"], vllm_ok=True)
    assert s["vllm_over_hf_tokens_per_s"] is None and s["target_ge_3x"] is False and s["ratio_batch_size"] is None
    assert s["vllm_over_hf_by_batch"]["smollm2"] == {"1": 3.0, "4": 4.0} and "16" in s["note"]
    line = B.summary_line(s, Path("/tmp/g.json"))
    assert "smollm2: none" in line and "None" not in line and "b4 4.0x" in line


@pytest.mark.parametrize("vllm_ok", [False, True])
def test_summary_without_vllm_runs_is_null(vllm_ok: bool) -> None:
    B = _bench()
    runs = _runs({("smollm2", "hf"): {1: 10.0, 16: 50.0, 64: 40.0}})
    s = B.summarize(runs, ["smollm2", "world"], vllm_ok=vllm_ok)
    assert s["vllm_over_hf_tokens_per_s"] is None and s["target_ge_3x"] is False and s["vllm_ran"] is False
    assert s["vllm_over_hf_by_model"] == {"smollm2": None, "world": None}
    assert s["best_batch"] == {"smollm2": {"hf": 16}, "world": {}}
    assert ("not installed" in s["note"]) is (not vllm_ok)
    assert B.summary_line(s, Path("/tmp/g.json")).startswith("generation: transformers only")


def test_batch_sizes_and_median() -> None:
    B = _bench()
    assert B.parse_batch_sizes("64, 1,4,16,4") == [1, 4, 16, 64]
    for bad in ("", "0,4", "a,2"):
        with pytest.raises(SystemExit):
            B.parse_batch_sizes(bad)
    reps = [{"tokens": t, "seconds": 1.0, "tokens_per_s": float(t)} for t in (30, 10, 20)]
    assert B.median_record(reps)["tokens"] == 20
    assert B.median_record(reps[:2])["tokens"] == 10  # even count: the lower middle, a real repeat
