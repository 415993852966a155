"""`hybridcot chunk`: Long⊗Short step 1, split long CoTs into steps and group the steps into thoughts.

    hybridcot chunk input=runs/demo/sample/long/samples.jsonl problems=world:train:2000:seed=1 \\
        output=runs/demo/longshort/chunks
    hybridcot chunk input=~/.cache/hybridcot/world/<build> output=runs/demo/longshort/chunks  # writer's CoTs

**Steps** are the text between blank lines (`split_steps`; a `<think>`/`</think>` wrapper is removed,
the text after `</think>` is kept as further steps). **Thoughts** (method "rules", the default,
deterministic): a thought starts at a step that opens with a discourse marker (`DEFAULT_MARKERS`,
case-insensitive, whole words, after any leading markdown `*_#>-`); a step without one joins the
current thought. A thought with fewer than `min_thought_tokens` tokens (the tokenizer's where one is
given, else whitespace words) then joins the previous thought; a short *first* thought joins the
next one. Thoughts tile the steps exactly once, in order: each records `steps: [start, end)`.

Method "llm" (*paper code*): a model groups the numbered steps into typed blocks, answering JSON
`[{"start": 1, "end": 3, "type": "compute"}, ...]` (1-based, inclusive). `validate_blocks` requires
the blocks to tile every step exactly once, in order; an invalid answer is retried `llm_retries`
times (the retry prompt says what was wrong), then the rules are used (`method: "llm-fallback"` and
the `reason`). The LLM mode appends to chunks.jsonl and resumes by (id, sample); the rules rewrite it.

Input: JSONL of long CoTs with `id`, `text`, `problem`, `answer` (or `gold`), optional `level`,
`sample` and `correct` (only correct ones are kept while `only_correct`), e.g. `hybridcot
sample`/`eval`'s samples.jsonl (which lacks the problem text: give `problems=`); or a world build
folder (`world_long_cots`: data/train.jsonl + data/train_long_thoughts.jsonl, the writer's CoTs and
their gold marks). Outputs in `output/`: `chunks.jsonl` (id, sample, problem, answer, level, steps,
thoughts [{text, steps, type}], method, n_thoughts, reason, gold, and the world's operands/ops/source
where given), `stats.json` and `config.yaml`. `gold` is one {kind, redundant} per thought when the
thoughts are exactly the writer's, else null.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridcot.config import field, save_config
from hybridcot.io import HybridcotError, JsonlAppender, iter_jsonl, read_jsonl, write_json, write_jsonl
from hybridcot.ui import progress

# Openers of a new thought in R1-style CoTs: reflection ("Wait", "Hmm", "But", "Actually"), checks,
# alternatives, sequencing ("First", "Next", "Then", "Finally") and conclusions. Plain "So"/"Now" are
# left out on purpose: they open most paragraphs of real CoTs and would make every step a thought.
DEFAULT_MARKERS = (
    "Wait", "Hmm", "But", "However", "Actually", "Alternatively", "Another way", "Another approach",
    "On second thought", "Let me check", "Let me double-check", "Let me verify", "Let me recheck",
    "Let me re-check", "Let me re-examine", "Let me think again", "Double-check", "To verify",
    "First", "Next", "Then", "Finally", "Therefore", "Thus", "So the answer", "So the final answer",
)
METHODS = ("rules", "llm")
TokenCounter = Callable[[str], int]
Complete = Callable[[list[str]], list[str]]  # prompts -> replies, one each
_BLANK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def word_count(text: str) -> int:
    return len(text.split())


def token_counter(tokenizer: str) -> TokenCounter:
    """Count tokens with a checkpoint's (or tokenizer folder's) tokenizer, no special tokens."""
    from hybridcot.models import load_tokenizer

    tok = load_tokenizer(tokenizer)  # one line on failure; no remote code unless asked
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def split_steps(text: str) -> list[str]:
    """The CoT's steps: split at blank lines, stripped, empty ones dropped; think tags removed."""
    text = text.replace("\r\n", "\n")
    s = text.strip()
    if s.startswith("<think>"):
        s = s[len("<think>"):]
    s = s.replace("</think>", "\n\n")
    return [p.strip() for p in _BLANK.split(s) if p.strip()]


def _marker_re(markers: Sequence[str]) -> re.Pattern:
    alts = "|".join(re.escape(m.strip()) for m in sorted(markers, key=len, reverse=True) if m.strip())
    return re.compile(rf"^[\s*_#>\-]*({alts})(?![A-Za-z0-9])", re.IGNORECASE) if alts else re.compile(r"(?!)")


