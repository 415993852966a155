"""`hybridcot adar1`: the whole AdaR1 chain from one recipe, with its baselines, summary rows and report.

    hybridcot adar1 --recipe recipes/tiny/adar1.yaml
    hybridcot adar1 --recipe recipes/tiny/adar1_smoke.yaml output=/tmp/adar1 dpo.learning_rate=3e-4

Steps, each skipped when its output is complete (so a killed or repeated run resumes, and a
finished one rewrites nothing):

    world       build the embedded world (`world:`), or take `long:` and `short:` checkpoints
    make_short  optional: Short = SFT of Long on short solutions (`make_short:`, e.g. SmolLM2)
    merge       θ_H = α·θ_L + (1 − α)·θ_S (α from `merge.alpha`, default 0.8), optional α sweep
    sample      K graded responses per training problem from Long and from Short
    pairs       bi-level pairs (AdaR1) and group-level-only pairs (the ablation)
    data        DPO-shortest pairs (Long's own shortest correct vs longest) and Merge+SFT rows
                (the group-level chosen responses), from the same samples
    train       adar1 = DPO(merge, bi-level); group_only = DPO(merge, group level);
                dpo_shortest = DPO(long, shortest vs longest); merge_sft = SFT(merge, group chosen)
    eval        long, short, merge and the trained systems on the eval problems (greedy by default,
                max_tokens = the world eval's), every response classified long/short style
    summary     rows merge, dpo_shortest, merge_sft, group_only, adar1 (each with long_style_share
                per level) in `summary` (runs/demo/summary.json); long/short rows where missing
    report      the paper's table, Long-style share per level, accuracy vs tokens (adar1_report)

Layout under `output`: config.yaml (the resolved recipe), models/{short,merge,adar1,group_only,
dpo_shortest,merge_sft}, samples/{long,short}, pairs/{bilevel,group_only,dpo_shortest,merge_sft},
eval/<system>, report/, chain.json (what the last run did, written only when a step ran).

A step whose folder was made with other settings than the recipe now gives is an error naming the
folder and the setting (remove it and what was made from it, or use a new `output`), never a
silent mix. Training steps run in-process, or under `accelerate launch --config_file
<accelerate_config>` (DeepSpeed ZeRO-3 for the 7B recipes) when `accelerate_config` is set.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from hybridcot.adar1.dpo import RESUME_FREE, DPOStageConfig
from hybridcot.adar1.pairs import PairsConfig
from hybridcot.adar1.sample import SampleConfig
from hybridcot.adar1.sft import SFTStageConfig
from hybridcot.config import config_dict, field
from hybridcot.data.world_models import WorldBuildConfig
from hybridcot.evaluation.stage import RUN_KEYS, EvalConfig
from hybridcot.io import HybridcotError, read_json, write_json, write_jsonl
from hybridcot.merging import MergeConfig
from hybridcot.recipes import Section, check_extra, section_config, validate_sections

BASELINES = ("dpo_shortest", "merge_sft", "group_only")
SYSTEMS = ("merge", "dpo_shortest", "merge_sft", "group_only", "adar1")  # the rows this chain adds
EVAL_KEYS = (*RUN_KEYS, "limit")
SAMPLE_KEYS = ("model", "problems", "k", "temperature", "top_p", "max_tokens", "seed", "limit",
               "fallback_last_number")
SEEDED = ("make_short", "merge", "sample", "pairs", "dpo", "sft", "eval")  # sections `seed` fills


@dataclass
class AdaR1Config:
    """The AdaR1 chain: world (or Long/Short checkpoints) -> merge -> sample -> pairs -> DPO, baselines, eval."""

    SECTIONS: ClassVar[dict[str, Section]] = {
        "world": Section(WorldBuildConfig),
        "make_short": Section(SFTStageConfig, ("model", "data", "output"), {"problems": str, "limit": int | None}),
        "merge": Section(MergeConfig, ("long", "short", "output")),
        "sample": Section(SampleConfig, ("model", "problems", "output", "name")),
        "pairs": Section(PairsConfig, ("long_samples", "short_samples", "problems", "output", "include")),
        "dpo": Section(DPOStageConfig, ("model", "pairs", "output")),
        "sft": Section(SFTStageConfig, ("model", "data", "output")),
        "eval": Section(EvalConfig, ("model", "problems", "output", "name")),
    }

    recipe: str = field("", help="the recipe file this run came from (set by --recipe; recorded only)")
    output: str = field("runs/demo/adar1", help="folder for every step's output (see the module docstring)")
    world: dict | None = field(None, help="embedded world build keys (WorldBuildConfig; {} = its defaults); "
                                          "its long/ and short/ models are Long and Short")
    long: str = field("", help="Long-CoT checkpoint folder (instead of world:)")
    short: str = field("", help="Short-CoT checkpoint folder (instead of world:, or made by make_short:)")
    make_short: dict | None = field(None, help="make Short by SFT of Long on short solutions: SFTStageConfig keys "
                                               "plus problems (spec with worked solutions, e.g. GSM8K train) and limit")
    train_problems: str = field("", help="problems to sample on (load_problems spec; {world} and {output} are "
                                         "replaced; '' = {world}/data/train.jsonl)")
    eval_problems: str = field("", help="problems to evaluate on ('' = {world}/data/test.jsonl, the world eval's)")
    merge: dict = field({}, help="merge keys (MergeConfig): alpha (default 0.8), alpha_sweep, sweep_problems, ...")
    sample: dict = field({}, help="sample keys (SampleConfig) for both models: k, temperature, top_p, "
                                  "max_tokens, limit, backend, ...")
    pairs: dict = field({}, help="pairs keys (PairsConfig): epsilon, m1, m2, seed")
    dpo: dict = field({}, help="DPO keys (DPOStageConfig) for adar1, group_only and dpo_shortest")
    sft: dict = field({}, help="SFT keys (SFTStageConfig) for the merge_sft baseline")
    eval: dict = field({}, help="eval keys (EvalConfig) for every system (default greedy, max_tokens = the "
                                "world eval's)")
    baselines: list[str] = field(list(BASELINES), help=f"baselines to train and evaluate: {', '.join(BASELINES)}")
    summary: str = field("runs/demo/summary.json", help="summary.json to add the system rows to ('' = none)")
    report: bool = field(True, help="write the table and plots into <output>/report")
    accelerate_config: str = field("", help="accelerate config (e.g. recipes/accelerate/zero3.yaml): run each "
                                            "training step under `accelerate launch` ('' = in this process)")
    seed: int | None = field(None, help="if set, the seed of every stage section that does not set its own")

    def __post_init__(self) -> None:
        if self.world is not None and (self.long or self.short):
            raise ValueError("give either world: or long:/short: checkpoints, not both")
        if self.world is None and not self.long:
            raise ValueError("give world: (build the embedded world) or long: with short: or make_short:")
        if self.world is None and not self.short and self.make_short is None:
            raise ValueError("short: is required (or make_short: to make it from long:)")
        if self.short and self.make_short is not None:
            raise ValueError("give either short: or make_short:, not both")
        if self.make_short is not None and not (self.make_short or {}).get("problems"):
            raise ValueError("make_short.problems is required (problems with worked solutions, e.g. GSM8K train)")
        if self.world is None:
            for key in ("train_problems", "eval_problems"):
                if not getattr(self, key):
                    raise ValueError(f"{key} is required without world:")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ValueError(f"baselines: unknown {bad[0]!r}; choose from {list(BASELINES)}")
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines has duplicates: {self.baselines}")
        if not self.output:
            raise ValueError("output is required")
        validate_sections(self)


# ---------------------------------------------------------------- planning (no I/O)


@dataclass
class Plan:
    """Every stage config of one chain run, with its paths resolved."""

    out: Path
    world: WorldBuildConfig | None
    long: str
    short: str
    make_short: SFTStageConfig | None
    short_problems: str
    short_limit: int | None
    merge: MergeConfig
    sample_long: SampleConfig
    sample_short: SampleConfig
    pairs: PairsConfig
    pairs_group: PairsConfig
    shortest_dir: Path
    merge_sft_dir: Path
    train: dict[str, DPOStageConfig | SFTStageConfig]
    evals: dict[str, EvalConfig]


def _section(cfg: AdaR1Config, name: str, filled: dict[str, Any]) -> Any:
    values = dict(getattr(cfg, name) or {})
    if cfg.seed is not None and name in SEEDED:
        values.setdefault("seed", cfg.seed)
    stage_values, _ = AdaR1Config.SECTIONS[name].split(values)
    return section_config(AdaR1Config.SECTIONS[name], stage_values, name, filled=filled)


def plan_adar1(cfg: AdaR1Config) -> Plan:
    """Resolve every stage's config and path (reads nothing, writes nothing)."""
    out = Path(cfg.output).expanduser()
    world = section_config(AdaR1Config.SECTIONS["world"], cfg.world, "world") if cfg.world is not None else None
    wdir = world.out_dir() if world is not None else None

    def spec(s: str, default: str) -> str:
        s = s or default
        if "{world}" in s and wdir is None:
            raise HybridcotError(f"'{s}': {{world}} needs a world: section")
        return s.replace("{world}", str(wdir)).replace("{output}", str(out))

    long = str(wdir / "long") if wdir is not None else str(Path(cfg.long).expanduser())
    short = str(wdir / "short") if wdir is not None else str(Path(cfg.short).expanduser()) if cfg.short else ""
    make_short, short_problems, short_limit = None, "", None
    if cfg.make_short is not None:
        short = str(out / "models" / "short")
        make_short = _section(cfg, "make_short", {"model": long, "data": str(out / "short_sft" / "sft.jsonl"),
                                                  "output": short})
        extra = check_extra(AdaR1Config.SECTIONS["make_short"], cfg.make_short, "make_short")
        short_problems, short_limit = spec(extra["problems"], ""), extra.get("limit")
    train = spec(cfg.train_problems, "{world}/data/train.jsonl")
    test = spec(cfg.eval_problems, "{world}/data/test.jsonl")
    merge_dir = out / "models" / "merge"
    merge = _section(cfg, "merge", {"long": long, "short": short, "output": str(merge_dir)})
    if merge.alpha_sweep and not merge.sweep_dir:
        merge = dataclasses.replace(merge, sweep_dir=str(out / "merge_sweep"))
    samples = {m: _section(cfg, "sample", {"model": p, "problems": train, "output": str(out / "samples" / m),
                                           "name": m}) for m, p in (("long", long), ("short", short))}
    pairs = {inc: _section(cfg, "pairs", {"long_samples": str(out / "samples" / "long"),
                                          "short_samples": str(out / "samples" / "short"), "problems": train,
                                          "output": str(out / "pairs" / d), "include": inc})
             for inc, d in (("both", "bilevel"), ("group", "group_only"))}
    shortest_dir, merge_sft_dir = out / "pairs" / "dpo_shortest", out / "pairs" / "merge_sft"
    models = out / "models"
    trainers: dict[str, DPOStageConfig | SFTStageConfig] = {
        "adar1": _section(cfg, "dpo", {"model": str(merge_dir), "pairs": str(out / "pairs" / "bilevel" / "pairs.jsonl"),
                                       "output": str(models / "adar1")})}
    if "group_only" in cfg.baselines:
        trainers["group_only"] = _section(cfg, "dpo", {"model": str(merge_dir), "output": str(models / "group_only"),
                                                       "pairs": str(out / "pairs" / "group_only" / "pairs.jsonl")})
    if "dpo_shortest" in cfg.baselines:
        trainers["dpo_shortest"] = _section(cfg, "dpo", {"model": long, "pairs": str(shortest_dir / "pairs.jsonl"),
                                                         "output": str(models / "dpo_shortest")})
    if "merge_sft" in cfg.baselines:
        trainers["merge_sft"] = _section(cfg, "sft", {"model": str(merge_dir), "data": str(merge_sft_dir / "sft.jsonl"),
                                                      "output": str(models / "merge_sft")})
    eval_values = dict(cfg.eval or {})
    if world is not None:  # compare with the world eval: same cap, same seed (then its runs are reused)
        eval_values.setdefault("max_tokens", world.max_new_tokens)
        eval_values.setdefault("seed", cfg.seed if cfg.seed is not None else world.seed)
    paths = {"long": long, "short": short, "merge": str(merge_dir)}
    paths.update({name: str(models / name) for name in ("dpo_shortest", "merge_sft", "group_only", "adar1")
                  if name == "adar1" or name in cfg.baselines})
    evals = {name: section_config(AdaR1Config.SECTIONS["eval"], {k: v for k, v in eval_values.items()}, "eval",
                                  filled={"model": p, "problems": test, "output": str(out / "eval" / name),
                                          "name": name})
             for name, p in paths.items()}
    return Plan(out=out, world=world, long=long, short=short, make_short=make_short, short_problems=short_problems,
                short_limit=short_limit, merge=merge, sample_long=samples["long"], sample_short=samples["short"],
                pairs=pairs["both"], pairs_group=pairs["group"], shortest_dir=shortest_dir,
                merge_sft_dir=merge_sft_dir, train=trainers, evals=evals)


