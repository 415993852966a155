"""The whole demo: wall time per stage and in total, on this machine.

    .venv/bin/python bench/demo.py                      # run `hybridcot demo` from scratch (world included)
    .venv/bin/python bench/demo.py --reuse-world        # world from the cache, every method stage fresh
    .venv/bin/python bench/demo.py --from runs/demo     # read the timings of a demo run already made
    .venv/bin/python bench/demo.py --preset tiny        # the smoke preset (a few minutes)

Runs `hybridcot demo` (README's first command, without the venv step) in a subprocess into a
fresh output folder, so no method stage is skipped as already done; with the default the world is
built into that folder too (its models trained from scratch), `--reuse-world` takes it from
~/.cache/hybridcot/world when built. Per-stage seconds come from what the demo itself records: the
world build's `timings_s` (data, train_base, train_long, calibrate_long, train_short, calibrate_short, eval; with a hybrid
parent train_long0, calibrate_long0 and train_parent before train_long) and each method chain's
`chain.json` (merge, sample long, ..., dpo, eval ...; chunk, importance, ..., rl). A stage that was
skipped because its output existed is listed under `cached`, not timed. Writes
bench/results/demo.json and prints one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORLD_STAGES = ("data", "train_base", "train_long0", "calibrate_long0", "train_parent", "train_long", "calibrate_long",
                "train_short", "calibrate_short", "eval")


def collect(run: Path) -> dict:
    """Per-stage seconds of a finished demo run folder (world.json + <method>/chain.json)."""
    info = json.loads((run / "world.json").read_text())
    world = Path(info["world"])
    metrics = json.loads((world / "metrics.json").read_text())
    wall = info.get("demo_wall_s", {})
    # The build's own timings, when this demo built it (a reused build takes seconds, not minutes).
    built_here = wall.get("world", 0.0) >= 0.5 * metrics["timings_s"].get("total", 0.0) > 0
    stages: dict[str, float] = {}
    cached: list[str] = []
    for k in WORLD_STAGES:
        if k in metrics["timings_s"]:
            if built_here:
                stages[f"world.{k}"] = round(metrics["timings_s"][k], 1)
            else:
                cached.append(f"world.{k}")
    methods = {}
    for chain in sorted(run.glob("*/chain.json")):
        method = chain.parent.name
        steps = json.loads(chain.read_text())["steps"]
        for s in steps:
            if s["step"] == "world":
                continue
            key = f"{method}.{s['step']}"
            if s["status"] == "ran":
                stages[key] = round(s["seconds"], 1)
            else:
                cached.append(key)
        methods[method] = round(sum(s["seconds"] for s in steps if s["status"] == "ran"), 1)
    # A build resumed from copied models (stop 21 copied base and long0 into seed 0's world) records
    # no time for them: its total is not a from-scratch time.
    timings = metrics["timings_s"]
    missing = [k for k in ("train_base", *(("train_long0",) if "train_parent" in timings else ())) if k not in timings]
    return {"world": str(world), "world_built_here": built_here, "world_checks": metrics.get("checks"),
            "world_build_s": round(timings.get("total", 0.0), 1), "world_untimed_stages": missing,
            "stages_s": stages, "cached": cached, "methods_s": methods, "demo_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", help="world preset: default (the demo) or tiny")
    ap.add_argument("--reuse-world", action="store_true", help="take the world from the cache if built")
    ap.add_argument("--from", dest="from_run", default="", help="a finished demo output folder: only read it")
    ap.add_argument("--work", default=str(Path("~/.cache/hybridcot/bench-demo").expanduser()),
                    help="where the fresh demo run goes (emptied first)")
    ap.add_argument("--output", default=str(RESULTS / "demo.json"))
    ap.add_argument("--note", action="append", default=[], help="a remark stored in the JSON (e.g. what else ran)")
    args = ap.parse_args()
    if args.preset not in ("default", "tiny"):
        sys.exit("--preset must be default or tiny")
    sys.path.insert(0, str(REPO / "src"))
    from hybridcot.io import write_json

    t0 = time.time()
    if args.from_run:
        run = Path(args.from_run)
        if not (run / "world.json").is_file():
            sys.exit(f"{run}: no world.json (not a finished demo output folder)")
        how = f"read from {run}"
        total = None
    else:
        run = Path(args.work) / args.preset
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        cmd = [str(Path(sys.executable).parent / "hybridcot"), "demo", f"output={run / 'demo'}",
               f"preset={args.preset}"]
        if not args.reuse_world:
            cmd.append(f"world={run / 'world'}")
        env = {**os.environ, "HYBRIDCOT_QUIET": "1"}
        print("running:", " ".join(cmd), flush=True)
        with open(run / "demo.log", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
        total = time.time() - t0
        if rc:
            sys.exit(f"demo failed (exit {rc}); log: {run / 'demo.log'}")
        run = run / "demo"
        how = "fresh run" + (" (world reused from the cache)" if args.reuse_world else " (world built from scratch)")
    res = collect(run)
    stage_total = round(sum(res["stages_s"].values()), 1)
    slowest = sorted(res["stages_s"].items(), key=lambda kv: -kv[1])[:5]
    # From scratch = the world build (its own record, also when this run took it from the cache) plus
    # every method stage that ran.
    from_scratch = None if res["world_untimed_stages"] else \
        round(stage_total + (0.0 if res["world_built_here"] else res["world_build_s"]), 1)
    summary = {
        "total_wall_s": round(total, 1) if total is not None else None,
        "from_scratch_s": from_scratch, "world_build_s": res["world_build_s"],
        "sum_of_timed_stages_s": stage_total, "n_stages_timed": len(res["stages_s"]),
        "n_stages_cached": len(res["cached"]), "world_built_here": res["world_built_here"],
        "methods_s": res["methods_s"], "slowest": dict(slowest), "preset": args.preset, "cpu_count": os.cpu_count(),
    }
    import torch

    result = {"bench": "demo", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "how": how,
              "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
              "cuda": torch.cuda.is_available(),
              "threads": {k: os.environ.get(k, "default") for k in ("OMP_NUM_THREADS", "HYBRIDCOT_THREADS")},
              "summary": summary, "notes": args.note, **res}
    out = Path(args.output)
    write_json(out, result)
    top = ", ".join(f"{k} {v:.0f}s" for k, v in slowest[:3])
    wall = f"wall {summary['total_wall_s']:.0f}s, " if summary["total_wall_s"] is not None else ""
    scratch = f"{from_scratch:.0f}s" if from_scratch is not None else \
        f"n/a (the world's record has no time for {', '.join(res['world_untimed_stages'])})"
    print(f"demo ({args.preset}, {how}): {wall}from scratch {scratch} on {os.cpu_count()} cores (world "
          f"{res['world_build_s']:.0f}s + methods {stage_total - sum(v for k, v in res['stages_s'].items() if k.startswith('world.')):.0f}s), "
          f"{summary['n_stages_timed']} stages timed ({summary['n_stages_cached']} cached); slowest: {top} "
          f"-> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