def opening_marker(step: str, markers: Sequence[str] = DEFAULT_MARKERS) -> str | None:
    """The marker the step opens with (as listed in `markers`), or None."""
    m = _marker_re(markers).match(step)
    if not m:
        return None
    return next((k for k in markers if k.strip().lower() == m.group(1).lower()), m.group(1))


def _thought(steps: Sequence[str], start: int, end: int, type_: str | None) -> dict:
    return {"text": "\n\n".join(steps[start:end]), "steps": [start, end], "type": type_}


def chunk_rules(steps: Sequence[str], *, markers: Sequence[str] = DEFAULT_MARKERS, min_thought_tokens: int = 3,
                count: TokenCounter = word_count) -> list[dict]:
    """Group steps into thoughts by discourse markers (see the module docstring)."""
    pat = _marker_re(markers)
    spans: list[list[Any]] = []  # [start, end, type]
    for i, step in enumerate(steps):
        m = pat.match(step)
        if not spans or m:
            spans.append([i, i + 1, m.group(1).lower() if m else None])
        else:
            spans[-1][1] = i + 1
    merged: list[list[Any]] = []
    for span in spans:
        if merged and count("\n\n".join(steps[span[0]:span[1]])) < min_thought_tokens:
            merged[-1][1] = span[1]
        else:
            merged.append(span)
    if len(merged) > 1 and count("\n\n".join(steps[merged[0][0]:merged[0][1]])) < min_thought_tokens:
        merged[1][0] = merged[0][0]
        merged[1][2] = merged[0][2]
        merged.pop(0)
    return [_thought(steps, a, b, t) for a, b, t in merged]


# ---------------------------------------------------------------- LLM grouping

LLM_PROMPT = """Below are the numbered steps of a solution. Group consecutive steps into thoughts: a thought is a \
run of steps that pursue one idea (a computation, a check, an alternative approach, a conclusion).

Answer with only a JSON list, one object per thought, in order, like [{{"start": 1, "end": 3, "type": "compute"}}]. \
"start" and "end" are step numbers (inclusive). The thoughts must cover every step from 1 to {n} exactly once, \
in order, with no gaps or overlaps. "type" is one short word such as compute, check, alternative or conclude.

Problem: {problem}

Steps:
{steps}"""


def llm_prompt(steps: Sequence[str], problem: str = "", reason: str | None = None) -> str:
    """The grouping prompt; on a retry it says what was wrong with the last answer."""
    numbered = "\n\n".join(f"[{i}] {s}" for i, s in enumerate(steps, start=1))
    text = LLM_PROMPT.format(n=len(steps), problem=problem.strip() or "(not given)", steps=numbered)
    if reason:
        text += f"\n\nYour previous answer was invalid: {reason}. Answer again with only the JSON list."
    return text


def parse_blocks(reply: str) -> tuple[list | None, str | None]:
    """(blocks, None) from a reply holding a JSON list (code fences and chatter around it are fine),
    else (None, reason)."""
    a, b = reply.find("["), reply.rfind("]")
    if a < 0 or b < a:
        return None, "no JSON list in the reply"
    try:
        blocks = json.loads(reply[a:b + 1])
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg}"
    if not isinstance(blocks, list):
        return None, "expected a JSON list of blocks"
    return blocks, None


def validate_blocks(blocks: Any, n_steps: int) -> str | None:
    """None when `blocks` ([{start, end, type}], 1-based inclusive) tile steps 1..n_steps exactly once,
    in order; else the first thing wrong, in one line."""
    if not isinstance(blocks, list):
        return "expected a JSON list of blocks"
    if not blocks:
        return "no blocks"
    expected = 1
    for i, blk in enumerate(blocks, start=1):
        if not isinstance(blk, dict):
            return f"block {i} is not an object"
        for key in ("start", "end"):
            v = blk.get(key)
            if isinstance(v, bool) or not isinstance(v, int):
                return f"block {i}: '{key}' must be an integer step number, got {v!r}"
        t = blk.get("type")
        if not isinstance(t, str) or not t.strip():
            return f"block {i}: 'type' must be a non-empty string, got {t!r}"
        start, end = blk["start"], blk["end"]
        if end < start:
            return f"block {i}: ends at step {end} before it starts at {start}"
        if start < expected:
            return f"block {i}: starts at step {start}, overlapping the previous block (expected {expected})"
        if start > expected:
            return f"block {i}: starts at step {start}, leaving steps {expected}..{start - 1} uncovered"
        if end > n_steps:
            return f"block {i}: ends at step {end}, past the last step {n_steps}"
        expected = end + 1
    if expected != n_steps + 1:
        return f"steps {expected}..{n_steps} are not covered"
    return None


