"""`hybridcot dialogues`: Long⊗Short step 3, cold-start dialogues and one SFT dataset per thinker.

    hybridcot dialogues input=runs/demo/longshort/importance output=runs/demo/longshort/dialogues

Input: importance JSONL (a folder means its importance.jsonl), one record per chunked long CoT:
`{id, problem, answer, level, thoughts: [{text, ...}], s: [s_1..s_n], sample?}`. Per record
(`build_dialogue`): consecutive thoughts with s_i > tau become one Long turn, verbatim (joined with
blank lines); each run of the others becomes one Short turn, written concisely by a `ShortWriter`.
The long thinker speaks first, so thought 1 always goes to the Long turn even when it is not
important (`forced_first`; only thought 1, the rest follow their s). The last turn is a final Short
turn holding `\\boxed{}`: when the last thoughts were Long, a final Short turn is appended. A
non-final Short run whose concise text is empty (e.g. only re-checks, which the world writer drops)
is dropped and the Long turns around it become one. Every dialogue passes `protocol.check_dialogue`.

Skipping the long thinker (`short_samples=`, our extension, not in the paper): given the short model's
own graded samples on the same problems (`hybridcot sample`'s samples.jsonl), a problem it solves
alone on at least `skip_long_min` of them gets an empty Long turn (`<think></think>`, the long
thinker still speaks first) and one final Short turn written from the whole CoT, whatever the
thoughts' s: no thought is worth the long thinker there. The long thinker then learns when to think.

Short writers (`writer=`): "world" parses the operations the run performed from the embedded
world's steps ("so A+B=C.") and writes them as running totals "A+B=C, C-D=E." (as `world.write_short_span`;
with `letters`, the default, each total carries its term's letter where the steps name one: "B A+B=C"),
the final turn ending "The answer is \\boxed{X}." (X: the run's own boxed answer, else its last
result, else the record's answer); "model" asks a model to summarise the run (`model_writer`; a
final turn without `\\boxed{}` gets "The answer is \\boxed{<answer>}." appended, the inputs being
correct CoTs); "auto" (default) uses the world writer where every thought is a world thought.

Outputs in `output/`: `dialogues.jsonl` (id, sample, problem, answer, level, gold, turns
[Turn.to_record()], forced_first, final_appended, long_thoughts, skipped_long, writer, correct, long/short chars,
and long/short tokens with `tokenizer=`), `sft_long.jsonl` and `sft_short.jsonl` (TRL
conversational prompt/completion, one row per own turn: prompt = `protocol.messages_for(role,
problem, turns before it)`, completion = that turn rendered, so the loss is on the thinker's own
turns only; plus id, sample, turn), `stats.json` (with `gold_redundant`: where the writer's
redundant thoughts went, when the input carries `gold` marks) and `config.yaml`.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridcot.config import field, save_config
from hybridcot.data.world import TAGS as TERM_LETTERS
from hybridcot.grading import extract_boxed
from hybridcot.io import HybridcotError, iter_jsonl, write_json, write_jsonl
from hybridcot.longshort.protocol import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    LONG,
    RETHINK_CLOSE,
    SHORT,
    THINK_CLOSE,
    THINK_OPEN,
    Turn,
    check_dialogue,
    dialogue_text,
    messages_for,
    render,
)
from hybridcot.ui import progress

ShortWriter = Callable[[list[str], dict, bool], str]  # (thought texts of the run, record, is_final) -> text
WRITERS = ("auto", "world", "model")
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, RETHINK_CLOSE)

# ---------------------------------------------------------------- the embedded world's writer

_OP = re.compile(r"\bso (-?\d+)([+-])(\d+)=(-?\d+)\.")
# the compact step (WriterConfig.columns=False): "Next, 13+7=20." / "Wait, we still need to add 7. 13+7=20."
_OP_COMPACT = re.compile(r"^(?:[A-Z][a-z]+,(?: [A-F] [+-]\d+\.)?|Wait, we still need(?: to (?:add|subtract) \d+| [A-F] "
                         r"[+-]\d+)\.) (-?\d+)([+-])(\d+)=(-?\d+)\.", re.M)
_WORLD_THOUGHT = re.compile(r"(?:\d+ terms\. )?(Okay, let me work out |Let me double-check |Alternatively, |So the answer is \\boxed\{)")


def world_ops(text: str) -> list[tuple[int, str, int, int]]:
    """The operations world steps performed, in order: (a, op, b, result) for each "so a+b=result." (the
    column form) or each step that opens a thought with "Next, a+b=result." (the compact form)."""
    found = sorted([(m.start(), m.groups()) for m in _OP.finditer(text)]
                   + [(m.start(), m.groups()) for m in _OP_COMPACT.finditer(text)])
    return [(int(a), op, int(b), int(c)) for _, (a, op, b, c) in found]


def is_world_thought(text: str) -> bool:
    """A plan, step, re-check, alternative or final thought as `world.write_long` writes them."""
    return bool(world_ops(text)) or bool(_WORLD_THOUGHT.match(text.strip()))


def chain_text(ops: Sequence[tuple[int, str, int, int]], letters: Sequence[str | None] | None = None) -> str:
    """Operations as running totals "a+b=c, c-d=e." (a new sentence where one does not start from the
    last result): one total per operation, as the world's stepwise Short writes, which a tiny short
    thinker can keep (it cannot add a chain of several numbers in its head). With `letters` (one per
    operation, None where unknown) each total is preceded by its term's letter: "B 4+9=13, C 13-3=10."."""
    letters = list(letters) if letters is not None else [None] * len(ops)
    chains: list[list[tuple[str | None, tuple[int, str, int, int]]]] = []
    for o, letter in zip(ops, letters):
        if chains and chains[-1][-1][1][3] == o[0]:
            chains[-1].append((letter, o))
        else:
            chains.append([(letter, o)])
    return " ".join(", ".join(f"{letter + ' ' if letter else ''}{a}{op}{b}={c}" for letter, (a, op, b, c) in chain)
                    + "." for chain in chains)


