"""`hybridcot demo`: the main job, fresh machine to results table, on the embedded world.

    make demo            # = .venv/bin/hybridcot demo

Builds (or reuses from the cache) the embedded world's Long and Short models, evaluates them, and
writes `runs/demo/summary.json`: one row per system. Then runs each method's chain on that world
(`recipes/tiny/adar1.yaml`, `recipes/tiny/longshort.yaml`; the `*_smoke.yaml` ones for preset=tiny),
which add their rows (merge, dpo_shortest, merge_sft, group_only, adar1, longshort_sft,
longshort_rl) and their own reports under runs/demo/<method>/report. Ends with the comparison
table of every system (ΔA, ΔL, AES against Long) and plots. Every step resumes: a rerun skips
what is done.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import field, same_setting, save_config

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
METHODS = {"adar1": ("hybridcot.adar1.pipeline", "AdaR1Config", "run_adar1"),
           "longshort": ("hybridcot.longshort.pipeline", "LongShortConfig", "run_longshort")}


@dataclass
class DemoConfig:
    output: str = field("runs/demo", help="folder for summary.json, the report and each system's eval")
    preset: str = field("default", help="world preset: 'default' (the demo) or 'tiny' (a quick smoke run)")
    seed: int = field(0, help="seed for the world and every stage")
    world: str = field("", help="world build folder; empty = the cache (~/.cache/hybridcot/world/<preset>-<hash>)")
    eval_backend: str = field("auto", help="generation backend: auto | hf | vllm")
    methods: list[str] = field(list(METHODS), help="method chains to run on the world: adar1, longshort")

    def __post_init__(self):
        if self.eval_backend not in ("auto", "hf", "vllm"):
            raise ValueError("eval_backend must be auto, hf or vllm")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"methods: unknown {bad[0]!r}; choose from {list(METHODS)}")


def recipe_path(method: str, preset: str) -> Path:
    """The shipped recipe a method's demo run uses (the smoke recipe for the tiny preset)."""
    p = RECIPES / "tiny" / (f"{method}_smoke.yaml" if preset == "tiny" else f"{method}.yaml")
    if not p.is_file():
        from hybridcot.io import HybridcotError

        raise HybridcotError(f"{p}: recipe not found (the demo runs from a clone of the repository)")
    return p


def run_method(method: str, cfg: DemoConfig, world: Path) -> dict:
    """One method's chain from its recipe, on the demo's world, into <output>/<method>."""
    import importlib

    from hybridcot.recipes import load_recipe

    module, cls, fn = METHODS[method]
    mod = importlib.import_module(module)
    out = Path(cfg.output)
    overrides = [f"output={out / method}", f"summary={out / 'summary.json'}", f"world.output={world}",
                 f"world.seed={cfg.seed}"]
    return getattr(mod, fn)(load_recipe(getattr(mod, cls), recipe_path(method, cfg.preset), overrides))


def set_aside_other_world(out: Path, world: Path) -> Path | None:
    """A demo folder finished on another world (its world.json names another build, e.g. after the
    default preset changed) is renamed to `<out>-<that world's folder name>` (then -2, -3, ...), so the
    chains start afresh instead of refusing their stale outputs, and nothing of the old run is lost.
    Returns the new name, or None when there was nothing to move."""
    from hybridcot.io import read_json

    info = out / "world.json"
    if not info.is_file():
        return None
    old = str(read_json(info).get("world", ""))
    if same_setting(old, str(world)):
        return None
    base = out.with_name(f"{out.name}-{Path(old).name or 'old'}")
    aside, n = base, 1
    while aside.exists():
        n += 1
        aside = base.with_name(f"{base.name}-{n}")
    out.rename(aside)
    return aside


def run_demo(cfg: DemoConfig) -> Path:
    from hybridcot.data.world_models import WorldBuildConfig, build_world
    from hybridcot.evaluation.report import ReportConfig, run_report, summary_entry, update_summary
    from hybridcot.io import read_json, write_json

    out = Path(cfg.output)
    t0 = time.time()
    world = build_world(WorldBuildConfig(preset=cfg.preset, seed=cfg.seed, eval_backend=cfg.eval_backend,
                                         output=cfg.world))
    aside = set_aside_other_world(out, world)
    if aside is not None:
        print(f"demo: {out} was made on another world; moved to {aside}, starting afresh")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    if not (out / "world.json").is_file():  # names the world from the start, so a killed run is recognised too
        write_json(out / "world.json", {"world": str(world)})
    wm = read_json(world / "metrics.json")
    summary = out / "summary.json"
    for name in ("long", "short"):
        dst = out / "eval" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(world / "eval" / name, dst)
        update_summary(summary, summary_entry(wm[name], name))
    timings = {"world": time.time() - t0}
    for method in cfg.methods:
        t = time.time()
        run_method(method, cfg, world)
        timings[method] = time.time() - t
    timings["total"] = time.time() - t0
    write_json(out / "world.json", {"world": str(world), "checks": wm["checks"], "timings_s": wm["timings_s"],
                                    "demo_wall_s": timings})
    run_report(ReportConfig(runs=[str(summary)], base="long", output=str(out / "report"),
                            html=str(out / "report.html")))
    print(f"summary: {summary}")
    print(f"html report: {out / 'report.html'}")
    return summary