# ---------------------------------------------------------------- completeness checks


def _first_difference(old: dict, new: dict, keys) -> str | None:
    return next((k for k in keys if k in old and k in new and old[k] != new[k]), None)


def _stale(folder: Path, key: str, old: Any, new: Any) -> HybridcotError:
    return HybridcotError(f"{folder}: made with {key}={old!r} but the recipe now gives {new!r}; remove it "
                          "(and what was made from it) or choose a new output")


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


# ---------------------------------------------------------------- steps


def short_solution(problem: Any) -> str:
    """A short worked solution ending in \\boxed{answer}: GSM8K's without its <<...>> calculator notes."""
    import re

    sol = (problem.meta or {}).get("solution")
    if not isinstance(sol, str) or not sol.strip():
        raise HybridcotError(f"make_short: problem {problem.id!r} has no worked solution (GSM8K 'answer' with "
                             "'####', or MATH 'solution')")
    if "\\boxed" in sol:
        return sol.strip()
    body = re.sub(r"<<[^>]*>>", "", sol)
    body = "\n".join(line.rstrip() for line in body.splitlines() if not line.lstrip().startswith("####")).strip()
    return f"{body}\nThe answer is \\boxed{{{problem.answer}}}."


def _make_short(plan: Plan, accelerate_config: str) -> str:
    from hybridcot.data.problems import load_problems
    from hybridcot.generation import chat_prompt

    assert plan.make_short is not None
    data = Path(plan.make_short.data)
    source = {"problems": plan.short_problems, "limit": plan.short_limit}
    src_path = data.parent / "source.json"
    if data.is_file() and src_path.is_file():
        old = read_json(src_path)
        key = _first_difference(old, source, source)
        if key:
            raise _stale(data.parent, key, old[key], source[key])
    else:
        problems = load_problems(plan.short_problems, limit=plan.short_limit)
        rows = [{"prompt": chat_prompt(p.problem), "completion": [{"role": "assistant", "content": short_solution(p)}],
                 "id": p.id} for p in problems]
        write_json(src_path, {**source, "rows": len(rows)})
        write_jsonl(data, rows)
    return _train(plan.make_short, "sft", accelerate_config)


