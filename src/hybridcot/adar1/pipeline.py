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

`rounds: N` (default 0, the paper) adds N on-policy instance rounds after adar1, our extension: round i
samples the previous model (adar1 for i = 1) K times on the training problems (`sample:`), pairs its
shortest correct answer in each problem's preferred style (from the bi-level pairs) against its M2
longest others of that style (`pairs.onpolicy_instance_pairs`), and trains DPO (`dpo:`) from the
previous model. The last round's model is the row `adar1_onpolicy`; `adar1` stays the paper's one pass.
`rounds_style: own` pairs instead within the style most of the model's own samples of a problem are in
(`pairs.own_styles`): no pair asks for the other style, but on a level where the model mixes styles the
pairs of its Long-style minority still pull the whole level (stop 24: 3 seeds, 70.6% of Long's tokens at
-3.8 points against "preferred"'s 73.4% at -3.4; docs/experiments.md).

Layout under `output`: config.yaml (the resolved recipe), models/{short,merge,adar1,group_only,
dpo_shortest,merge_sft}, samples/{long,short}, pairs/{bilevel,group_only,dpo_shortest,merge_sft},
with rounds also samples/adar1_r<i>, pairs/onpolicy_r<i> and models/adar1_r<i>; eval/<system>,
report/, chain.json (what the last run did, written only when a step ran).

The steps themselves (a stage call behind a completeness check each) are in `adar1/steps.py`.
A step whose folder was made with other settings than the recipe now gives is an error naming the
folder and the setting (remove it and what was made from it, or use a new `output`), never a
silent mix. Training steps run in-process, or under `accelerate launch --config_file
<accelerate_config>` (DeepSpeed ZeRO-3 for the 7B recipes) when `accelerate_config` is set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hybridcot.adar1 import steps as S
from hybridcot.adar1.dpo import DPOStageConfig
from hybridcot.adar1.pairs import PairsConfig
from hybridcot.adar1.sample import SampleConfig
from hybridcot.adar1.sft import SFTStageConfig
from hybridcot.config import field
from hybridcot.data.world_models import WorldBuildConfig
from hybridcot.evaluation.stage import EvalConfig
from hybridcot.io import HybridcotError, read_json
from hybridcot.merging import MergeConfig
from hybridcot.recipes import Section, check_extra, section_config, validate_sections

BASELINES = ("dpo_shortest", "merge_sft", "group_only")
SYSTEMS = ("merge", "dpo_shortest", "merge_sft", "group_only", "adar1", "adar1_onpolicy")  # rows it can add
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
    rounds: int = field(0, help="on-policy instance rounds after adar1 (our extension; 0 = the paper's one pass): "
                                "sample the model, pair its shortest correct answer in the style rounds_style "
                                "picks against its longest, DPO again; the last one is the row adar1_onpolicy")
    rounds_style: str = field("preferred", help="the style a round pairs within, per problem: preferred (the "
                                                "bi-level pairs' choice; moves a level that mixes styles toward "
                                                "it) | own (the style most of the model's own samples are in; "
                                                "no pair asks for the other style)")
    baselines: list[str] = field(list(BASELINES), help=f"baselines to train and evaluate: {', '.join(BASELINES)}")
    summary: str = field("runs/demo/summary.json", help="summary.json to add the system rows to ('' = none)")
    report: bool = field(True, help="write the table and plots into <output>/report")
    accelerate_config: str = field("", help="accelerate config (e.g. recipes/accelerate/zero3.yaml): run each "
                                            "training step under `accelerate launch` ('' = in this process)")
    seed: int | None = field(None, help="if set, the seed of every stage section that does not set its own")

    def __post_init__(self) -> None:
        validate_sections(self)
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
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.rounds_style not in S.ROUND_STYLES:
            raise ValueError(f"rounds_style must be one of {list(S.ROUND_STYLES)}, got {self.rounds_style!r}")


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
    rounds: list[OnPolicyRound] = dataclasses.field(default_factory=list)


@dataclass
class OnPolicyRound:
    """One on-policy instance round: sample the previous model, pair, DPO from it."""

    sample: SampleConfig
    pairs_dir: Path
    dpo: DPOStageConfig


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
    rounds, prev = [], str(models / "adar1")
    for i in range(1, cfg.rounds + 1):
        name, pdir = f"adar1_r{i}", out / "pairs" / f"onpolicy_r{i}"
        rounds.append(OnPolicyRound(
            sample=_section(cfg, "sample", {"model": prev, "problems": train, "output": str(out / "samples" / name),
                                            "name": name}),
            pairs_dir=pdir,
            dpo=_section(cfg, "dpo", {"model": prev, "pairs": str(pdir / "pairs.jsonl"), "output": str(models / name)})))
        prev = str(models / name)
    paths = {"long": long, "short": short, "merge": str(merge_dir)}
    paths.update({name: str(models / name) for name in ("dpo_shortest", "merge_sft", "group_only", "adar1")
                  if name == "adar1" or name in cfg.baselines})
    if rounds:
        paths["adar1_onpolicy"] = prev
    evals = {name: section_config(AdaR1Config.SECTIONS["eval"], {k: v for k, v in eval_values.items()}, "eval",
                                  filled={"model": p, "problems": test, "output": str(out / "eval" / name),
                                          "name": name})
             for name, p in paths.items()}
    return Plan(out=out, world=world, long=long, short=short, make_short=make_short, short_problems=short_problems,
                short_limit=short_limit, merge=merge, sample_long=samples["long"], sample_short=samples["short"],
                pairs=pairs["both"], pairs_group=pairs["group"], shortest_dir=shortest_dir,
                merge_sft_dir=merge_sft_dir, train=trainers, evals=evals, rounds=rounds)


# ---------------------------------------------------------------- the chain


def run_adar1(cfg: AdaR1Config) -> dict:
    """Run (or resume, or skip) every step; returns {"output", "steps", "metrics", "report"}."""
    plan = plan_adar1(cfg)
    out = plan.out
    log = S.ChainLog("adar1", out)
    step = log.step
    results: dict[str, Any] = {}

    def report_step() -> str:
        from hybridcot.evaluation.adar1_report import write_adar1_report

        results["report"] = write_adar1_report(results["metrics"], out / "report", base="long")
        return results["report"]["status"]

    if plan.world is not None:
        step("world", S.world_step, plan.world)
    if plan.make_short is not None:
        step("make_short", S.make_short_step, plan.make_short, plan.short_problems, plan.short_limit,
             cfg.accelerate_config)
    step("merge", S.merge_step, plan.merge)
    step("sample long", S.sample_step, plan.sample_long)
    step("sample short", S.sample_step, plan.sample_short)
    step("pairs", S.pairs_step, plan.pairs)
    if "group_only" in cfg.baselines:
        step("pairs group_only", S.pairs_step, plan.pairs_group)
    if any(b in cfg.baselines for b in ("dpo_shortest", "merge_sft")):
        step("baseline data", S.baseline_data_step, plan.pairs, plan.shortest_dir, plan.merge_sft_dir, cfg.baselines)
    for name, tc in plan.train.items():
        step(f"train {name}", S.train_step, tc, "sft" if isinstance(tc, SFTStageConfig) else "dpo",
             cfg.accelerate_config)
    for i, rnd in enumerate(plan.rounds, 1):
        step(f"sample adar1_r{i}", S.sample_step, rnd.sample)
        step(f"pairs onpolicy_r{i}", S.onpolicy_pairs_step, rnd.sample.output,
             str(Path(plan.pairs.output) / "pairs.jsonl"), plan.pairs.problems, rnd.pairs_dir, plan.pairs.m2,
             cfg.rounds_style)
        step(f"train adar1_r{i}", S.train_step, rnd.dpo, "dpo", cfg.accelerate_config)
    world_eval = plan.world.out_dir() / "eval" if plan.world is not None else None
    for name, ec in plan.evals.items():  # long/short: the world's own evals where identical
        step(f"eval {name}", S.eval_step, ec, world_eval / name if world_eval and name in ("long", "short") else None)
    results["metrics"] = {name: read_json(Path(ec.output) / "metrics.json") for name, ec in plan.evals.items()}
    if cfg.summary:
        step("summary", S.summary_step, Path(cfg.summary).expanduser(), results["metrics"], ("long", "short"))
    if cfg.report:
        step("report", report_step)
    steps = log.finish(cfg)
    return {"output": str(out), "steps": steps, "metrics": results["metrics"], "report": results.get("report")}
