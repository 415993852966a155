"""`hybridcot demo`: the main job, fresh machine to results table, on the embedded world.

    make demo            # = .venv/bin/hybridcot demo

Builds (or reuses from the cache) the embedded world's Long and Short models, evaluates them, and
writes `runs/demo/summary.json`: one row per system, the shape later stages (AdaR1, Long⊗Short)
add their rows to. Ends with the comparison table (ΔA, ΔL, AES against Long) and plots.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import field, save_config


@dataclass
class DemoConfig:
    output: str = field("runs/demo", help="folder for summary.json, the report and each system's eval")
    preset: str = field("default", help="world preset: 'default' (the demo) or 'tiny' (a quick smoke run)")
    seed: int = field(0, help="seed for the world and every stage")
    world: str = field("", help="world build folder; empty = the cache (~/.cache/hybridcot/world/<preset>-<hash>)")
    eval_backend: str = field("auto", help="generation backend: auto | hf | vllm")

    def __post_init__(self):
        if self.eval_backend not in ("auto", "hf", "vllm"):
            raise ValueError("eval_backend must be auto, hf or vllm")


def run_demo(cfg: DemoConfig) -> Path:
    from hybridcot.data.world_models import WorldBuildConfig, build_world
    from hybridcot.evaluation.report import ReportConfig, run_report, summary_entry, update_summary
    from hybridcot.io import read_json, write_json

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    t0 = time.time()
    world = build_world(WorldBuildConfig(preset=cfg.preset, seed=cfg.seed, eval_backend=cfg.eval_backend,
                                         output=cfg.world))
    wm = read_json(world / "metrics.json")
    summary = out / "summary.json"
    for name in ("long", "short"):
        dst = out / "eval" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(world / "eval" / name, dst)
        update_summary(summary, summary_entry(wm[name], name))
    write_json(out / "world.json", {"world": str(world), "checks": wm["checks"], "timings_s": wm["timings_s"],
                                    "demo_wall_s": time.time() - t0})
    run_report(ReportConfig(runs=[str(summary)], base="long", output=str(out / "report")))
    print(f"summary: {summary}")
    return summary