def _merge(plan: Plan) -> str:
    from hybridcot.merging import run_merge

    mc = plan.merge
    out = Path(mc.output)
    need_merge = not (out / "merge.json").is_file()
    if not need_merge:
        info = read_json(out / "merge.json")
        if abs(float(info.get("alpha", -1)) - mc.alpha) > 1e-12:
            raise _stale(out, "alpha", info.get("alpha"), mc.alpha)
        for side in ("long", "short"):
            if info.get(side) != str(Path(getattr(mc, side)).resolve()):
                raise _stale(out, side, info.get(side), str(Path(getattr(mc, side)).resolve()))
    need_sweep = bool(mc.alpha_sweep) and not (Path(mc.sweep_dir) / "sweep.json").is_file()
    if not (need_merge or need_sweep):
        return "skipped"
    run_merge(dataclasses.replace(mc, output=mc.output if need_merge else "",
                                  alpha_sweep=mc.alpha_sweep if need_sweep else []))
    return "ran"


def _sample(sc: SampleConfig) -> str:
    from hybridcot.adar1.sample import run_sample

    out = Path(sc.output)
    if (out / "metrics.json").is_file() and (out / "sample_config.yaml").is_file():
        old, new = _read_yaml(out / "sample_config.yaml"), config_dict(sc)
        key = _first_difference(old, new, SAMPLE_KEYS)
        if key:
            raise _stale(out, key, old[key], new[key])
        return "skipped"
    run_sample(sc)
    return "ran"