_TERM = re.compile(rf"\b([{TERM_LETTERS}]) [+-]\d+\.")  # "C +7.": the term a tagged step names


def world_ops_lettered(text: str) -> tuple[list[tuple[int, str, int, int]], list[str | None]]:
    """`world_ops` per step (blank-line separated) with the letter of the term the step names
    ("Next, C +7. ...": C), None where it names none (untagged worlds)."""
    ops, letters = [], []
    for step in re.split(r"\n\s*\n", text):
        found = world_ops(step)
        m = _TERM.search(step)
        ops += found
        letters += [m.group(1) if m else None] * len(found)
    return ops, letters


def world_writer(texts: list[str], rec: dict, final: bool, letters: bool = False) -> str:
    """The world's concise Short turn for a run of thoughts (thoughts without an operation drop out).
    `letters`: name each operation's term ("B 5+7=12, C 12+4=16.") where the steps name it."""
    pairs = [world_ops_lettered(t) for t in texts]
    ops = [o for p in pairs for o in p[0]]
    text = chain_text(ops, [x for p in pairs for x in p[1]] if letters else None)
    if final:
        boxed = extract_boxed("\n\n".join(texts))
        answer = boxed.strip() if boxed and boxed.strip() else str(ops[-1][3]) if ops else str(rec["answer"])
        text = f"{text} The answer is \\boxed{{{answer}}}.".strip()
    return text


# ---------------------------------------------------------------- the model writer

SUMMARY_PROMPT = """Problem: {problem}

Here are some reasoning steps towards its solution. Rewrite them as briefly as possible: keep every \
result that later steps need, drop checks, repetitions and hesitation. Write plain sentences.{final}

Steps:
{steps}"""
FINAL_ASK = " These are the last steps: end with the final answer in \\boxed{}."


def model_writer(llm: Callable[[str], str]) -> ShortWriter:
    """A ShortWriter that asks a model (`llm`: prompt -> reply) to summarise the run."""

    def write(texts: list[str], rec: dict, final: bool) -> str:
        prompt = SUMMARY_PROMPT.format(problem=rec["problem"], final=FINAL_ASK if final else "",
                                       steps="\n\n".join(texts))
        return llm(prompt).strip()

    return write


def generator_llm(gen: Any, params: Any) -> Callable[[str], str]:
    """A `Generator` as `prompt -> reply` (one user message, greedy unless `params` say otherwise)."""
    return lambda prompt: gen.generate([[{"role": "user", "content": prompt}]], params)[0][0].text


def auto_writer(model: ShortWriter | None, world: ShortWriter = world_writer) \
        -> Callable[[list[str]], tuple[str, ShortWriter]]:
    """Pick (name, writer) for a record's thought texts: the world writer (`world`) where they all are
    world thoughts, else the model writer (an error when there is none)."""

    def pick(texts: list[str]) -> tuple[str, ShortWriter]:
        if all(is_world_thought(t) for t in texts):
            return "world", world
        if model is None:
            raise HybridcotError("thoughts are not embedded-world steps: give model= for the model writer")
        return "model", model

    return pick


