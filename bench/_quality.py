"""Shared driver of bench/adar1_quality.py and bench/longshort_quality.py: run one method's chain on
the embedded world for several seeds (each seed builds its own world: seed -> problems, models,
sampling) and report the method's systems against the Long model, mean over seeds with a 95%
Student-t CI. Every chain step is cached/resumable, so a rerun only computes what is missing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def run_seeds(method: str, module: str, cls: str, fn: str, seeds: list[int], recipe: Path, root: Path,
              overrides: list[str]) -> dict[int, dict]:
    from hybridcot.recipes import load_recipe

    mod = importlib.import_module(module)
    per_seed = {}
    for seed in seeds:
        t0 = time.time()
        out = root / f"seed-{seed}"
        cfg = load_recipe(getattr(mod, cls), recipe,
                          [f"output={out}", f"summary={out / 'summary.json'}", f"world.seed={seed}", f"seed={seed}",
                           *overrides])
        result = getattr(mod, fn)(cfg)
        per_seed[seed] = {"metrics": result["metrics"], "wall_s": time.time() - t0}
    return per_seed


def _rel(m: dict, base: dict) -> dict:
    from hybridcot.evaluation.metrics import aes, relative

    dA, dL = relative(m["accuracy"], m["mean_tokens"], base["accuracy"], base["mean_tokens"])
    return {"accuracy": m["accuracy"], "mean_tokens": m["mean_tokens"],
            "tokens_ratio_vs_long": m["mean_tokens"] / base["mean_tokens"] if base["mean_tokens"] else None,
            "accuracy_delta_vs_long": 100.0 * (m["accuracy"] - base["accuracy"]),  # points
            "delta_accuracy": dA, "delta_length": dL, "aes": aes(dA, dL)}


def aggregate(per_seed: dict[int, dict], systems: list[str], extra_keys: tuple[str, ...] = ()) -> dict:
    """{system: {key: {"mean", "ci": [lo, hi], "per_seed": [...]}}} for each relative figure."""
    from hybridcot.evaluation.report import summary_entry

    out: dict = {}
    for name in ["long", *systems]:
        rows = []
        for s in per_seed.values():
            m = s["metrics"].get(name)
            if m is None:
                continue
            row = _rel(m, s["metrics"]["long"])
            # the demo row's figures too (long_style_share per level from an eval's per-level style_share)
            fields = {**summary_entry(m, name), **m}
            for k in extra_keys:   # a per-level figure ({"1": x, ...}) joins as k_1, k_2, ...
                v = fields.get(k)
                if isinstance(v, dict):
                    row.update({f"{k}_{sub}": x for sub, x in v.items() if isinstance(x, (int, float))})
                elif v is not None:
                    row[k] = v
            rows.append(row)
        if not rows:
            continue
        out[name] = over_seeds(rows)
    return out


def over_seeds(rows: list[dict]) -> dict:
    """{key: {"mean", "ci": [lo, hi], "per_seed": [...]}} over per-seed rows (None values left out)."""
    from hybridcot.evaluation.metrics import mean_ci_over_seeds

    out = {}
    for key in rows[0] if rows else []:
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            mean, lo, hi = mean_ci_over_seeds(vals)
            out[key] = {"mean": mean, "ci": [lo, hi], "per_seed": vals}
    return out


def world_dir(seed_dir: Path) -> Path | None:
    """The world folder a chain's config.yaml names (its `world` section), or None without one."""
    import yaml

    from hybridcot.data.world_models import WorldBuildConfig
    from hybridcot.recipes import Section, section_config

    cfg_path = seed_dir / "config.yaml"
    world = (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}).get("world") if cfg_path.is_file() else None
    # parsed as the chain parses it: a command-line override keeps its text there ("short_levels: 1,2,3,4")
    return section_config(Section(WorldBuildConfig), world, "world", filled={}).out_dir() \
        if isinstance(world, dict) else None


def world_record(seed_dir: Path) -> dict | None:
    """The world a seed's chain ran on (its resolved config.yaml's `world:` section): fingerprint, the
    checks, Long's and Short's test accuracy and each model's calibration (top-ups, steps, target met),
    so a reader sees whether the seeds compared the same kind of world. None without a world section
    or a finished build."""
    from hybridcot.io import read_json

    d = world_dir(seed_dir)
    metrics = d / "metrics.json" if d is not None else None
    if metrics is None or not metrics.is_file():
        return None
    m = read_json(metrics)
    return {"fingerprint": m.get("fingerprint"), "all_checks_pass": m.get("all_checks_pass"),
            "long_accuracy": m["long"]["accuracy"], "short_accuracy": m["short"]["accuracy"],
            "calibration": {name: {"rounds": c["rounds"], "steps_added": c["steps_added"],
                                   "met": c["history"][-1]["met"]} for name, c in (m.get("calibration") or {}).items()}}


def main(method: str, module: str, cls: str, fn: str, systems: list[str], headline: str,
         summary_fn, extra_keys: tuple[str, ...] = (), seed_extra=None) -> None:
    """`seed_extra(seed_dir) -> dict`: more per-seed figures read from a chain's outputs; each key's mean
    and CI over seeds join the summary."""
    ap = argparse.ArgumentParser(description=f"{method} quality on the embedded world, mean of seeds with 95% CIs")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "tiny" / f"{method}.yaml"))
    ap.add_argument("--root", default=str(REPO / "runs" / "bench" / method), help="where the chains write")
    ap.add_argument("--output", default=None,
                    help=f"result JSON (default bench/results/{method}_quality.json; name another for a variant)")
    ap.add_argument("overrides", nargs="*", help="recipe overrides (dotted key=value)")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    from hybridcot.adar1.steps import chain_seconds
    per_seed = run_seeds(method, module, cls, fn, seeds, Path(a.recipe), Path(a.root), a.overrides)
    agg = aggregate(per_seed, systems, extra_keys)
    summary = summary_fn(agg)
    if seed_extra is not None:
        for key, v in over_seeds([seed_extra(Path(a.root) / f"seed-{s}") for s in seeds]).items():
            summary[key], summary[f"{key}_ci"] = v["mean"], v["ci"]
    result = {"method": method, "seeds": seeds, "recipe": a.recipe, "overrides": a.overrides, "summary": summary,
              "systems": agg, "worlds": {str(k): world_record(Path(a.root) / f"seed-{k}") for k in seeds},
              # this invocation's seconds (a rerun of finished chains takes about one), and what each
              # seed's chain steps cost when they last ran (chain.json; steps copied in are untimed)
              "wall_s": {str(k): v["wall_s"] for k, v in per_seed.items()},
              "chain_s": {str(k): chain_seconds(Path(a.root) / f"seed-{k}") for k in seeds}}
    path = Path(a.output) if a.output else RESULTS / f"{method}_quality.json"
    from hybridcot.io import write_json
    write_json(path, result)   # makes the folder; temp file, then rename: a killed run leaves the last result whole

    def fmt(key: str) -> str:
        v = summary.get(key)
        ci = summary.get(f"{key}_ci")
        return "n/a" if v is None else f"{v:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")

    print(f"{method}_quality ({len(seeds)} seeds): " + ", ".join(f"{k} {fmt(k)}" for k in headline.split(","))
          + f" -> {path}")
    sys.stdout.flush()


def pick(agg: dict, system: str, key: str) -> tuple[float | None, list | None]:
    v = (agg.get(system) or {}).get(key)
    return (v["mean"], v["ci"]) if v else (None, None)