def blocks_to_thoughts(blocks: list[dict], steps: Sequence[str]) -> list[dict]:
    return [_thought(steps, b["start"] - 1, b["end"], b["type"].strip()) for b in blocks]


def chunk_llm_batch(items: Sequence[tuple[Sequence[str], str]], complete: Complete, *, retries: int = 2,
                    **rules: Any) -> list[tuple[list[dict], str, str | None]]:
    """(thoughts, method, reason) for each (steps, problem): LLM blocks, retried, else the rules."""
    out: list[Any] = [None] * len(items)
    reasons: dict[int, str | None] = {i: None for i in range(len(items))}
    for _ in range(retries + 1):
        todo = [i for i in range(len(items)) if out[i] is None]
        if not todo:
            break
        replies = complete([llm_prompt(items[i][0], items[i][1], reasons[i]) for i in todo])
        for i, reply in zip(todo, replies):
            blocks, reason = parse_blocks(reply)
            reason = reason or validate_blocks(blocks, len(items[i][0]))
            if reason is None:
                out[i] = (blocks_to_thoughts(blocks, items[i][0]), "llm", None)  # type: ignore[arg-type]
            reasons[i] = reason
    return [o if o is not None else (chunk_rules(items[i][0], **rules), "llm-fallback", reasons[i])
            for i, o in enumerate(out)]


def generator_complete(gen: Any, params: Any) -> Complete:
    """A `Generator` as a `Complete`: each prompt is one user message, the first sample's text back."""
    def complete(prompts: list[str]) -> list[str]:
        return [s[0].text for s in gen.generate([[{"role": "user", "content": p}] for p in prompts], params)]
    return complete


def chunk_llm(steps: Sequence[str], llm: Callable[[str], str], *, problem: str = "", retries: int = 2,
              **rules: Any) -> tuple[list[dict], str, str | None]:
    """One CoT through the LLM grouping; `llm` maps a prompt to the model's reply."""
    return chunk_llm_batch([(steps, problem)], lambda ps: [llm(p) for p in ps], retries=retries, **rules)[0]


# ---------------------------------------------------------------- inputs