# ---------------------------------------------------------------- one dialogue


def _clean(text: str) -> str:
    for tag in TAGS:
        text = text.replace(tag, "")
    return text.strip()


def _final_text(writer: ShortWriter, texts: list[str], rec: dict) -> str:
    """A final Short turn's text: the writer's, with the record's answer boxed where it boxed none."""
    text = _clean(writer(texts, rec, True))
    return text if extract_boxed(text) else f"{text} The answer is \\boxed{{{rec['answer']}}}.".strip()


def build_dialogue(thoughts: Sequence[str], s: Sequence[float], rec: dict, writer: ShortWriter,
                   tau: float = 0.0, skip_long: bool = False) -> tuple[list[Turn], dict]:
    """The dialogue for one CoT, and what happened: {forced_first, final_appended, dropped_short_runs,
    long_thoughts (indices in Long turns), skipped_long}. Raises ValueError when s and thoughts differ
    in length. With `skip_long` (the short model solves the problem alone: `short_samples`), the long
    thinker's turn is empty and one final Short turn writes every thought, whatever its s."""
    if len(thoughts) != len(s) or not thoughts:
        raise ValueError(f"{len(thoughts)} thoughts but {len(s)} importance values")
    if skip_long:
        turns = [Turn(LONG, ""), Turn(SHORT, _final_text(writer, list(thoughts), rec), final=True)]
        return turns, {"forced_first": False, "final_appended": False, "dropped_short_runs": 0,
                       "long_thoughts": [], "skipped_long": True}
    long = [x > tau for x in s]
    forced = not long[0]
    long[0] = True
    runs: list[list[Any]] = []  # [is_long, [indices]]
    for i, flag in enumerate(long):
        if runs and runs[-1][0] == flag:
            runs[-1][1].append(i)
        else:
            runs.append([flag, [i]])
    turns: list[Turn] = []
    long_idx: list[int] = []
    dropped = 0
    for k, (flag, idx) in enumerate(runs):
        texts = [thoughts[i] for i in idx]
        if flag:
            long_idx += idx
            if turns and turns[-1].role == LONG:  # the Short run between was dropped
                turns[-1] = Turn(LONG, turns[-1].text + "\n\n" + "\n\n".join(texts))
            else:
                turns.append(Turn(LONG, "\n\n".join(texts)))
            continue
        final = k == len(runs) - 1
        text = _final_text(writer, texts, rec) if final else _clean(writer(texts, rec, False))
        if text:
            turns.append(Turn(SHORT, text, final=final))
        else:
            dropped += 1
    appended = runs[-1][0]
    if appended:
        turns.append(Turn(SHORT, _final_text(writer, [], rec), final=True))
    problem = check_dialogue(turns)
    if problem:  # a bug here, not bad input: every branch above keeps the protocol
        raise AssertionError(f"built an invalid dialogue: {problem}")
    return turns, {"forced_first": forced, "final_appended": appended, "dropped_short_runs": dropped,
                   "long_thoughts": long_idx, "skipped_long": False}


def sft_rows(rec: dict, turns: Sequence[Turn]) -> dict[str, list[dict]]:
    """One prompt/completion row per turn, by thinker: the thinker's view of the turns before it."""
    rows: dict[str, list[dict]] = {LONG: [], SHORT: []}
    for i, t in enumerate(turns):
        rows[t.role].append({"prompt": messages_for(t.role, rec["problem"], list(turns[:i])),
                             "completion": [{"role": "assistant", "content": render(t)}],
                             "id": rec["id"], "sample": rec.get("sample"), "turn": i})
    return rows


# ---------------------------------------------------------------- input