def _pairs(pc: PairsConfig) -> str:
    from hybridcot.adar1.pairs import run_pairs

    out = Path(pc.output)
    if (out / "pairs.jsonl").is_file() and (out / "config.yaml").is_file():
        old, new = _read_yaml(out / "config.yaml"), config_dict(pc)
        key = _first_difference(old, new, new)
        if key:
            raise _stale(out, key, old[key], new[key])
        return "skipped"
    run_pairs(pc)
    return "ran"


def _baseline_data(plan: Plan, baselines: list[str]) -> str:
    """DPO-shortest pairs and Merge+SFT rows from the same samples (each skipped when written)."""
    from hybridcot.adar1.pairs import group_chosen_sft_rows, load_samples, shortest_vs_longest_pairs
    from hybridcot.data.problems import load_problems

    pc = plan.pairs
    jobs = {"dpo_shortest": (plan.shortest_dir, "pairs.jsonl", {"long_samples": pc.long_samples,
                                                                "problems": pc.problems, "m2": pc.m2}),
            "merge_sft": (plan.merge_sft_dir, "sft.jsonl", {"long_samples": pc.long_samples,
                                                            "short_samples": pc.short_samples, "problems": pc.problems,
                                                            "epsilon": pc.epsilon, "m1": pc.m1, "seed": pc.seed})}
    todo = []
    for name in (b for b in ("dpo_shortest", "merge_sft") if b in baselines):
        folder, fname, source = jobs[name]
        if (folder / fname).is_file() and (folder / "source.json").is_file():
            old = read_json(folder / "source.json")
            key = _first_difference(old, source, source)
            if key:
                raise _stale(folder, key, old[key], source[key])
            continue
        todo.append(name)
    if not todo:
        return "skipped"
    problems = load_problems(pc.problems)
    answers = {p.id: p.answer for p in problems}
    long_s = load_samples(pc.long_samples, answers)
    for name in todo:
        folder, fname, source = jobs[name]
        if name == "dpo_shortest":
            rows, stats = shortest_vs_longest_pairs(long_s, problems, m2=pc.m2)
        else:
            short_s = load_samples(pc.short_samples, answers)
            rows = group_chosen_sft_rows(long_s, short_s, problems, epsilon=pc.epsilon, m1=pc.m1, seed=pc.seed)
            styles = [r["style"] for r in rows]
            stats = {"rows": len(rows), "by_style": {s: styles.count(s) for s in sorted(set(styles))},
                     "problems": len({r["id"] for r in rows})}
        if not rows:
            raise HybridcotError(f"{name}: no training rows from {pc.long_samples} (no correct Long response with a "
                                 "longer one beside it?); drop it from baselines: or sample more problems")
        write_json(folder / "source.json", source)
        write_json(folder / "stats.json", stats)
        write_jsonl(folder / fname, rows)
        print(f"{name}: {len(rows)} rows -> {folder / fname}")
    return "ran"


