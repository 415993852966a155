"""`hybridcot longshort`: the whole Long⊗Short chain from one recipe, its summary rows and report.

    hybridcot longshort --recipe recipes/tiny/longshort.yaml
    hybridcot longshort --recipe recipes/tiny/longshort_smoke.yaml output=/tmp/ls rl.learning_rate=1e-4

Steps, each skipped when its output is complete and made with the same settings (so a killed or
repeated run resumes, and a finished one rewrites nothing):

    world        build the embedded world (`world:`), or take `long:` and `short:` checkpoints
    sample       with `cots: sample`: long CoTs sampled from `cot_model` (default Long) on the
                 training problems (`sample:` keys, as AdaR1's sample stage); only correct ones are chunked
    chunk        long CoTs (`cots`: the world writer's by default, a samples.jsonl, or `sample`) -> thoughts
    importance   Monte Carlo rollouts per thought prefix with the rollout model (default: Short,
                 "asked to finish"; with world:, the world's finisher, Short trained to finish at every
                 cut) -> acc_i, e_i, c_i, s_i
                 (`importance_from:` a finished importance folder skips chunk and importance: a tau
                 sweep scores once)
    sample short with `short_samples:` (our extension, not in the paper): Short's own graded samples on
                 the chunked problems (`short_samples:` keys, as AdaR1's sample stage; `limit` defaults to
                 chunk's), so the dialogues skip the long thinker where Short alone solves a problem
                 (`dialogues.skip_long_min`)
    dialogues    cold-start dialogues (s_i > tau -> Long turn) and one SFT set per thinker
    sft long     the long thinker: SFT of Long (or `long_thinker_from`) on its own turns (`sft:` keys,
                 `sft_long:` overrides)
    sft short    the short thinker: SFT of Short (or `short_thinker_from`) on its own turns (`sft:` keys,
                 `sft_short:` overrides)
    eval         Long and Short alone (the world's own evals where identical)
    collaborate  the SFT pair on the eval problems -> row `longshort_sft`
    rl           rounds of multi-turn GRPO (`rl:`), then the RL pair -> row `longshort_rl`
    summary      rows longshort_sft and longshort_rl (with short_thinker_token_share and mean_turns)
    report       the table (accuracy, tokens, tokens by the long thinker, turns, ΔA, ΔL, AES vs Long)
                 and a transcript view of a few dialogues

Layout under `output`: chunks/, importance/, dialogues/, models/{long_thinker,short_thinker},
rl/, eval/<system>, report/, config.yaml, chain.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hybridcot.adar1 import steps as S
from hybridcot.adar1.sample import SampleConfig
from hybridcot.adar1.sft import SFTStageConfig
from hybridcot.config import config_dict, field
from hybridcot.data.world_models import WorldBuildConfig
from hybridcot.evaluation.stage import EvalConfig
from hybridcot.io import HybridcotError, read_json
from hybridcot.longshort.chunking import ChunkConfig
from hybridcot.longshort.collaborate import CollaborateConfig
from hybridcot.longshort.dialogues import DialoguesConfig
from hybridcot.longshort.importance import ImportanceConfig
from hybridcot.models import check_checkpoint
from hybridcot.recipes import Section, section_config, validate_sections

SYSTEMS = ("longshort_sft", "longshort_rl")  # the rows this chain adds
SEEDED = ("sample", "short_samples", "importance", "sft", "collaborate", "rl", "eval")


def _rl_section() -> Section:
    from hybridcot.longshort.rl import RLConfig

    return Section(RLConfig, ("long_model", "short_model", "problems", "output"))


@dataclass
class LongShortConfig:
    """The Long⊗Short chain: world -> chunk -> importance -> dialogues -> SFT x2 -> collaborate -> RL -> eval."""

    SECTIONS: ClassVar[dict[str, Section]] = {
        "world": Section(WorldBuildConfig),
        "sample": Section(SampleConfig, ("model", "problems", "output", "name")),
        "chunk": Section(ChunkConfig, ("input", "output", "problems")),
        "importance": Section(ImportanceConfig, ("chunks", "model", "output")),
        "short_samples": Section(SampleConfig, ("model", "problems", "output", "name")),
        "dialogues": Section(DialoguesConfig, ("input", "output", "tokenizer", "model", "short_samples")),
        "sft": Section(SFTStageConfig, ("model", "data", "output")),
        "sft_long": Section(SFTStageConfig, ("model", "data", "output")),
        "sft_short": Section(SFTStageConfig, ("model", "data", "output")),
        "collaborate": Section(CollaborateConfig, ("long_model", "short_model", "problems", "output", "name")),
        "eval": Section(EvalConfig, ("model", "problems", "output", "name")),
    }

    recipe: str = field("", help="the recipe file this run came from (set by --recipe; recorded only)")
    output: str = field("runs/demo/longshort", help="folder for every step's output (see the module docstring)")
    world: dict | None = field(None, help="embedded world build keys (WorldBuildConfig; {} = its defaults); "
                                          "its long/ and short/ models start the two thinkers")
    long: str = field("", help="Long-CoT checkpoint folder (instead of world:): starts the long thinker")
    short: str = field("", help="Short checkpoint folder (instead of world:): starts the short thinker and "
                                "is the default rollout model")
    cots: str = field("", help="long CoTs to chunk: a world build folder (the writer's CoTs, '' = {world}), a "
                               "samples.jsonl ({world} and {output} are replaced), or 'sample' (sample them from "
                               "cot_model on train_problems first)")
    cot_model: str = field("", help="with cots=sample: the model whose correct CoTs are chunked ('' = Long; e.g. an "
                                    "R1-distilled reasoning model)")
    sample: dict = field({}, help="with cots=sample: sample keys (SampleConfig): k, temperature, max_tokens, limit, ...")
    cot_problems: str = field("", help="problem set for a samples.jsonl without problem text (load_problems spec)")
    importance_from: str = field("", help="a finished importance folder (importance.jsonl + stats.json, e.g. another "
                                          "run's <output>/importance) to build the dialogues from, instead of "
                                          "chunking and scoring again: a tau or SFT sweep pays for the rollouts once")
    long_thinker_from: str = field("", help="checkpoint the long thinker's SFT starts from ('' = Long; {world} and "
                                            "{output} are replaced, e.g. {world}/parent)")
    short_thinker_from: str = field("", help="checkpoint the short thinker's SFT starts from ('' = Short; {world} "
                                             "and {output} are replaced, e.g. {world}/parent, the hybrid parent "
                                             "both world models were fine-tuned from, which has seen every level)")
    rollout_model: str = field("", help="rollout model for importance ('' = the world's finisher "
                                                  "where it has one, else Short)")
    train_problems: str = field("", help="RL problems ('' = {world}/data/train.jsonl)")
    eval_problems: str = field("", help="problems to evaluate on ('' = {world}/data/test.jsonl, the world eval's)")
    chunk: dict = field({}, help="chunk keys (ChunkConfig): method, markers, min_thought_tokens, limit, ...")
    importance: dict = field({}, help="importance keys (ImportanceConfig): n, delta, adaptive, limit, ...")
    short_samples: dict | None = field(None, help="our extension, not in the paper: sample keys (SampleConfig: k, "
                                                  "temperature, max_tokens, limit, ...) for Short's own samples on the "
                                                  "chunked problems; where Short is right on at least "
                                                  "dialogues.skip_long_min of them, the dialogue skips the long thinker "
                                                  "(an empty Long turn, one final Short turn); null = off, as the paper")
    dialogues: dict = field({}, help="dialogues keys (DialoguesConfig): tau, writer, skip_long_min, ...")
    sft: dict = field({}, help="SFT keys (SFTStageConfig) for both thinkers")
    sft_long: dict = field({}, help="SFT keys for the long thinker only (over sft:)")
    sft_short: dict = field({}, help="SFT keys for the short thinker only (over sft:)")
    collaborate: dict = field({}, help="collaborate keys (CollaborateConfig) for both pairs: max_turns, caps, ...")
    rl: dict | None = field({}, help="rl keys (RLConfig); null = no RL round (no longshort_rl row)")
    eval: dict = field({}, help="eval keys (EvalConfig) for Long and Short alone")
    summary: str = field("runs/demo/summary.json", help="summary.json to add the system rows to ('' = none)")
    report: bool = field(True, help="write the table and transcripts into <output>/report")
    seed: int | None = field(None, help="if set, the seed of every stage section that does not set its own")

    def __post_init__(self) -> None:
        validate_sections(self)
        if self.rl is not None:
            section_config(_rl_section(), self.rl, "rl")
        if self.world is not None and (self.long or self.short):
            raise ValueError("give either world: or long:/short: checkpoints, not both")
        if self.world is None and not (self.long and self.short):
            raise ValueError("give world: (build the embedded world) or both long: and short:")
        if self.world is None:
            for key in ("train_problems", "eval_problems"):
                if not getattr(self, key):
                    raise ValueError(f"{key} is required without world:")
        if self.world is None and not self.cots:
            raise ValueError("cots is required without world: (a samples.jsonl, or 'sample')")
        if not self.output:
            raise ValueError("output is required")
        if self.importance_from:
            src = Path(self.importance_from).expanduser()
            missing = [f for f in ("importance.jsonl", "stats.json") if not (src / f).is_file()]
            if missing:
                raise ValueError(f"importance_from: {src} is not a finished importance folder (no {missing[0]})")


@dataclass
class Plan:
    out: Path
    world: WorldBuildConfig | None
    long: str
    short: str
    sample: SampleConfig | None
    short_samples: SampleConfig | None
    chunk: ChunkConfig
    importance: ImportanceConfig
    dialogues: DialoguesConfig
    sft: dict[str, SFTStageConfig]
    evals: dict[str, EvalConfig]
    collab_sft: CollaborateConfig
    rl: Any
    collab_rl: CollaborateConfig | None


def _values(cfg: LongShortConfig, name: str, *extra: str) -> dict:
    values: dict = {}
    for n in (name, *extra):
        values.update(getattr(cfg, n) or {})
    if cfg.seed is not None and name in SEEDED:
        values.setdefault("seed", cfg.seed)
    return values


def plan_longshort(cfg: LongShortConfig) -> Plan:
    """Resolve every stage's config and path (reads nothing, writes nothing)."""
    out = Path(cfg.output).expanduser()
    sec = LongShortConfig.SECTIONS
    world = section_config(sec["world"], cfg.world, "world") if cfg.world is not None else None
    wdir = world.out_dir() if world is not None else None

    def spec(s: str, default: str) -> str:
        s = s or default
        if "{world}" in s and wdir is None:
            raise HybridcotError(f"'{s}': {{world}} needs a world: section")
        return s.replace("{world}", str(wdir)).replace("{output}", str(out))

    long = str(wdir / "long") if wdir is not None else str(Path(cfg.long).expanduser())
    short = str(wdir / "short") if wdir is not None else str(Path(cfg.short).expanduser())
    finisher = str(wdir / "finisher") if wdir is not None else ""
    train, test = spec(cfg.train_problems, "{world}/data/train.jsonl"), spec(cfg.eval_problems, "{world}/data/test.jsonl")
    sample = None
    cots, cot_problems = (spec(cfg.cots, "{world}"), spec(cfg.cot_problems, "") if cfg.cot_problems else "")
    if cfg.cots == "sample":
        model = str(Path(cfg.cot_model).expanduser()) if cfg.cot_model else long
        sample = section_config(sec["sample"], _values(cfg, "sample"), "sample",
                                filled={"model": model, "problems": train, "output": str(out / "samples" / "cots"),
                                        "name": "cots"})
        cots, cot_problems = str(out / "samples" / "cots" / "samples.jsonl"), train
    chunk = section_config(sec["chunk"], _values(cfg, "chunk"), "chunk",
                           filled={"input": cots, "output": str(out / "chunks"), "problems": cot_problems})
    imp_values = _values(cfg, "importance")
    tau = (cfg.dialogues or {}).get("tau")
    if tau is not None and math.isfinite(float(tau)):  # stats: the detector at the threshold the dialogues use
        imp_values.setdefault("tau", tau)
    imp = section_config(sec["importance"], imp_values, "importance",
                         filled={"chunks": str(out / "chunks" / "chunks.jsonl"),
                                 "model": spec(cfg.rollout_model, finisher if world is not None and world.finisher_steps
                                               else short),
                                 "output": str(out / "importance")})
    imp_dir = Path(cfg.importance_from).expanduser() if cfg.importance_from else out / "importance"
    short_samples = None
    if cfg.short_samples is not None:
        values = _values(cfg, "short_samples")
        values.setdefault("limit", chunk.limit)  # the problems whose CoTs were chunked: the first `limit`
        short_samples = section_config(sec["short_samples"], values, "short_samples",
                                       filled={"model": short, "problems": train,
                                               "output": str(out / "samples" / "short"), "name": "short"})
    dia = section_config(sec["dialogues"], _values(cfg, "dialogues"), "dialogues",
                         filled={"input": str(imp_dir), "output": str(out / "dialogues"),
                                 "tokenizer": long,
                                 "short_samples": str(Path(short_samples.output) / "samples.jsonl")
                                 if short_samples is not None else "",
                                 # Short turns of non-world CoTs are written by the short model (METHODS.md)
                                 "model": short if world is None or cfg.cots else ""})
    models = out / "models"
    starts = {"long": spec(cfg.long_thinker_from, long), "short": spec(cfg.short_thinker_from, short)}
    sft = {role: section_config(sec["sft"], _values(cfg, "sft", f"sft_{role}"), f"sft_{role}",
                                filled={"model": str(Path(start).expanduser()),
                                        "data": str(out / "dialogues" / f"sft_{role}.jsonl"),
                                        "output": str(models / f"{role}_thinker")})
           for role, start in starts.items()}
    eval_values = _values(cfg, "eval")
    if world is not None:  # the world eval's cap and seed: then its runs are reused
        eval_values.setdefault("max_tokens", world.max_new_tokens)
        eval_values.setdefault("seed", cfg.seed if cfg.seed is not None else world.seed)
    evals = {name: section_config(sec["eval"], eval_values, "eval",
                                  filled={"model": p, "problems": test, "output": str(out / "eval" / name),
                                          "name": name}) for name, p in (("long", long), ("short", short))}

    def collab(name: str, lm: str, sm: str) -> CollaborateConfig:
        return section_config(sec["collaborate"], _values(cfg, "collaborate"), "collaborate",
                              filled={"long_model": lm, "short_model": sm, "problems": test,
                                      "output": str(out / "eval" / name), "name": name})

    lt, st = str(models / "long_thinker"), str(models / "short_thinker")
    rl = collab_rl = None
    if cfg.rl is not None:
        rl = section_config(_rl_section(), _values(cfg, "rl"), "rl",
                            filled={"long_model": lt, "short_model": st, "problems": train, "output": str(out / "rl")})
        collab_rl = collab("longshort_rl", str(out / "rl" / "long"), str(out / "rl" / "short"))
    return Plan(out=out, world=world, long=long, short=short, sample=sample, short_samples=short_samples, chunk=chunk, importance=imp, dialogues=dia, sft=sft,
                evals=evals, collab_sft=collab("longshort_sft", lt, st), rl=rl, collab_rl=collab_rl)