def read_importance(path: str | Path) -> list[dict]:
    """Validated importance records: id, sample, problem, answer, level, thoughts (texts), s."""
    path = Path(path).expanduser()
    path = path / "importance.jsonl" if path.is_dir() else path
    out = []
    for lineno, rec in iter_jsonl(path):
        where = f"{path}:{lineno}"

        def bad(key: str, want: str, rec: dict = rec, where: str = where) -> HybridcotError:
            return HybridcotError(f"{where}: field '{key}' must be {want}, got {rec.get(key)!r}"[:300])

        pid = rec.get("id")
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
            raise bad("id", "a non-empty string or integer")
        if not isinstance(rec.get("problem"), str):
            raise bad("problem", "a string")
        ans = rec.get("answer")
        if isinstance(ans, bool) or not isinstance(ans, (str, int, float)):
            raise bad("answer", "a string or number")
        lv = rec.get("level")
        if lv is not None and (isinstance(lv, bool) or not isinstance(lv, int)):
            raise bad("level", "an integer or null")
        th = rec.get("thoughts")
        if not isinstance(th, list) or not th:
            raise bad("thoughts", "a non-empty list")
        texts = [t.get("text") if isinstance(t, dict) else t for t in th]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise bad("thoughts", "a list of {text: non-empty string, ...}")
        s = rec.get("s")
        if not isinstance(s, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                              and math.isfinite(x) for x in s):
            raise bad("s", "a list of finite numbers")
        if len(s) != len(texts):
            raise HybridcotError(f"{where}: field 's' has {len(s)} values for {len(texts)} thoughts")
        out.append({"id": str(pid), "sample": rec.get("sample"), "problem": rec["problem"], "answer": str(ans),
                    "level": lv, "thoughts": [t.strip() for t in texts], "s": [float(x) for x in s],
                    **{k: rec[k] for k in ("operands", "ops") if k in rec},
                    "gold": rec["gold"] if isinstance(rec.get("gold"), list) and len(rec["gold"]) == len(s) else None})
    return out


def read_short_accuracy(path: str | Path) -> dict[str, float]:
    """Per problem id, the share of its samples graded correct, from a samples.jsonl (a folder means its
    samples.jsonl): each record needs `id` and a boolean `correct`."""
    path = Path(path).expanduser()
    path = path / "samples.jsonl" if path.is_dir() else path
    right: dict[str, list[bool]] = {}
    for lineno, rec in iter_jsonl(path):
        pid, ok = rec.get("id"), rec.get("correct")
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
            raise HybridcotError(f"{path}:{lineno}: field 'id' must be a non-empty string or integer, got {pid!r}")
        if not isinstance(ok, bool):
            raise HybridcotError(f"{path}:{lineno}: field 'correct' must be true or false, got {ok!r}")
        right.setdefault(str(pid), []).append(ok)
    if not right:
        raise HybridcotError(f"{path}: no samples")
    return {k: sum(v) / len(v) for k, v in right.items()}


# ---------------------------------------------------------------- the stage