def _train(cfg: DPOStageConfig | SFTStageConfig, stage: str, accelerate_config: str) -> str:
    out = Path(cfg.output)
    meta_path = out / "hybridcot.json"
    if meta_path.is_file():
        meta = read_json(meta_path)
        if isinstance(meta, dict) and meta.get("stage") == stage:
            old, new = meta.get("config") or {}, config_dict(cfg)
            key = _first_difference(old, new, [k for k in new if k not in RESUME_FREE])
            if key:
                raise _stale(out, key, old[key], new[key])
            return "skipped"
    if accelerate_config:
        _launch(cfg, stage, accelerate_config)
    elif stage == "dpo":
        from hybridcot.adar1.dpo import run_dpo

        run_dpo(cfg)  # type: ignore[arg-type]
    else:
        from hybridcot.adar1.sft import run_sft

        run_sft(cfg)  # type: ignore[arg-type]
    return "ran"


def _launch(cfg: Any, stage: str, accelerate_config: str) -> None:
    """Run one training stage as `accelerate launch --config_file <cfg> -m hybridcot.cli <stage> -c <yaml>`."""
    from hybridcot.config import save_config

    if not Path(accelerate_config).is_file():
        raise HybridcotError(f"{accelerate_config}: accelerate config not found")
    out = Path(cfg.output)
    stage_yaml = save_config(cfg, out.parent, name=f"{out.name}.{stage}.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
           "-m", "hybridcot.cli", stage, "--config", str(stage_yaml)]
    print("adar1: " + " ".join(cmd))
    rc = subprocess.call(cmd)
    if rc != 0:
        raise HybridcotError(f"{stage} {out}: `accelerate launch` exited with status {rc}")


