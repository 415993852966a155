"""Long⊗Short collaborative inference: the long and the short thinker take turns on each problem.

    hybridcot collaborate long_model=runs/ls/long short_model=runs/ls/short problems=world:test:200 \
        output=runs/ls/eval/sft max_turns=8

The engine (METHODS.md, Long⊗Short step 5): every dialogue opens with a Long turn; turns alternate
until a Short turn is final (`</answer>`, or a boxed answer in broken tags) or `max_turns` turns
(both thinkers together) have been spoken. Dialogues advance together, one turn at a time: the long
thinker writes the turn of every dialogue waiting on it in one `generate` call, then the short
thinker, and so on, so the backends batch. A turn's prompt is `protocol.messages_for` (chat
messages; each thinker sees its own turns as assistant messages), its output goes through
`protocol.parse`, and its tokens (counted by the model that wrote them, with its own tokenizer) are
credited to that thinker. The whole dialogue (`protocol.dialogue_text`) is graded by the project's
grader: the last `\\boxed{}` wins.

The two models may be the same checkpoint (one generator then serves both roles) and may have
different tokenizers: each one only ever tokenizes its own prompts and turns, so nothing is refused
beyond both loading.

For the RL stage: `new_states`, `step_dialogues` (one thinker's turn for every dialogue waiting on
it), `DialogueState.add` (a turn the trainer generated itself) and `dialogue_records` (grading) are
the pieces; `collaborate` chains them.

Outputs in `output/`: `dialogues.jsonl` (one dialogue a line, appended a chunk of problems at a
time; a rerun skips problems already there and refuses a changed config), `metrics.json`
(`evaluation.metrics.summarize` plus the Long⊗Short fields, overall and per level) and `config.yaml`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridcot.config import config_dict, field, same_setting, save_config
from hybridcot.generation import Generator, SamplingConfig, load_generator, resolve_backend
from hybridcot.io import HybridcotError, JsonlAppender, write_json
from hybridcot.longshort.protocol import LONG, SHORT, Turn, check_dialogue, dialogue_text, messages_for, parse
from hybridcot.shards import SHARD_HELP, parse_shard, shard_folder

BACKENDS = ("auto", "hf", "vllm", "http")
# Settings that change what dialogues.jsonl holds: a resumed run must match them.
RUN_KEYS = ("long_model", "short_model", "problems", "n", "temperature", "top_p", "max_turns", "long_max_tokens",
            "short_max_tokens", "seed", "dtype", "fallback_last_number")


# ---------------------------------------------------------------- the engine

@dataclass
class DialogueState:
    """One dialogue in progress: the problem, the turns so far and what each turn cost."""

    id: str
    problem: str
    gold: str
    level: int | None = None
    sample: int = 0
    max_turns: int = 8
    turns: list[Turn] = field([], help="turns so far, long first")
    n_tokens: list[int] = field([], help="generated tokens of each turn (by the model that wrote it)")
    finish_reasons: list[str] = field([], help="each turn's finish reason: stop | length (hit its cap)")

    @property
    def next_role(self) -> str:
        return LONG if len(self.turns) % 2 == 0 else SHORT

    @property
    def done(self) -> bool:
        return len(self.turns) >= self.max_turns or bool(self.turns and self.turns[-1].final)

    def messages(self) -> list[dict]:
        """The chat the next speaker sees before its turn."""
        return messages_for(self.next_role, self.problem, self.turns)

    def add(self, text: str, n_tokens: int = 0, finish_reason: str = "stop") -> Turn:
        """Parse a generated turn of the next speaker and append it (how a trainer adds its own turns)."""
        if self.done:
            raise HybridcotError(f"dialogue {self.id!r} (sample {self.sample}) is over; no turn can be added")
        turn = parse(self.next_role, text)
        self.turns.append(turn)
        self.n_tokens.append(int(n_tokens))
        self.finish_reasons.append(finish_reason)
        return turn


def _get(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def new_states(problems: Sequence[Any], n: int = 1, max_turns: int = 8) -> list[DialogueState]:
    """`n` empty dialogues per problem (Problem objects or dicts with id/problem/answer/level), problem-major."""
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    return [DialogueState(str(_get(p, "id")), str(_get(p, "problem")), str(_get(p, "answer", "")),
                          _get(p, "level"), j, max_turns) for p in problems for j in range(n)]


def step_dialogues(states: Sequence[DialogueState], role: str, generator: Any,
                   sampling: SamplingConfig) -> list[DialogueState]:
    """Generate `role`'s next turn for every unfinished dialogue waiting on it, in one `generate` call.

    `sampling.n` must be 1 (a dialogue is one sample; draw several by passing several states).
    Returns the dialogues that got a turn (none: no call is made).
    """
    if sampling.n != 1:
        raise ValueError(f"step_dialogues: sampling.n must be 1, got {sampling.n}")
    todo = [s for s in states if not s.done and s.next_role == role]
    if not todo:
        return []
    outputs = generator.generate([s.messages() for s in todo], sampling)
    if len(outputs) != len(todo):
        raise HybridcotError(f"generator returned {len(outputs)} sample lists for {len(todo)} prompts")
    for s, out in zip(todo, outputs):
        s.add(out[0].text, out[0].n_tokens, out[0].finish_reason)
    return todo


def run_dialogues(states: Sequence[DialogueState], long_gen: Any, short_gen: Any, long_sampling: SamplingConfig,
                  short_sampling: SamplingConfig) -> list[DialogueState]:
    """Advance `states` until every one is done: long turns for all that wait on the long thinker, then
    short turns, and again. From fresh states that is one `generate` call per turn of the longest."""
    while any(not s.done for s in states):
        step_dialogues(states, LONG, long_gen, long_sampling)
        step_dialogues(states, SHORT, short_gen, short_sampling)
    return list(states)


def dialogue_records(states: Sequence[DialogueState], *, timeout: float = 5.0,
                     fallback_last_number: bool = False) -> list[dict]:
    """Grade finished (or abandoned) dialogues: one record each, in order (see `collaborate`)."""
    from hybridcot.grading import grade_many, shows_thinking

    texts = [dialogue_text(s.turns) for s in states]
    results = grade_many(texts, [s.gold for s in states], timeout=timeout, fallback_last_number=fallback_last_number)
    records = []
    for s, text, res in zip(states, texts, results):
        long_tokens = sum(k for t, k in zip(s.turns, s.n_tokens) if t.role == LONG)
        short_tokens = sum(k for t, k in zip(s.turns, s.n_tokens) if t.role == SHORT)
        finished = bool(s.turns and s.turns[-1].final)
        records.append({
            "id": s.id, "level": s.level, "sample": s.sample, "problem": s.problem,
            "turns": [{**t.to_record(), "n_tokens": k, "finish_reason": fr}
                      for t, k, fr in zip(s.turns, s.n_tokens, s.finish_reasons)],
            "n_turns": len(s.turns), "long_tokens": long_tokens, "short_tokens": short_tokens,
            "n_tokens": long_tokens + short_tokens, "n_chars": len(text),
            "finished": finished, "well_formed": check_dialogue(s.turns) is None,
            # "length" = the dialogue ran out of turns, as a single response runs out of tokens
            # (so summarize's `truncated` is the share of dialogues that never gave a final answer)
            "finish_reason": "stop" if finished else "length",
            "extracted": res.extracted, "gold": s.gold, "correct": bool(res.correct), "reason": res.reason,
            "thinking": bool(shows_thinking(text)), "text": text,
        })
    return records


def collaborate(long_gen: Any, short_gen: Any, problems: Sequence[Any], *, max_turns: int = 8,
                long_max_tokens: int = 2048, short_max_tokens: int = 2048, temperature: float = 0.0,
                top_p: float = 1.0, seed: int = 0, n: int = 1, grade_timeout: float = 5.0,
                fallback_last_number: bool = False) -> list[dict]:
    """Run `n` dialogues per problem between two generators (may be one object) and grade them.

    One record per dialogue, problem by problem: {id, level, sample, problem, turns: [{role, text,
    final, well_formed, n_tokens, finish_reason}], n_turns, long_tokens, short_tokens, n_tokens,
    n_chars, finished, well_formed, finish_reason, extracted, gold, correct, reason, thinking, text}.
    Greedy (temperature 0) with n > 1 runs each problem once and repeats the record.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    runs = 1 if temperature == 0 else n
    states = new_states(problems, runs, max_turns)
    long_sampling, short_sampling = (SamplingConfig(n=1, temperature=temperature, top_p=top_p, max_tokens=cap,
                                                    seed=seed) for cap in (long_max_tokens, short_max_tokens))
    run_dialogues(states, long_gen, short_gen, long_sampling, short_sampling)
    records = dialogue_records(states, timeout=grade_timeout, fallback_last_number=fallback_last_number)
    if runs == n:
        return records
    return [{**r, "sample": j, "turns": [dict(t) for t in r["turns"]]} for r in records for j in range(n)]


