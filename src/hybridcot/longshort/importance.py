"""`hybridcot importance`: Long⊗Short step 2, the Monte Carlo importance of every thought of a long CoT.

    hybridcot importance chunks=runs/demo/chunks/chunks.jsonl model=runs/demo/world/short output=runs/demo/importance

For the thoughts T1..Tn of a (correct) long CoT and each prefix size i = 0..n, the rollout model
continues `n` times from T1..Ti; the rollouts are graded against the gold answer:

    acc_i = right_i / N_i                 se_i = sqrt(p(1 - p) / N_i),  p = (right_i + 1) / (N_i + 2)
    e_i = acc_i - acc_{i-1}               se_e_i = sqrt(se_i^2 + se_{i-1}^2)
    c_i = delta * len(T_i) / len(T1..Tn)  s_i = e_i - c_i          (lengths in the rollout model's tokens)

The standard error uses the Laplace-smoothed p (Agresti-Caffo style), not right/N: with 5 rollouts
that all agree the plain formula says 0, which would end adaptive sampling at once although 5/5 is
compatible with a true accuracy of 0.6. `acc` itself is the plain right/N.

Prompts (`prompt_style`): "finish" (default) is one user message, `world.finish_prompt(problem,
[T1..Ti])` (i = 0: the same form with "(nothing yet)", so all n + 1 accuracies share one prompt), and
the rollout alone is graded. "continue" is the
chat prompt of the problem rendered by the model's template, followed by the raw assistant prefix
T1..Ti (each followed by a blank line) and continued as a raw string; prefix + rollout is graded, so
a rollout that stops after a prefix ending in `\\boxed{}` keeps that answer.

`adaptive=true` adds rollouts, `n` at a time, to the prefixes whose se is above `target_se`
(largest first) until all are under it or the CoT has used `max_rollouts` (the first round, n per
prefix, always runs). Rollouts of one prefix share its prefill: vLLM's prefix caching, or the
"hf" backend's `share_prefix` (one prefill per prompt, KV cache copied to its n rows); the config's
`share_prefix=false` turns both off (bench/rollouts.py compares the two). Every
record's `cost` has the generated tokens, the prefill tokens actually run, and those a backend
without sharing would pay (n × prompt length per prefix).

Outputs in `output/`: `importance.jsonl` (one record per CoT, appended a chunk of CoTs at a time;
a killed run resumes by (id, sample): one problem can have several CoTs), `stats.json` (mean accuracy curve, share of thoughts with s > 0, s
against the gold `redundant` marks where the input has them, costs) and `config.yaml`.
Record: {id, sample?, problem, answer, level, thoughts: [{text, n_tokens}], acc, se, n_rollouts (n + 1
entries: prefixes 0..n), e, c, s, se_e (n entries: thoughts 1..n), gold?, cost}.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridcot.config import field, same_setting, save_config
from hybridcot.data.world import finish_prompt
from hybridcot.generation.base import (
    BACKENDS,
    Generator,
    Prompt,
    Sample,
    SamplingConfig,
    chat_prompt,
    resolve_backend,
)
from hybridcot.io import HybridcotError, JsonlAppender, iter_jsonl, read_jsonl, write_json
from hybridcot.shards import SHARD_HELP, in_shard, parse_shard, shard_folder
from hybridcot.ui import progress

PROMPT_STYLES = ("finish", "continue")
# Settings that change what importance.jsonl holds: a resumed run must match them.
RUN_KEYS = ("chunks", "model", "prompt_style", "n", "delta", "temperature", "top_p", "max_tokens", "seed",
            "adaptive", "target_se", "max_rollouts", "fallback_last_number")


@dataclass
class ImportanceConfig:
    """Monte Carlo importance of each thought of long CoTs (Long⊗Short step 2)."""

    chunks: str = field("", help="chunks JSONL from the chunking stage (id, problem, answer, level, thoughts, gold?)")
    model: str = field("", help="rollout model checkpoint (paper: the short-thought model asked to finish)")
    output: str = field("", help="output folder for importance.jsonl, stats.json and config.yaml")
    prompt_style: str = field("finish", help="finish: a user message asking to finish the partial solution | "
                                             "continue: the problem's chat prompt plus the raw prefix, continued")
    n: int = field(5, help="rollouts per prefix (N; paper figure: 5); adaptive mode adds them n at a time")
    delta: float = field(0.25, help="length cost weight δ in c_i = δ·len(T_i)/len(T1..Tn) (paper: 0.25)")
    adaptive: bool = field(False, help="add rollouts to prefixes whose standard error is above target_se")
    target_se: float = field(0.1, help="adaptive mode: stop adding rollouts to a prefix once its se is <= this")
    max_rollouts: int = field(200, help="adaptive mode: rollout budget per CoT (the first round always runs)")
    tau: float = field(0.0, help="stats only: precision/recall of \"s <= tau\" against the gold redundant marks "
                                 "(the dialogues' tau: thoughts at or under it go to the short thinker)")
    temperature: float = field(0.6, help="rollout sampling temperature (must be > 0 for N > 1 to mean anything)")
    top_p: float = field(0.95, help="rollout nucleus sampling top-p")
    max_tokens: int = field(1024, help="maximum generated tokens per rollout")
    seed: int = field(0, help="sampling seed (each rollout is seeded from it, its prompt and its index)")
    backend: str = field("auto", help="generation backend: auto (vLLM where installed) | hf | vllm | http")
    urls: str = field("", help="backend=http: server base URLs, comma-separated (default $HYBRIDCOT_HTTP_URLS)")
    dtype: str = field("float32", help="model dtype (float32 | bfloat16 | float16 | auto)")
    batch_size: int = field(64, help="rows per forward pass (hf backend; a multiple of n keeps a prefix's rollouts "
                                     "in one batch so they share one prefill)")
    threads: int = field(0, help="CPU threads for torch (0 = leave as is; 1 is fastest on a busy small machine)")
    chunk: int = field(8, help="CoTs whose rollouts go into one generate call; results are appended after each")
    limit: int | None = field(None, help="score only the first `limit` CoTs")
    shard: str | None = field(None, help=SHARD_HELP + " (the CoTs of one problem id stay together)")
    grade_timeout: float = field(5.0, help="seconds per grader call; a timeout counts as wrong")
    fallback_last_number: bool = field(False, help="grade the last number when a rollout has no \\boxed{}")
    share_prefix: bool = field(True, help="rollouts of one prefix share its prefill (hf: KV cache copy, vllm: prefix "
                                          "caching); false runs every rollout's whole prompt (bench/rollouts.py; "
                                          "http: a server setting, not switched here)")

    def __post_init__(self) -> None:
        for key in ("chunks", "model", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {list(PROMPT_STYLES)}, got {self.prompt_style!r}")
        if self.backend not in ("auto", *BACKENDS):
            raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {self.backend!r}")
        if self.delta < 0:
            raise ValueError(f"delta must be >= 0, got {self.delta}")
        if self.target_se <= 0:
            raise ValueError(f"target_se must be > 0, got {self.target_se}")
        if self.max_rollouts < self.n:
            raise ValueError(f"max_rollouts must be >= n ({self.n}), got {self.max_rollouts}")
        for key in ("batch_size", "chunk"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null, got {self.limit}")
        if self.grade_timeout <= 0:
            raise ValueError(f"grade_timeout must be > 0, got {self.grade_timeout}")
        self.sampling(0)  # validates n, temperature, top_p, max_tokens
        parse_shard(self.shard)

    def sampling(self, round_: int) -> SamplingConfig:
        """Round 0 uses `seed`; later adaptive rounds get seeds derived from it (fresh samples)."""
        seed = self.seed if round_ == 0 else int.from_bytes(
            hashlib.sha256(f"{self.seed}|round|{round_}".encode()).digest()[:8], "little") >> 1
        return SamplingConfig(n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=seed)


class CallableGenerator(Generator):
    """A rollout function as a Generator (tests, custom engines): `fn(prompts, n)` returns, per prompt,
    n texts or (text, n_tokens) pairs. Tokens are `count_tokens(text)` (default: whitespace words);
    chat prompts render as their messages' contents joined by newlines."""

    backend = "callable"

    def __init__(self, fn: Callable[[list[Prompt], int], list[list[Any]]],
                 count_tokens: Callable[[str], int] | None = None):
        self.fn = fn
        self.count_tokens = count_tokens or (lambda s: len(s.split()))
        self.model_path = Path("callable")

    def render(self, prompt: Prompt) -> str:
        return prompt if isinstance(prompt, str) else "\n".join(str(m["content"]) for m in prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        return list(range(self.count_tokens(self.render(prompt))))

    def _generate(self, prompt_ids: list[list[int]], params: SamplingConfig) -> list[list[Sample]]:
        raise NotImplementedError  # generate() is overridden: the function sees the prompts themselves

    def generate(self, prompts: list[Prompt], params: SamplingConfig | None = None) -> list[list[Sample]]:
        params = params or SamplingConfig()
        out = []
        results = self.fn(prompts, params.n)
        if len(results) != len(prompts):
            raise HybridcotError(f"rollout function gave {len(results)} lists for {len(prompts)} prompts")
        for items in results:
            ss = [Sample(x, n_tokens=self.count_tokens(x)) if isinstance(x, str) else
                  Sample(str(x[0]), n_tokens=int(x[1])) for x in items]
            if len(ss) != params.n:
                raise HybridcotError(f"rollout function gave {len(ss)} samples for a prompt, expected {params.n}")
            out.append(ss)
        naive = params.n * sum(len(self.encode(p)) for p in prompts)
        self.stats["prompt_tokens"] += naive
        self.stats["prefill_tokens"] += naive  # prefill_tokens None: every sample pays its whole prompt
        self.stats["generated_tokens"] += sum(s.n_tokens for ss in out for s in ss)
        return out


def prefix_prompts(gen: Generator, problem: str, thoughts: list[str], style: str = "finish") \
        -> list[tuple[Prompt, str]]:
    """(prompt, text graded before the rollout) for every prefix T1..Ti, i = 0..n."""
    out: list[tuple[Prompt, str]] = []
    head = gen.render(chat_prompt(problem)) if style == "continue" else ""
    for i in range(len(thoughts) + 1):
        if style == "finish":
            out.append(([{"role": "user", "content": finish_prompt(problem, thoughts[:i])}], ""))
        else:
            prefix = "".join(t + "\n\n" for t in thoughts[:i])
            out.append((head + prefix, prefix))
    return out


def accuracy_se(right: int, total: int) -> float:
    """Standard error of right/total with the Laplace-smoothed p = (right+1)/(total+2) (never 0)."""
    p = (right + 1) / (total + 2)
    return math.sqrt(p * (1 - p) / total)


def importance_scores(right: list[int], total: list[int], lengths: list[int], delta: float = 0.25) -> dict:
    """acc, se (per prefix 0..n) and e, c, s, se_e (per thought 1..n) from rollout counts and thought lengths."""
    if len(right) != len(total) or len(total) != len(lengths) + 1:
        raise ValueError("need n + 1 prefix counts for n thought lengths")
    acc = [r / t for r, t in zip(right, total)]
    se = [accuracy_se(r, t) for r, t in zip(right, total)]
    whole = sum(lengths)
    e = [acc[i] - acc[i - 1] for i in range(1, len(acc))]
    c = [delta * k / whole if whole else 0.0 for k in lengths]
    return {"acc": acc, "se": se, "e": e, "c": c, "s": [a - b for a, b in zip(e, c)],
            "se_e": [math.sqrt(se[i] ** 2 + se[i - 1] ** 2) for i in range(1, len(se))]}


@dataclass
class _Cot:
    rec: dict
    thoughts: list[str]
    lengths: list[int]
    prompts: list[tuple[Prompt, str]]
    prompt_len: list[int]
    right: list[int]
    total: list[int]
    cost: dict

    def se(self, i: int) -> float:
        return accuracy_se(self.right[i], self.total[i])


def _open(rec: dict, gen: Generator, style: str) -> _Cot:
    pid = rec.get("id")
    thoughts = rec.get("thoughts")
    if pid is None or not rec.get("problem") or "answer" not in rec or not isinstance(thoughts, list) \
            or not thoughts or not all(isinstance(t, dict) and isinstance(t.get("text"), str) for t in thoughts):
        raise HybridcotError(f"chunks record {pid!r}: needs id, problem, answer and a non-empty list of "
                             "thoughts with text")
    texts = [t["text"] for t in thoughts]
    prompts = prefix_prompts(gen, str(rec["problem"]), texts, style)
    k = len(prompts)
    return _Cot(rec, texts, [len(gen.encode(t)) for t in texts], prompts, [len(gen.encode(p)) for p, _ in prompts],
                [0] * k, [0] * k, {"rollouts": 0, "generated_tokens": 0, "prefill_tokens": 0,
                                   "naive_prefill_tokens": 0})


def score_cots(records: list[dict], gen: Generator, cfg: ImportanceConfig) -> list[dict]:
    """Roll out every prefix of every CoT in `records` with `gen` (adaptively if configured); one output
    record per CoT, in order. The rollouts of all CoTs of a round go into one generate call."""
    from hybridcot.grading import grade_many

    cots = [_open(r, gen, cfg.prompt_style) for r in records]
    todo = [(k, i) for k, cot in enumerate(cots) for i in range(len(cot.prompts))]
    round_ = 0
    while todo:
        samples = gen.generate([cots[k].prompts[i][0] for k, i in todo], cfg.sampling(round_))
        texts = [cots[k].prompts[i][1] + s.text for (k, i), ss in zip(todo, samples) for s in ss]
        golds = [str(cots[k].rec["answer"]) for k, _ in todo for _ in range(cfg.n)]
        results = iter(grade_many(texts, golds, timeout=cfg.grade_timeout,
                                  fallback_last_number=cfg.fallback_last_number))
        for (k, i), ss in zip(todo, samples):
            cot = cots[k]
            cot.right[i] += sum(bool(next(results).correct) for _ in ss)
            cot.total[i] += len(ss)
            cost = cot.cost
            cost["rollouts"] += len(ss)
            cost["generated_tokens"] += sum(s.n_tokens for s in ss)
            cost["naive_prefill_tokens"] += cot.prompt_len[i] * len(ss)
            cost["prefill_tokens"] += sum(cot.prompt_len[i] if s.prefill_tokens is None else s.prefill_tokens
                                          for s in ss)
        round_ += 1
        todo = [] if not cfg.adaptive else [ki for k, cot in enumerate(cots) for ki in _more(k, cot, cfg)]
    return [_record(cot, cfg) for cot in cots]


def _more(k: int, cot: _Cot, cfg: ImportanceConfig) -> list[tuple[int, int]]:
    """The prefixes of one CoT that get n more rollouts: se above target, largest first, within budget."""
    want = sorted((i for i in range(len(cot.prompts)) if cot.se(i) > cfg.target_se), key=lambda i: -cot.se(i))
    spent, out = cot.cost["rollouts"], []
    for i in want:
        if spent + cfg.n > cfg.max_rollouts:
            break
        spent += cfg.n
        out.append((k, i))
    return sorted(out)


def _record(cot: _Cot, cfg: ImportanceConfig) -> dict:
    rec = cot.rec
    sc = importance_scores(cot.right, cot.total, cot.lengths, cfg.delta)
    out = {"id": str(rec["id"]), **({"sample": rec["sample"]} if "sample" in rec else {}), "problem": rec["problem"], "answer": rec["answer"], "level": rec.get("level"),
           "thoughts": [{"text": t, "n_tokens": k} for t, k in zip(cot.thoughts, cot.lengths)],
           **{key: [round(x, 6) for x in v] for key, v in sc.items()}, "n_rollouts": list(cot.total)}
    if rec.get("gold") is not None:
        out["gold"] = rec["gold"]
    out["cost"] = dict(cot.cost)
    return out


def auroc(pos: list[float], neg: list[float]) -> float | None:
    """P(a random `pos` score > a random `neg` score), ties counting half; None if a side is empty."""
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def importance_stats(records: list[dict], tau: float = 0.0) -> dict:
    """Summary over output records: accuracy curves, share of s > 0, s against gold marks (with the
    precision and recall of "s <= tau" as a detector of the redundant ones), costs."""
    s_all = [x for r in records for x in r["s"]]
    longest = max((len(r["acc"]) for r in records), default=0)
    by_prefix = [[r["acc"][i] for r in records if len(r["acc"]) > i] for i in range(longest)]
    rel = [sum(r["acc"][round(f / 10 * (len(r["acc"]) - 1))] for r in records) / len(records)
           for f in range(11)] if records else []
    red, keep, kinds = [], [], {}
    for r in records:
        gold = r.get("gold")
        if not isinstance(gold, list) or len(gold) != len(r["s"]):
            continue  # no gold marks, or the chunker's thoughts are not the writer's
        for g, s in zip(gold, r["s"]):
            (red if g.get("redundant") else keep).append(s)
            kinds.setdefault(str(g.get("kind")), []).append(s)
    cost = {k: sum(r["cost"][k] for r in records) for k in
            ("rollouts", "generated_tokens", "prefill_tokens", "naive_prefill_tokens")}
    naive = cost["naive_prefill_tokens"]
    cost["prefill_saved"] = 1 - cost["prefill_tokens"] / naive if naive else 0.0
    mean = (lambda xs: sum(xs) / len(xs) if xs else None)  # noqa: E731
    return {
        "n_cots": len(records), "n_thoughts": len(s_all),
        "mean_acc_by_prefix": [mean(v) for v in by_prefix], "cots_by_prefix": [len(v) for v in by_prefix],
        "mean_acc_by_position": rel,  # acc at prefix round(f·n), f = 0, 0.1, ..., 1
        "frac_s_positive": mean([float(x > 0) for x in s_all]), "mean_s": mean(s_all),
        "mean_se": mean([x for r in records for x in r["se"]]),
        "gold": None if not red + keep else {
            "n_redundant": len(red), "n_other": len(keep), "mean_s_redundant": mean(red), "mean_s_other": mean(keep),
            "auroc_other_vs_redundant": auroc(keep, red),  # 1 = s ranks every redundant thought lowest
            "tau": tau, **_detector(red, keep, tau),
            "mean_s_by_kind": {k: mean(v) for k, v in sorted(kinds.items())}},
        "cost": cost,
    }


def _detector(red: list[float], keep: list[float], tau: float) -> dict:
    """"s <= tau" as a detector of redundant thoughts: precision (redundant among those flagged) and
    recall (flagged among the redundant); None where undefined."""
    flagged_red = sum(x <= tau for x in red)
    flagged = flagged_red + sum(x <= tau for x in keep)
    return {"flagged_s_le_tau": flagged, "precision_s_le_tau": flagged_red / flagged if flagged else None,
            "recall_s_le_tau": flagged_red / len(red) if red else None}


def _key(r: dict) -> tuple[str, Any]:
    """A CoT's identity: problem id and sample index (chunks of sampled CoTs share the problem id)."""
    return str(r.get("id")), r.get("sample")


def _check_resume(cfg: ImportanceConfig, out: Path) -> None:
    prev = out / "config.yaml"
    if not prev.exists() or not (out / "importance.jsonl").exists():
        return
    try:
        old = yaml.safe_load(prev.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise HybridcotError(f"{prev}: invalid YAML; delete it to resume") from None
    new = dataclasses.asdict(cfg)
    for k in RUN_KEYS:
        if k in old and not same_setting(old[k], new[k]):
            raise HybridcotError(f"{out}: holds a run with {k}={old[k]!r} (now {new[k]!r}); "
                                 "use a new output folder or delete importance.jsonl")


def sharing_kwargs(cfg: ImportanceConfig) -> dict:
    """The backend keyword that turns prefix sharing off when `cfg.share_prefix` is false (backends share by
    default): hf `share_prefix`, vllm `enable_prefix_caching`; none for http (the server decides)."""
    if cfg.share_prefix:
        return {}
    return {"hf": {"share_prefix": False}, "vllm": {"enable_prefix_caching": False}}.get(resolve_backend(cfg.backend), {})


def run_importance(cfg: ImportanceConfig, generator: Generator | None = None) -> dict:
    """Score (or resume) every CoT of `cfg.chunks`; returns the stats also written to stats.json.

    `generator` replaces loading `cfg.model` (any `Generator`, e.g. a `CallableGenerator`); it is not
    closed here.
    """
    out = shard_folder(cfg.output, cfg.shard)  # a shard writes to <output>/shard-i-of-n/
    records = read_jsonl(cfg.chunks)[:cfg.limit]
    if not records:
        raise HybridcotError(f"{cfg.chunks}: no CoTs to score")
    ids = [_key(r) for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise HybridcotError(f"{cfg.chunks}: duplicate CoT id {dup[0]!r} sample {dup[1]!r}")
    shard = parse_shard(cfg.shard)
    if shard is not None:  # by problem id: all CoTs of a problem in one shard
        keep = [in_shard(i[0], shard) for i in ids]
        records = [r for r, k in zip(records, keep) if k]
        ids = [i for i, k in zip(ids, keep) if k]
    _check_resume(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    path = out / "importance.jsonl"
    if not records:  # an empty shard (few CoTs split many ways)
        path.touch()
        write_json(out / "stats.json", {"n_cots": 0, "shard": cfg.shard})
        print(f"importance: shard {cfg.shard} holds no CoTs -> {out / 'stats.json'}")
        return {"n_cots": 0, "shard": cfg.shard}
    done = {_key(r) for _, r in iter_jsonl(path, allow_torn_tail=True)} if path.exists() else set()
    todo = [r for r, i in zip(records, ids) if i not in done]
    if todo:
        gen = generator
        if gen is None:
            from hybridcot.generation import load_generator

            gen = load_generator(cfg.model, backend=cfg.backend, dtype=cfg.dtype, batch_size=cfg.batch_size,
                                 threads=cfg.threads or None, urls=cfg.urls or None, progress=False,
                                 **sharing_kwargs(cfg))
        try:  # one bar per CoT (resumed ones shown as done), none per generate call
            with JsonlAppender(path) as app, progress(total=len(records), initial=len(records) - len(todo),
                                                      desc="importance", unit="cot") as bar:
                rollouts = 0
                for k in range(0, len(todo), cfg.chunk):
                    part = todo[k:k + cfg.chunk]
                    for rec in score_cots(part, gen, cfg):
                        app.write(rec)
                        rollouts += rec["cost"]["rollouts"]
                    bar.set_postfix(rollouts=rollouts, refresh=False)
                    bar.update(len(part))
        finally:
            if generator is None:
                gen.close()
    by_id = {_key(r): r for _, r in iter_jsonl(path, allow_torn_tail=True)}
    stats = importance_stats([by_id[i] for i in ids if i in by_id], cfg.tau)
    write_json(out / "stats.json", stats)
    c = stats["cost"]
    print(f"importance: {stats['n_cots']} CoTs ({len(todo)} new), {stats['n_thoughts']} thoughts, "
          f"s > 0 for {stats['frac_s_positive']:.0%}, {c['rollouts']} rollouts, {c['generated_tokens']} generated "
          f"tokens, prefill {c['prefill_tokens']} of {c['naive_prefill_tokens']} ({c['prefill_saved']:.0%} saved) "
          f"-> {out / 'stats.json'}")
    return stats