def _eval(ec: EvalConfig, reuse: Path | None = None) -> str:
    """Evaluate (or skip a finished eval, or copy an identical finished one from `reuse`)."""
    from hybridcot.evaluation.stage import run_eval

    out = Path(ec.output)
    new = dataclasses.asdict(ec)
    if (out / "metrics.json").is_file():
        old = _read_yaml(out / "config.yaml")
        key = _first_difference(old, new, EVAL_KEYS)
        if key:
            raise _stale(out, key, old[key], new[key])
        return "skipped"
    if reuse is not None and not out.exists() and (reuse / "metrics.json").is_file():
        old = _read_yaml(reuse / "config.yaml")
        if all(k in old and old[k] == new[k] for k in EVAL_KEYS if k != "limit") and old.get("limit") == ec.limit:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
            shutil.copytree(reuse, tmp, dirs_exist_ok=True)
            tmp.chmod(0o755)
            tmp.rename(out)
            print(f"eval {ec.name}: reusing the identical world eval {reuse}")
            return "copied"
    run_eval(ec)
    return "ran"


def _summary_rows(path: Path, metrics: dict[str, dict], add_if_missing: tuple[str, ...]) -> str:
    from hybridcot.evaluation.report import summary_entry, update_summary

    rows = read_json(path) if path.is_file() else []
    have = {r.get("name"): r for r in rows if isinstance(r, dict)} if isinstance(rows, list) else {}
    changed = False
    for name, m in metrics.items():
        entry = _jsonable(summary_entry(m, name))
        if name in add_if_missing and name in have:
            continue
        if have.get(name) != entry:
            update_summary(path, entry)
            changed = True
    return "ran" if changed else "skipped"


# ---------------------------------------------------------------- the chain


def run_adar1(cfg: AdaR1Config) -> dict:
    """Run (or resume, or skip) every step; returns {"output", "steps", "metrics", "report"}."""
    plan = plan_adar1(cfg)
    out = plan.out
    steps: list[dict] = []

    def step(name: str, fn, *args) -> Any:
        t0 = time.time()
        status = fn(*args)
        steps.append({"step": name, "status": status, "seconds": round(time.time() - t0, 3)})
        if status != "skipped":
            print(f"adar1: {name} {status} in {time.time() - t0:.1f}s")
        return status

    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "config.yaml"
    if _read_yaml(resolved) != _jsonable(config_dict(cfg)):
        from hybridcot.config import save_config

        save_config(cfg, out)
    if plan.world is not None:
        from hybridcot.data.world_models import build_world

        step("world", lambda: "skipped" if (plan.world.out_dir() / "metrics.json").is_file()
             else (build_world(plan.world), "ran")[1])
    if plan.make_short is not None:
        step("make_short", _make_short, plan, cfg.accelerate_config)
    step("merge", _merge, plan)
    step("sample long", _sample, plan.sample_long)
    step("sample short", _sample, plan.sample_short)
    step("pairs", _pairs, plan.pairs)
    if "group_only" in cfg.baselines:
        step("pairs group_only", _pairs, plan.pairs_group)
    if any(b in cfg.baselines for b in ("dpo_shortest", "merge_sft")):
        step("baseline data", _baseline_data, plan, cfg.baselines)
    for name, tc in plan.train.items():
        step(f"train {name}", _train, tc, "sft" if isinstance(tc, SFTStageConfig) else "dpo", cfg.accelerate_config)
    world_eval = plan.world.out_dir() / "eval" if plan.world is not None else None
    for name, ec in plan.evals.items():
        reuse = world_eval / name if world_eval is not None and name in ("long", "short") else None
        step(f"eval {name}", _eval, ec, reuse)
    metrics = {name: read_json(Path(ec.output) / "metrics.json") for name, ec in plan.evals.items()}
    if cfg.summary:
        step("summary", _summary_rows, Path(cfg.summary).expanduser(), metrics, ("long", "short"))
    report = None
    if cfg.report:
        from hybridcot.evaluation.adar1_report import write_adar1_report

        holder: dict = {}

        def do_report() -> str:
            holder["r"] = write_adar1_report(metrics, out / "report", base="long")
            return holder["r"]["status"]

        step("report", do_report)
        report = holder.get("r")
    ran = [s for s in steps if s["status"] != "skipped"]
    if ran:
        write_json(out / "chain.json", {"recipe": cfg.recipe, "steps": steps})
    print(f"adar1: {len(ran)} of {len(steps)} steps ran"
          + (f" ({', '.join(s['step'] for s in ran)})" if ran else " (everything was already done)")
          + f" -> {out}")
    return {"output": str(out), "steps": steps, "metrics": metrics, "report": report}