def world_long_cots(train_jsonl: str | Path, thoughts_jsonl: str | Path) -> list[dict]:
    """Chunk-stage input from a world build's data/train.jsonl + data/train_long_thoughts.jsonl: the
    long writer's CoTs (all correct) with its thoughts as `gold_thoughts` ({text, kind, redundant})."""
    problems = {str(r["id"]): r for _, r in iter_jsonl(train_jsonl)}
    out = []
    for lineno, rec in iter_jsonl(thoughts_jsonl):
        pid, th = str(rec.get("id")), rec.get("thoughts")
        if pid not in problems:
            raise HybridcotError(f"{thoughts_jsonl}:{lineno}: field 'id' {pid!r} is not in {train_jsonl}")
        if not isinstance(th, list) or not all(isinstance(t, dict) and isinstance(t.get("text"), str) for t in th):
            raise HybridcotError(f"{thoughts_jsonl}:{lineno}: field 'thoughts' must be a list of {{text, kind, ...}}")
        p = problems[pid]
        out.append({"id": pid, "problem": p["problem"], "answer": str(p["answer"]), "level": p.get("level"),
                    "source": p.get("source", "world"), "operands": p.get("operands"), "ops": p.get("ops"),
                    "text": "\n\n".join(t["text"] for t in th), "correct": True, "gold_thoughts": th})
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_cots(path: str | Path, problems: str = "", *, only_correct: bool = True,
              max_per_problem: int | None = 1) -> tuple[list[dict], Counter]:
    """Validated long-CoT records (see the module docstring) and counts of what was left out."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / "data" / "train_long_thoughts.jsonl").exists():
        lines = list(enumerate(world_long_cots(path / "data" / "train.jsonl",
                                               path / "data" / "train_long_thoughts.jsonl"), start=1))
        path = path / "data" / "train_long_thoughts.jsonl"
    else:
        path = path / "samples.jsonl" if path.is_dir() else path
        lines = list(iter_jsonl(path))
    index = {}
    if problems:
        from hybridcot.data.problems import load_problems

        index = {p.id: p for p in load_problems(problems)}
    kept: list[dict] = []
    skipped: Counter = Counter()
    per_id: Counter = Counter()
    for lineno, rec in lines:
        where = f"{path}:{lineno}"
        pid = rec.get("id")
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
            raise HybridcotError(f"{where}: field 'id' must be a non-empty string or integer, got {pid!r}")
        pid = str(pid)
        p = index.get(pid)
        r = {"id": pid, "sample": rec.get("sample"), "problem": rec.get("problem", p.problem if p else None),
             "answer": rec.get("answer", rec.get("gold", p.answer if p else None)),
             "level": rec.get("level", p.level if p else None), "text": rec.get("text"), "correct": rec.get("correct")}
        checks = {"text": (isinstance(r["text"], str), "a string"),
                  "problem": (isinstance(r["problem"], str), "a string (or give problems=)"),
                  "answer": (_is_num(r["answer"]) or isinstance(r["answer"], str), "a string or number"),
                  "level": (r["level"] is None or _is_int(r["level"]), "an integer or null"),
                  "sample": (r["sample"] is None or _is_int(r["sample"]), "an integer or null"),
                  "correct": (r["correct"] is None or isinstance(r["correct"], bool), "true or false")}
        for key, (ok, want) in checks.items():
            if not ok:
                raise HybridcotError(f"{where}: field '{key}' must be {want}, got {r[key]!r}"[:300])
        r["answer"] = str(r["answer"])
        if only_correct and r["correct"] is False:
            skipped["incorrect"] += 1
            continue
        if not split_steps(r["text"]):
            skipped["empty_text"] += 1
            continue
        if max_per_problem is not None and per_id[pid] >= max_per_problem:
            skipped["over_max_per_problem"] += 1
            continue
        per_id[pid] += 1
        r.update({k: rec[k] for k in ("operands", "ops", "source", "gold_thoughts") if rec.get(k) is not None})
        kept.append(r)
    return kept, skipped


def chunk_record(rec: dict, steps: list[str], thoughts: list[dict], method: str, reason: str | None) -> dict:
    """One chunks.jsonl record; `gold` only when the thoughts are exactly the writer's."""
    gold = rec.get("gold_thoughts")
    aligned = gold is not None and [t["text"] for t in thoughts] == [g["text"].strip() for g in gold]
    out = {k: rec.get(k) for k in ("id", "sample", "problem", "answer", "level")}
    out.update({"steps": steps, "thoughts": thoughts, "method": method, "n_thoughts": len(thoughts),
                "reason": reason, "gold": [{"kind": g.get("kind"), "redundant": bool(g.get("redundant"))}
                                           for g in gold] if aligned else None})
    out.update({k: rec[k] for k in ("operands", "ops", "source") if k in rec})
    return out


# ---------------------------------------------------------------- the stage