# ---------------------------------------------------------------- steps


def _data_step(cfg: Any, run, done_file: str) -> str:
    """A data stage (chunk, dialogues): skipped when `done_file` is there, made with the same config."""
    new = config_dict(cfg)
    if S._finished_unchanged(Path(cfg.output), done_file, "config.yaml", new, new):
        return "skipped"
    run(cfg)
    return "ran"


def _importance_step(ic: ImportanceConfig) -> str:
    from hybridcot.longshort.importance import run_importance

    new = config_dict(ic)
    keys = [k for k in new if k not in ("backend", "urls", "batch_size", "threads", "chunk", "share_prefix")]
    if S._finished_unchanged(Path(ic.output), "stats.json", "config.yaml", new, keys):
        return "skipped"
    run_importance(ic)  # resumes a partial run by (id, sample)
    return "ran"


def _collaborate_step(cc: CollaborateConfig) -> str:
    from hybridcot.longshort.collaborate import run_collaborate

    new = config_dict(cc)
    keys = [k for k in new if k not in ("backend", "urls", "short_urls", "batch_size", "threads",
                                            "gpu_memory_utilization", "n_boot")]
    if S._finished_unchanged(Path(cc.output), "metrics.json", "config.yaml", new, keys):
        return "skipped"
    run_collaborate(cc)
    return "ran"


