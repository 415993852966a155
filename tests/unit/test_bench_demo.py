"""bench/demo.py: per-stage seconds read from a demo run folder (world build timings + chain.json),
cached steps listed apart, and the script's `--from` mode end to end (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import load_bench

REPO = Path(__file__).resolve().parents[2]


def _fake_run(tmp_path: Path, world_wall: float) -> Path:
    world = tmp_path / "world"
    world.mkdir()
    (world / "metrics.json").write_text(json.dumps({
        "checks": {"long_accuracy_ge_0.85": True},
        "timings_s": {"data": 2.0, "train_base": 400.0, "train_long": 300.0, "train_short": 100.0, "eval": 20.0,
                      "total": 822.0}}))
    run = tmp_path / "demo"
    run.mkdir()
    (run / "world.json").write_text(json.dumps({
        "world": str(world), "checks": {}, "timings_s": {},
        "demo_wall_s": {"world": world_wall, "adar1": 70.0, "longshort": 30.0, "total": world_wall + 100.0}}))
    for method, steps in {"adar1": [("world", "skipped", 0.0), ("merge", "ran", 10.0), ("dpo", "ran", 60.0)],
                          "longshort": [("world", "skipped", 0.0), ("chunk", "skipped", 0.01),
                                        ("importance", "ran", 30.0)]}.items():
        (run / method).mkdir()
        (run / method / "chain.json").write_text(json.dumps(
            {"recipe": "r.yaml", "steps": [{"step": s, "status": st, "seconds": sec} for s, st, sec in steps]}))
    return run


def test_collect_times_what_ran_and_lists_what_was_cached(tmp_path: Path) -> None:
    res = load_bench("demo").collect(_fake_run(tmp_path, world_wall=830.0))
    assert res["world_built_here"] is True
    assert res["stages_s"] == {"world.data": 2.0, "world.train_base": 400.0, "world.train_long": 300.0,
                               "world.train_short": 100.0, "world.eval": 20.0, "adar1.merge": 10.0,
                               "adar1.dpo": 60.0, "longshort.importance": 30.0}
    assert res["cached"] == ["longshort.chunk"]
    assert res["methods_s"] == {"adar1": 70.0, "longshort": 30.0}


def test_a_reused_world_is_not_timed(tmp_path: Path) -> None:
    res = load_bench("demo").collect(_fake_run(tmp_path, world_wall=5.0))  # seconds: taken from the cache
    assert res["world_built_here"] is False
    assert not any(k.startswith("world.") for k in res["stages_s"])
    assert "world.train_base" in res["cached"]


def test_from_mode_writes_the_result_and_one_line(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, world_wall=830.0)
    out = tmp_path / "demo.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "demo.py"), "--from", str(run), "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    assert len(lines) == 1 and "from scratch 922s" in lines[0] and "world.train_base 400s" in lines[0]
    summary = json.loads(out.read_text())["summary"]
    assert summary["n_stages_timed"] == 8 and summary["n_stages_cached"] == 1
    assert summary["sum_of_timed_stages_s"] == 922.0 and summary["total_wall_s"] is None
    assert summary["from_scratch_s"] == 922.0 and summary["world_build_s"] == 822.0


def test_from_scratch_adds_a_cached_world_build(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, world_wall=5.0)
    out = tmp_path / "demo.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "demo.py"), "--from", str(run), "--output", str(out),
                    "--note", "two chains side by side"], check=True, capture_output=True, timeout=300)
    d = json.loads(out.read_text())
    assert d["summary"]["from_scratch_s"] == 822.0 + 100.0 and d["notes"] == ["two chains side by side"]


def test_from_mode_refuses_a_folder_that_is_not_a_demo_run(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "demo.py"), "--from", str(tmp_path),
                           "--output", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "no world.json" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_world_built_from_copied_models_gives_no_from_scratch_time(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, world_wall=5.0)
    metrics = tmp_path / "world" / "metrics.json"
    m = json.loads(metrics.read_text())
    m["timings_s"] = {"data": 2.0, "train_parent": 165.0, "train_long": 32.0, "eval": 26.0, "total": 225.0}
    metrics.write_text(json.dumps(m))  # base and long0 were copied in: no time recorded for them
    out = tmp_path / "demo.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "demo.py"), "--from", str(run), "--output", str(out)],
                          check=True, capture_output=True, text=True, timeout=300)
    d = json.loads(out.read_text())
    assert d["summary"]["from_scratch_s"] is None and d["world_untimed_stages"] == ["train_base", "train_long0"]
    assert "from scratch n/a" in proc.stdout and "train_long0" in proc.stdout