@dataclass
class ChunkConfig:
    """Split long CoTs into steps and group them into thoughts (Long⊗Short step 1)."""

    input: str = field("", help="long CoTs: JSONL (or an eval/sample folder's samples.jsonl) or a world build folder")
    output: str = field("", help="output folder for chunks.jsonl, stats.json and config.yaml")
    problems: str = field("", help="problem set spec giving problem text/answer/level to records that lack them")
    method: str = field("rules", help="rules (discourse markers, deterministic) | llm (model-grouped, *paper code*)")
    markers: list[str] = field(list(DEFAULT_MARKERS), help="step openers that start a new thought (case-insensitive)")
    min_thought_tokens: int = field(3, help="a thought with fewer tokens joins the previous one (0 = never)")
    tokenizer: str = field("", help="checkpoint/tokenizer folder to count tokens with (empty = whitespace words)")
    only_correct: bool = field(True, help="drop CoTs whose 'correct' field is false")
    max_per_problem: int | None = field(1, help="CoTs kept per problem id, in file order (null = all)")
    limit: int | None = field(None, help="chunk only the first `limit` kept CoTs")
    model: str = field("", help="method=llm: checkpoint folder of the grouping model")
    backend: str = field("auto", help="method=llm: generation backend auto | hf | vllm")
    dtype: str = field("float32", help="method=llm: model dtype")
    llm_retries: int = field(2, help="method=llm: retries of an invalid grouping before falling back to the rules")
    llm_temperature: float = field(0.0, help="method=llm: sampling temperature (retries change the prompt)")
    llm_max_tokens: int = field(1024, help="method=llm: maximum tokens of the JSON answer")
    batch_size: int = field(16, help="method=llm: CoTs per generate call (and per append to chunks.jsonl)")

    def __post_init__(self) -> None:
        for key in ("input", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.method == "llm" and not self.model.strip():
            raise ValueError("method=llm needs model= (a checkpoint folder)")
        if self.min_thought_tokens < 0:
            raise ValueError(f"min_thought_tokens must be >= 0, got {self.min_thought_tokens}")
        for key in ("max_per_problem", "limit"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1 or null, got {getattr(self, key)}")
        if self.llm_retries < 0 or self.llm_max_tokens < 1 or self.batch_size < 1 or self.llm_temperature < 0:
            raise ValueError("llm_retries and llm_temperature must be >= 0, llm_max_tokens and batch_size >= 1")


def _key(r: dict) -> tuple[str, Any]:
    return str(r["id"]), r.get("sample")


def chunk_stats(records: Sequence[dict], skipped: Counter) -> dict:
    n = [r["n_thoughts"] for r in records]
    methods = Counter(r["method"] for r in records)
    return {"cots": len(records), "problems": len({r["id"] for r in records}), "skipped": dict(sorted(skipped.items())),
            "methods": dict(sorted(methods.items())), "fallbacks": methods.get("llm-fallback", 0),
            "fallback_reasons": dict(Counter(r["reason"] for r in records if r["reason"]).most_common(10)),
            "thoughts_per_cot": {"mean": sum(n) / len(n) if n else None, "min": min(n, default=None),
                                 "max": max(n, default=None),
                                 "hist": {str(k): v for k, v in sorted(Counter(n).items())}},
            "steps_per_cot": sum(len(r["steps"]) for r in records) / len(records) if records else None,
            "gold_aligned": sum(r["gold"] is not None for r in records)}


def run_chunk(cfg: ChunkConfig, complete: Complete | None = None) -> dict:
    """Chunk every kept CoT; returns the stats (also in stats.json). `complete` replaces the model
    for method=llm (prompts -> replies), as the tests do."""
    cots, skipped = read_cots(cfg.input, cfg.problems, only_correct=cfg.only_correct,
                              max_per_problem=cfg.max_per_problem)
    cots = cots[:cfg.limit] if cfg.limit else cots
    if not cots:
        raise HybridcotError(f"{cfg.input}: no CoTs to chunk (left out: {dict(skipped)})")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    rules = {"markers": cfg.markers, "min_thought_tokens": cfg.min_thought_tokens,
             "count": token_counter(cfg.tokenizer) if cfg.tokenizer else word_count}
    path = out / "chunks.jsonl"
    if cfg.method == "rules":
        records = [chunk_record(r, s, chunk_rules(s, **rules), "rules", None)
                   for r in progress(cots, desc="chunk", unit="cot", mininterval=0.5)
                   for s in [split_steps(r["text"])]]
        write_jsonl(path, records)
    else:
        done = {_key(r) for r in read_jsonl(path, allow_torn_tail=True)} if path.exists() else set()
        todo = [r for r in cots if _key(r) not in done]
        gen, call = None, complete
        if todo and call is None:
            from hybridcot.generation import SamplingConfig, load_generator

            gen = load_generator(cfg.model, backend=cfg.backend, dtype=cfg.dtype, progress=False)
            call = generator_complete(gen, SamplingConfig(temperature=cfg.llm_temperature,
                                                          max_tokens=cfg.llm_max_tokens))
        try:  # one bar per CoT (resumed ones shown as done), none per generate call or retry
            with JsonlAppender(path) as app, progress(total=len(cots), initial=len(cots) - len(todo),
                                                      desc="chunk (llm)", unit="cot") as bar:
                for i in range(0, len(todo), cfg.batch_size):
                    batch = todo[i:i + cfg.batch_size]
                    steps = [split_steps(r["text"]) for r in batch]
                    results = chunk_llm_batch([(s, r["problem"]) for s, r in zip(steps, batch)], call,
                                              retries=cfg.llm_retries, **rules)
                    for r, s, (th, method, reason) in zip(batch, steps, results):
                        app.write(chunk_record(r, s, th, method, reason))
                    bar.update(len(batch))
        finally:
            if gen is not None:
                gen.close()
        keys = {_key(r) for r in cots}
        records = [r for r in read_jsonl(path) if _key(r) in keys]
    stats = chunk_stats(records, skipped)
    write_json(out / "stats.json", stats)
    tpc = stats["thoughts_per_cot"]
    print(f"chunk: {stats['cots']} CoTs -> {tpc['mean']:.1f} thoughts each ({stats['fallbacks']} fallbacks, "
          f"{stats['gold_aligned']} aligned with gold marks) -> {path}")
    return stats