def _rl_step(rc: Any) -> str:
    from hybridcot.longshort.rl import run_rl

    return run_rl(rc)["status"]


def run_longshort(cfg: LongShortConfig) -> dict:
    """Run (or resume, or skip) every step; returns {"output", "steps", "metrics", "report"}."""
    from hybridcot.longshort.chunking import run_chunk
    from hybridcot.longshort.dialogues import run_dialogues

    plan = plan_longshort(cfg)
    out = plan.out
    log = S.ChainLog("longshort", out)
    step = log.step
    results: dict[str, Any] = {}

    def report_step() -> str:
        from hybridcot.evaluation.longshort_report import write_longshort_report

        results["report"] = write_longshort_report(results["metrics"], out / "report", base="long",
                                                   dialogues={n: out / "eval" / n / "dialogues.jsonl"
                                                              for n in SYSTEMS if n in results["metrics"]})
        return results["report"]["status"]

    if plan.world is not None:
        step("world", S.world_step, plan.world)
    for role, sc in plan.sft.items():  # a chosen start that is not there fails now, not after the rollouts
        if getattr(cfg, f"{role}_thinker_from"):
            try:
                check_checkpoint(sc.model)
            except HybridcotError as e:
                raise HybridcotError(f"{role}_thinker_from: {e}") from None
    if plan.sample is not None:
        step("sample cots", S.sample_step, plan.sample)
    if not cfg.importance_from:  # else scored elsewhere: the dialogues read it (plan.dialogues.input)
        step("chunk", _data_step, plan.chunk, run_chunk, "stats.json")
        step("importance", _importance_step, plan.importance)
    if plan.short_samples is not None:
        step("sample short", S.sample_step, plan.short_samples)
    step("dialogues", _data_step, plan.dialogues, run_dialogues, "stats.json")
    for role, sc in plan.sft.items():
        step(f"sft {role}", S.train_step, sc, "sft")
    world_eval = plan.world.out_dir() / "eval" if plan.world is not None else None
    for name, ec in plan.evals.items():
        step(f"eval {name}", S.eval_step, ec, world_eval / name if world_eval else None)
    step("collaborate longshort_sft", _collaborate_step, plan.collab_sft)
    if plan.rl is not None:
        step("rl", _rl_step, plan.rl)
        step("collaborate longshort_rl", _collaborate_step, plan.collab_rl)
    results["metrics"] = {name: read_json(Path(ec.output) / "metrics.json") for name, ec in plan.evals.items()}
    for cc in (plan.collab_sft, plan.collab_rl):
        if cc is not None:
            results["metrics"][cc.name] = read_json(Path(cc.output) / "metrics.json")
    if cfg.summary:
        step("summary", S.summary_step, Path(cfg.summary).expanduser(), results["metrics"], ("long", "short"))
    if cfg.report:
        step("report", report_step)
    steps = log.finish(cfg)
    return {"output": str(out), "steps": steps, "metrics": results["metrics"], "report": results.get("report")}