# ---------------------------------------------------------------- metrics and transcripts

def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


def longshort_block(records: Sequence[dict]) -> dict:
    """The Long⊗Short numbers of a set of dialogue records (added to each `summarize` block)."""
    total = sum(int(r["n_tokens"]) for r in records)
    short = sum(int(r["short_tokens"]) for r in records)
    turns = [t for r in records for t in r["turns"]]
    return {
        "mean_long_tokens": _mean([float(r["long_tokens"]) for r in records]),
        "mean_short_tokens": _mean([float(r["short_tokens"]) for r in records]),
        "short_thinker_token_share": short / total if total else 0.0,
        "mean_turns": _mean([float(r["n_turns"]) for r in records]),
        "finished_share": _mean([float(bool(r["finished"])) for r in records]),
        "well_formed_share": _mean([float(bool(r["well_formed"])) for r in records]),
        "truncated_turns": _mean([float(t.get("finish_reason") == "length") for t in turns]),
    }


def summarize_dialogues(records: Sequence[dict], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """`evaluation.metrics.summarize` (accuracy + CI over problems, mean total tokens, per level) plus
    `longshort_block` overall and in every per-level block."""
    from hybridcot.evaluation.metrics import summarize

    out = summarize(records, n_boot=n_boot, seed=seed)
    out.update(longshort_block(records))
    for level, block in out["per_level"].items():
        block.update(longshort_block([r for r in records if r.get("level") is not None
                                      and str(int(r["level"])) == level]))
    return out


def transcript(record: dict, markdown: bool = False) -> str:
    """A dialogue record as text: one "[long] …" / "[short] …" paragraph per turn, or markdown with each
    turn in a fenced block under a "**Long thinker**" / "**Short thinker**" line."""
    verdict = "correct" if record.get("correct") else "wrong"
    head = (f"problem {record.get('id')} (level {record.get('level')}, sample {record.get('sample', 0)}): "
            f"{verdict}, answer {record.get('extracted')!r}, gold {record.get('gold')!r}, "
            f"{record.get('n_turns')} turns, {record.get('n_tokens')} tokens "
            f"(long {record.get('long_tokens')}, short {record.get('short_tokens')})")
    parts = [f"### {head}" if markdown else head]
    if record.get("problem"):
        parts.append(f"**Problem.** {record['problem']}" if markdown else f"Problem: {record['problem']}")
    for t in record.get("turns", []):
        notes = [f"{t.get('n_tokens', 0)} tokens"] + ["final"] * bool(t.get("final")) \
            + ["malformed"] * (not t.get("well_formed", True)) + ["hit the cap"] * (t.get("finish_reason") == "length")
        if markdown:
            fence = "```"
            while fence in t["text"]:
                fence += "`"
            parts.append(f"**{t['role'].capitalize()} thinker** ({', '.join(notes)})\n\n{fence}\n{t['text']}\n{fence}")
        else:
            tag = t["role"] + "".join(f", {x}" for x in notes[1:])
            parts.append(f"[{tag}] {t['text']}")
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- the stage

@dataclass
class CollaborateConfig:
    """Collaborative inference of a long and a short thinker on one problem set."""

    long_model: str = field("", help="the long thinker's checkpoint folder (speaks first)")
    short_model: str = field("", help="the short thinker's checkpoint folder (may equal long_model; the two "
                                      "tokenizers may differ: each model counts its own tokens)")
    problems: str = field("", help="problem set spec for load_problems: a JSONL/JSON/Parquet path or "
                                   "'world:<split>:<count>[:seed=S]'")
    output: str = field("", help="output folder for dialogues.jsonl, metrics.json and config.yaml")
    name: str = field("", help="system name in reports (default: '<long folder>+<short folder>')")
    backend: str = field("auto", help="generation backend: auto (vLLM where installed) | hf | vllm | http")
    urls: str = field("", help="backend=http: the long thinker's server base URLs, comma-separated "
                               "(default $HYBRIDCOT_HTTP_URLS)")
    short_urls: str = field("", help="backend=http: the short thinker's server URLs (needed when the two "
                                     "models differ; one model is served by `urls`)")
    dtype: str = field("float32", help="model dtype for generation (float32 | bfloat16 | float16 | auto)")
    threads: int = field(0, help="CPU threads for torch (0 = leave as is; 1 is fastest on a busy small machine)")
    gpu_memory_utilization: float = field(0.85, help="vLLM on a GPU: share of GPU memory for both models "
                                                     "together (split evenly when they are two)")
    max_turns: int = field(8, help="most turns per dialogue, both thinkers together (paper: 8)")
    long_max_tokens: int = field(2048, help="most tokens per long turn (paper code: 2048 a turn)")
    short_max_tokens: int = field(2048, help="most tokens per short turn (paper code: 2048 a turn)")
    n: int = field(1, help="dialogues per problem; accuracy is pass@1 averaged over them")
    temperature: float = field(0.0, help="sampling temperature for both thinkers (0 = greedy)")
    top_p: float = field(1.0, help="nucleus sampling top-p")
    seed: int = field(0, help="sampling seed (also seeds the accuracy bootstrap)")
    limit: int | None = field(None, help="only the first `limit` problems")
    shard: str | None = field(None, help=SHARD_HELP)
    batch_size: int = field(64, help="problems whose dialogues advance together (each brings n dialogues); "
                                     "results are appended after each such chunk")
    grade_timeout: float = field(5.0, help="seconds per grader call; a timeout counts as wrong")
    fallback_last_number: bool = field(False, help="grade the last number when a dialogue has no \\boxed{}")
    n_boot: int = field(1000, help="bootstrap resamples for the accuracy CI (0 = no interval)")

    def __post_init__(self) -> None:
        for key in ("long_model", "short_model", "problems", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if not self.name:
            self.name = f"{Path(self.long_model).name}+{Path(self.short_model).name}"
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        for key in ("max_turns", "long_max_tokens", "short_max_tokens", "n", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.threads < 0 or self.n_boot < 0:
            raise ValueError("threads and n_boot must be >= 0")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null, got {self.limit}")
        if self.grade_timeout <= 0 or not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("grade_timeout must be > 0 and gpu_memory_utilization in (0, 1]")
        SamplingConfig(temperature=self.temperature, top_p=self.top_p, seed=self.seed)  # validates them
        parse_shard(self.shard)


def _check_resume(cfg: CollaborateConfig, out: Path) -> None:
    prev = out / "config.yaml"
    if not prev.exists() or not (out / "dialogues.jsonl").exists():
        return
    try:
        old = yaml.safe_load(prev.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise HybridcotError(f"{prev}: invalid YAML; delete it (or dialogues.jsonl) to resume") from None
    new = config_dict(cfg)
    for k in RUN_KEYS:
        if k in old and not same_setting(old[k], new[k]):
            raise HybridcotError(f"{out}: holds dialogues made with {k}={old[k]!r} (now {new[k]!r}); "
                                 "use a new output folder or delete dialogues.jsonl")


def _open_generators(cfg: CollaborateConfig) -> tuple[Generator, Generator]:
    """Load both thinkers; one generator serves both roles when they are the same folder."""
    same = Path(cfg.long_model).resolve() == Path(cfg.short_model).resolve()
    # progress=False: the stage's per-problem bar, not one per turn's generate call
    kw: dict[str, Any] = {"threads": cfg.threads or None, "progress": False}
    if resolve_backend(cfg.backend) == "vllm":
        kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization / (1 if same else 2)
    http = resolve_backend(cfg.backend) == "http"
    if http and not same and not cfg.short_urls:
        raise HybridcotError("backend=http with two models: give the short thinker's servers as short_urls=...")
    long_gen = load_generator(cfg.long_model, backend=cfg.backend, dtype=cfg.dtype, urls=cfg.urls or None, **kw)
    if same:
        return long_gen, long_gen
    try:
        return long_gen, load_generator(cfg.short_model, backend=cfg.backend, dtype=cfg.dtype,
                                        urls=cfg.short_urls or None, **kw)
    except BaseException:
        long_gen.close()
        raise


def run_collaborate(cfg: CollaborateConfig) -> dict:
    """Run (or resume) collaborative inference; returns the metrics dict also written to metrics.json."""
    from hybridcot.evaluation.stage import load_done, load_run_problems, progress

    t0 = time.time()
    out = shard_folder(cfg.output, cfg.shard)  # a shard writes to <output>/shard-i-of-n/
    out.mkdir(parents=True, exist_ok=True)
    problems, ids = load_run_problems(cfg.problems, cfg.limit, cfg.shard)
    _check_resume(cfg, out)
    save_config(cfg, out)
    path = out / "dialogues.jsonl"
    if not problems:  # an empty shard (a small set split many ways)
        path.touch()
        metrics = {"name": cfg.name, "problems": cfg.problems, "shard": cfg.shard, "n_problems": 0}
        write_json(out / "metrics.json", metrics)
        print(f"collaborate {cfg.name}: shard {cfg.shard} holds no problems -> {out / 'metrics.json'}")
        return metrics
    done = load_done(path, cfg.n)  # complete problems; a problem cut short by a kill is dropped and redone
    todo = [p for p in problems if p.id not in done]
    new: list[dict] = []
    gen_s = 0.0
    if todo:
        long_gen, short_gen = _open_generators(cfg)
        t1 = time.time()
        try:
            with JsonlAppender(path) as app, progress(len(problems), len(problems) - len(todo),
                                                      f"collaborate {cfg.name}") as bar:
                for k in range(0, len(todo), cfg.batch_size):
                    chunk = todo[k:k + cfg.batch_size]
                    recs = collaborate(long_gen, short_gen, chunk, max_turns=cfg.max_turns,
                                       long_max_tokens=cfg.long_max_tokens, short_max_tokens=cfg.short_max_tokens,
                                       temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, n=cfg.n,
                                       grade_timeout=cfg.grade_timeout,
                                       fallback_last_number=cfg.fallback_last_number)
                    for r in recs:
                        app.write(r)
                    new.extend(recs)
                    bar.update(len(chunk))
        finally:
            long_gen.close()
            if short_gen is not long_gen:
                short_gen.close()
        gen_s = time.time() - t1

    by_id: dict[str, list[dict]] = {}
    for r in new:
        by_id.setdefault(r["id"], []).append(r)
    records = [r for pid in ids for r in (done.get(pid) or by_id.get(pid, []))]
    new_tokens = sum(int(r["n_tokens"]) for r in new)
    metrics = {
        "name": cfg.name, "long_model": cfg.long_model, "short_model": cfg.short_model, "problems": cfg.problems,
        "sampling": {"n": cfg.n, "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
                     "max_turns": cfg.max_turns, "long_max_tokens": cfg.long_max_tokens,
                     "short_max_tokens": cfg.short_max_tokens},
        **summarize_dialogues(records, n_boot=cfg.n_boot, seed=cfg.seed),
        "timing": {"wall_s": time.time() - t0, "generate_s": gen_s, "generated_tokens": new_tokens,
                   "tokens_per_s": new_tokens / gen_s if gen_s > 0 else None,
                   "problems_generated": len(todo), "problems_resumed": len(problems) - len(todo)},
    }
    write_json(out / "metrics.json", metrics)
    print(summary_line(metrics) + f" -> {out / 'metrics.json'}")
    return metrics


def summary_line(m: dict) -> str:
    """One line for the terminal: accuracy with CI, tokens by thinker, turns, format."""
    ci = m.get("accuracy_ci")
    ci_s = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return (f"collaborate {m.get('name', '?')}: accuracy {m['accuracy']:.3f}{ci_s} | mean tokens "
            f"{m['mean_tokens']:.1f} (long {m['mean_long_tokens']:.1f}, short {m['mean_short_tokens']:.1f}) | "
            f"turns {m['mean_turns']:.2f} | finished {m['finished_share']:.0%} | "
            f"well formed {m['well_formed_share']:.0%} | {m['n_problems']} problems x {m['samples_per_problem']}")