@dataclass
class DialoguesConfig:
    """Build Long⊗Short cold-start dialogues from per-thought importance (Long⊗Short step 3)."""

    input: str = field("", help="importance JSONL (a folder means its importance.jsonl)")
    output: str = field("", help="output folder for dialogues.jsonl, sft_long.jsonl, sft_short.jsonl, stats.json")
    tau: float = field(0.0, help="a thought with importance s > tau goes to the Long thinker, verbatim")
    writer: str = field("auto", help="Short-turn writer: auto (world where the thoughts are world steps, else "
                                     "model) | world | model")
    letters: bool = field(True, help="world writer: name each operation's term (\"B 5+7=12, C 12+4=16.\") where the "
                                     "steps name it, so the next Long turn sees where the Short turn stopped (SFT pair on "
                                     "the stop-14 world: 63.4% with, 59.4% without)")
    model: str = field("", help="checkpoint folder of the model writer (the Short model)")
    backend: str = field("auto", help="model writer: generation backend auto | hf | vllm")
    dtype: str = field("float32", help="model writer: model dtype")
    max_tokens: int = field(256, help="model writer: maximum tokens of one Short turn")
    tokenizer: str = field("", help="checkpoint/tokenizer folder to count each thinker's tokens (empty = chars only)")
    limit: int | None = field(None, help="build only the first `limit` dialogues")
    short_samples: str = field("", help="our extension, not in the paper: the short model's own graded samples on these "
                                        "problems (`hybridcot sample`'s samples.jsonl, or its folder). Where its "
                                        "accuracy over a problem's samples is >= skip_long_min, the long thinker's "
                                        "turn is empty and one final Short turn writes the whole CoT: no thought is "
                                        "worth the long thinker where the short one alone solves the problem "
                                        "('' = off, as the paper)")
    skip_long_min: float = field(1.0, help="with short_samples: the short model's sampled accuracy on a problem at or "
                                           "above which its dialogue skips the long thinker")
    tau_sweep: list[float] = field([0.0, 0.1, 0.2, 0.3, 0.5, math.inf],
                            help="with tokenizer= and the world writer: stats.json's `tau_sweep` rebuilds the "
                                 "dialogues at each tau (nothing else written) and reports their tokens per thinker "
                                 "and against the CoTs'; tau inf = thought 1 Long, all else Short, the shortest "
                                 "dialogues the protocol can make from these CoTs; [] = none")

    def __post_init__(self) -> None:
        for key in ("input", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if self.writer not in WRITERS:
            raise ValueError(f"writer must be one of {list(WRITERS)}, got {self.writer!r}")
        if self.writer == "model" and not self.model.strip():
            raise ValueError("writer=model needs model= (a checkpoint folder)")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null, got {self.limit}")
        if any(math.isnan(x) for x in self.tau_sweep):
            raise ValueError(f"tau_sweep must not hold nan, got {self.tau_sweep!r}")
        if not 0.0 < self.skip_long_min <= 1.0:
            raise ValueError(f"skip_long_min must be in (0, 1], got {self.skip_long_min}")


def _tau_json(tau: float) -> float | str:
    """tau as stats.json holds it: plain JSON has no Infinity, so inf is written "inf"."""
    return tau if math.isfinite(tau) else "inf"


def dialogue_stats(records: Sequence[dict], n_thoughts: int, tau: float) -> dict:
    n = len(records)
    turns = [len(r["turns"]) for r in records]

    def share(a: float, b: float) -> float | None:
        return a / (a + b) if a + b else None

    out = {"dialogues": n, "tau": _tau_json(tau),
           "turns_per_dialogue": {"mean": sum(turns) / n,
                                  "hist": {str(k): v for k, v in sorted(Counter(turns).items())}},
           "long_turns": sum(t["role"] == LONG for r in records for t in r["turns"]),
           "short_turns": sum(t["role"] == SHORT for r in records for t in r["turns"]),
           "thoughts": n_thoughts, "long_thought_share": sum(r["n_long_thoughts"] for r in records) / n_thoughts,
           "long_char_share": share(sum(r["long_chars"] for r in records), sum(r["short_chars"] for r in records)),
           "forced_first": sum(r["forced_first"] for r in records),
           "final_appended": sum(r["final_appended"] for r in records),
           "dropped_short_runs": sum(r["dropped_short_runs"] for r in records),
           "skipped_long": sum(bool(r.get("skipped_long")) for r in records),
           "writers": dict(Counter(r["writer"] for r in records)), "correct": sum(r["correct"] for r in records)}
    gold = [(r["gold"], set(r["long_thoughts"])) for r in records if r.get("gold")]
    if gold:  # the writer's marks (embedded world): where did the redundant thoughts go?
        red = [i in long for g, long in gold for i, m in enumerate(g) if isinstance(m, dict) and m.get("redundant")]
        out["gold_redundant"] = {"thoughts": len(red), "to_long": sum(red)}
    if records and "long_tokens" in records[0]:
        lt, st = sum(r["long_tokens"] for r in records), sum(r["short_tokens"] for r in records)
        out.update({"long_tokens": lt, "short_tokens": st, "long_token_share": share(lt, st)})
    return out


def tau_sweep(recs: Sequence[dict], taus: Sequence[float], writer: ShortWriter,
              count: Callable[[str], int], cot: int) -> list[dict]:
    """The dialogues' size at each tau, rebuilt with `writer` (nothing written): tokens by each thinker,
    the short thinker's share, and the total against the CoTs' own tokens (`tokens_vs_cot`). At tau = inf
    only the forced first thought is Long: the least the cold-start protocol can write for these CoTs,
    so the floor under any pair trained on them that keeps the protocol's turns. `cot`: the CoTs' tokens."""
    n_thoughts = max(1, sum(len(r["thoughts"]) for r in recs))
    out = []
    for tau in taus:
        tok = {LONG: 0, SHORT: 0}
        long_thoughts = 0
        for r in recs:
            turns, info = build_dialogue(r["thoughts"], r["s"], r, writer, tau, r.get("skip_long", False))
            long_thoughts += len(info["long_thoughts"])
            for t in turns:
                tok[t.role] += count(render(t))
        total = tok[LONG] + tok[SHORT]
        out.append({"tau": _tau_json(tau), "long_tokens": tok[LONG], "short_tokens": tok[SHORT],
                    "short_token_share": tok[SHORT] / total if total else None,
                    "long_thought_share": long_thoughts / n_thoughts,
                    "tokens_vs_cot": total / cot if cot else None})
    return out


def run_dialogues(cfg: DialoguesConfig, llm: Callable[[str], str] | None = None) -> dict:
    """Build every dialogue and both SFT sets; returns the stats (also in stats.json). `llm` replaces
    the writer model (prompt -> reply), as the tests do."""
    from hybridcot.grading import grade_many
    from hybridcot.longshort.chunking import token_counter

    recs = read_importance(cfg.input)[:cfg.limit]
    if not recs:
        raise HybridcotError(f"{cfg.input}: no importance records")
    out = Path(cfg.output)
    if cfg.short_samples:
        acc = read_short_accuracy(cfg.short_samples)
        if not any(r["id"] in acc for r in recs):
            raise HybridcotError(f"{cfg.short_samples}: no sample of any of the {len(recs)} problems in {cfg.input} "
                                 f"(ids such as {recs[0]['id']!r})")
        for r in recs:
            r["skip_long"] = acc.get(r["id"], 0.0) >= cfg.skip_long_min
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    gen, call = None, llm
    if call is None and cfg.model and (cfg.writer == "model" or not all(
            is_world_thought(t) for r in recs for t in r["thoughts"])):
        from hybridcot.generation import SamplingConfig, load_generator

        gen = load_generator(cfg.model, backend=cfg.backend, dtype=cfg.dtype, progress=False)
        call = generator_llm(gen, SamplingConfig(max_tokens=cfg.max_tokens))
    model = model_writer(call) if call is not None else None
    world = functools.partial(world_writer, letters=cfg.letters)
    pick = auto_writer(model, world)
    count = token_counter(cfg.tokenizer) if cfg.tokenizer else None
    dialogues, sft = [], {LONG: [], SHORT: []}
    try:
        for r in progress(recs, desc="dialogues", unit="dialogue"):  # none per writer-model call
            if cfg.writer == "auto":
                try:
                    name, writer = pick(r["thoughts"])
                except HybridcotError as e:
                    raise HybridcotError(f"{cfg.input}: record {r['id']!r}: {e}") from None
            else:
                name, writer = cfg.writer, world if cfg.writer == "world" else model
            turns, info = build_dialogue(r["thoughts"], r["s"], r, writer, cfg.tau, r.get("skip_long", False))
            d = {k: r[k] for k in ("id", "sample", "problem", "answer", "level", "gold")}
            d.update({"turns": [t.to_record() for t in turns], "writer": name, **info,
                      "n_long_thoughts": len(info["long_thoughts"])})
            for role in (LONG, SHORT):
                d[f"{role}_chars"] = sum(len(render(t)) for t in turns if t.role == role)
                if count is not None:
                    d[f"{role}_tokens"] = sum(count(render(t)) for t in turns if t.role == role)
            dialogues.append(d)
            for role, rows in sft_rows(r, turns).items():
                sft[role] += rows
    finally:
        if gen is not None:
            gen.close()
    graded = grade_many([dialogue_text([Turn.from_record(t) for t in d["turns"]]) for d in dialogues],
                        [d["answer"] for d in dialogues])
    for d, g in zip(dialogues, graded):
        d["correct"] = bool(g.correct)
    write_jsonl(out / "dialogues.jsonl", dialogues)
    write_jsonl(out / "sft_long.jsonl", sft[LONG])
    write_jsonl(out / "sft_short.jsonl", sft[SHORT])
    stats = dialogue_stats(dialogues, sum(len(r["thoughts"]) for r in recs), cfg.tau)
    stats["sft_rows"] = {LONG: len(sft[LONG]), SHORT: len(sft[SHORT])}
    if count is not None:
        cot = sum(count("\n\n".join(r["thoughts"])) for r in recs)
        stats["cot_tokens"] = cot
        stats["tokens_vs_cot"] = (stats["long_tokens"] + stats["short_tokens"]) / cot if cot else None
        if cfg.tau_sweep and all(d["writer"] == "world" for d in dialogues):  # the model writer: a call per run
            stats["tau_sweep"] = tau_sweep(recs, cfg.tau_sweep, world, count, cot)
    write_json(out / "stats.json", stats)
    print(f"dialogues: {stats['dialogues']} ({stats['turns_per_dialogue']['mean']:.1f} turns each, "
          f"{stats['long_thought_share']:.0%} of thoughts to Long, {stats['correct']} correct) -> {out}")
    for row in stats.get("tau_sweep", []):
        print(f"  tau {row['tau']}: {row['tokens_vs_cot']:.0%} of the CoTs' tokens, "
              f"{row['short_token_share']:.0%} by the short thinker")
    return stats
