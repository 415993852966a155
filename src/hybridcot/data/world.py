"""The embedded reasoning world: multi-step arithmetic with difficulty levels 1-5.

A problem is a chain of additions and subtractions of one-digit numbers ("What is 4+8-3+5?"); the
level sets how many operands there are (two to six). Two solution writers follow the
conventions of real reasoning models:

* **long**: thoughts separated by blank lines. A plan, one thought per operation done column by
  column (each column is a one-digit fact, so a tiny model can get every step right; with
  `WriterConfig.columns=False`, the operation as one fact, "Next, 13+7=20."), reflection thoughts
  that open with "Wait,", "Let me double-check", "Alternatively," and a final `\\boxed{}`.
  Re-verifications and alternatives are *redundant* (removing them changes nothing) and the
  generator records that; "Wait, we still need to ..." thoughts carry a real step and are not
  redundant. Long⊗Short's importance estimator is checked against these marks.
* **short**: a concise solution and the boxed answer: the whole chain in one step, in the head, or
  (`stepwise`, the default world) one running total per operation.

The premise both methods build on is that long thinking helps only on the hard problems. In the
default world it holds because Short is fine-tuned for fewer steps than Long and loses track of
running totals past four terms; measured at stop 13, Short fine-tuned for as many steps as Long from a
longer-trained base solved 90% of level 5 and Long 51% (see `world_models.PRESETS`). Long, in turn,
solves level 5 (98%) because the default tokenizer has one token per signed digit and its data repeats
levels 4 and 5 (`WorldBuildConfig.signed_digits`, `long_level_repeats`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PROMPT_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."

# level -> (number of operands, smallest operand, largest operand)
LEVELS: dict[int, tuple[int, int, int]] = {
    1: (2, 1, 9),
    2: (3, 1, 9),
    3: (4, 1, 9),
    4: (5, 1, 9),
    5: (6, 1, 9),
}
QUESTION_TEMPLATES = ["What is {e}?", "Compute {e}.", "Calculate {e}.", "Evaluate {e}.", "Find the value of {e}."]
ORDINALS = ["First", "Next", "Then", "Next", "Then", "Next"]
TAGS = "ABCDEF"  # the letters of the terms when the long writer tags them (WriterConfig.tags)


@dataclass
class Thought:
    text: str
    kind: str  # plan | step | verify | alternative | final
    redundant: bool = False


@dataclass
class WorldProblem:
    id: str
    level: int
    operands: list[int]
    ops: list[str]  # len(operands) - 1, each "+" or "-"
    template: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def expression(self) -> str:
        return format_expr(self.operands, self.ops)

    @property
    def answer(self) -> int:
        return partial_totals(self.operands, self.ops)[-1]

    @property
    def problem(self) -> str:
        return QUESTION_TEMPLATES[self.template % len(QUESTION_TEMPLATES)].format(e=self.expression)

    def to_record(self) -> dict:
        return {"id": self.id, "problem": self.problem, "answer": str(self.answer), "level": self.level,
                "source": "world", "operands": self.operands, "ops": self.ops}


def format_expr(operands: list[int], ops: list[str]) -> str:
    """'5+7-4': no spaces, so each digit's previous token is an operand or operator (tokenizers
    split a space before a digit into its own token, which makes copying numbers much harder
    for tiny models)."""
    return str(operands[0]) + "".join(f"{op}{x}" for op, x in zip(ops, operands[1:]))


def partial_totals(operands: list[int], ops: list[str]) -> list[int]:
    totals = [operands[0]]
    for op, x in zip(ops, operands[1:]):
        totals.append(totals[-1] + x if op == "+" else totals[-1] - x)
    return totals


def make_problem(rng: random.Random, level: int, pid: str) -> WorldProblem:
    if level not in LEVELS:
        raise ValueError(f"level must be 1..5, got {level}")
    n, lo, hi = LEVELS[level]
    # Operands are distinct within a problem where the range allows: a repeated operand makes "which
    # one comes next" ambiguous to copy, an artefact of the tiny models rather than of the task.
    pool = list(range(lo, hi + 1))
    rng.shuffle(pool)
    draws = pool[:n] if len(pool) >= n else [rng.randint(lo, hi) for _ in range(n)]
    operands = [draws[0]]
    ops: list[str] = []
    total = operands[0]
    for x in draws[1:]:
        op = "-" if (x <= total and rng.random() < 0.4) else "+"
        ops.append(op)
        operands.append(x)
        total = total + x if op == "+" else total - x
    return WorldProblem(pid, level, operands, ops, template=rng.randrange(len(QUESTION_TEMPLATES)))


def generate_problems(n: int, seed: int, split: str = "train", levels: tuple[int, ...] = (1, 2, 3, 4, 5),
                      level_weights: tuple[float, ...] | None = None) -> list[WorldProblem]:
    """`n` problems, levels drawn uniformly (or by `level_weights`), reproducible from `seed`.

    Splits use disjoint seed streams; `world_models.world_data` also drops train problems of level 2
    and up whose expression is in test.
    """
    rng = random.Random(f"{split}:{seed}")
    out = []
    for i in range(n):
        level = rng.choices(levels, weights=level_weights)[0] if level_weights else levels[i % len(levels)]
        out.append(make_problem(rng, level, f"world-{split}-{seed}-{i:06d}"))
    return out


# ---- the column-by-column arithmetic that the long writer spells out ----

def _digits(x: int, width: int) -> list[int]:
    return [(x // 10**k) % 10 for k in range(width)]


def column_add(a: int, b: int) -> tuple[str, int]:
    """'7+8=15, 4+3+1=8' (units first; higher columns add the carry), then a final carry."""
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    parts, carry = [], 0
    for k in range(width):
        s = da[k] + db[k] + carry
        parts.append(f"{da[k]}+{db[k]}={s}" if k == 0 else f"{da[k]}+{db[k]}+{carry}={s}")
        carry = s // 10
    if carry:
        parts.append(f"carry {carry}")
    return ", ".join(parts), a + b


def column_sub(a: int, b: int) -> tuple[str, int]:
    """'5-2=3, 8-1-0=7'; a column that goes below zero borrows and writes its digit: '3-5 borrow 8'."""
    assert a >= b
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    parts, borrow = [], 0
    for k in range(width):
        lhs = f"{da[k]}-{db[k]}" if k == 0 else f"{da[k]}-{db[k]}-{borrow}"
        d = da[k] - db[k] - (borrow if k else 0)
        if d < 0:
            parts.append(f"{lhs} borrow {d + 10}")
            borrow = 1
        else:
            parts.append(f"{lhs}={d}")
            borrow = 0
    return ", ".join(parts), a - b


def column_work(a: int, op: str, b: int) -> tuple[str, int]:
    return column_add(a, b) if op == "+" else column_sub(a, b)


# ---- the two writers ----

@dataclass
class WriterConfig:
    p_verify: float = 0.3  # after a step, re-check it (redundant)
    p_alternative: float = 0.2  # after an addition, add the other way round (redundant)
    p_wait_step: float = 0.25  # phrase a step as "Wait, we still need to ..." (not redundant)
    rewrite: bool = False  # end each step with what is left ("Now we have 11 - 4 + 4."), a scratchpad
    tags: bool = False  # the plan lists the terms under letters ("A 4, B +9, C -3"), each step names its letter
    # Each operation spelled out column by column ("13+7: 3+7=10, 1+0+1=2, so 13+7=20."). False: the
    # operation as one fact ("First, 13+7=20."), the running total a short-CoT model also keeps, so
    # what makes Long long is the explicit steps and the reflections, not a harder arithmetic format.
    columns: bool = True
    # Both styles open by counting the terms ("4 terms. Okay, let me ..." / "4 terms. Quickly: ..."): the
    # token that picks the style then follows the problem's size, a feature one hop back instead of a
    # count over the prompt (a probe for AdaR1: can DPO make a merge's style depend on the level?).
    count_terms: bool = False


def write_long(p: WorldProblem, rng: random.Random, cfg: WriterConfig | None = None) -> list[Thought]:
    cfg = cfg or WriterConfig()
    # The plan names the last term: "is the operation just done the last one?" then compares two
    # nearby numbers, instead of a lookup back into the prompt (without it the tiny models stopped
    # after two or three operations on longer chains while every step they did write was right).
    last = f"{p.ops[-1]}{p.operands[-1]}"
    opening = count_opening(p) if cfg.count_terms else ""
    if cfg.tags:
        # Each term under a letter: a step finds its operand by its letter (the letter after the last
        # step's one), a content lookup, instead of counting terms in the prompt.
        terms = [str(p.operands[0])] + [f"{op}{x}" for op, x in zip(p.ops, p.operands[1:])]
        listing = ", ".join(f"{TAGS[i]} {t}" for i, t in enumerate(terms))
        thoughts = [Thought(f"{opening}Okay, let me work out {p.expression} one operation at a time: {listing}; "
                            f"the last is {TAGS[len(terms) - 1]}.", "plan")]
    else:
        thoughts = [Thought(f"{opening}Okay, let me work out {p.expression} one operation at a time; the last term is {last}.",
                            "plan")]
    total = p.operands[0]
    for k, (op, x) in enumerate(zip(p.ops, p.operands[1:])):
        if cfg.columns:
            work, new = column_work(total, op, x)
        else:
            new = total + x if op == "+" else total - x
            work = f"{total}{op}{x}={new}"
        verb = "add" if op == "+" else "subtract"
        wait = k > 0 and rng.random() < cfg.p_wait_step
        if cfg.tags:
            head = f"Wait, we still need {TAGS[k + 1]} {op}{x}." if wait else f"{ORDINALS[k]}, {TAGS[k + 1]} {op}{x}."
        else:
            head = f"Wait, we still need to {verb} {x}." if wait else f"{ORDINALS[k]},"
        rest = format_expr([new] + p.operands[k + 2:], p.ops[k + 1:])
        left = f" Now we have {rest}." if cfg.rewrite and k + 1 < len(p.ops) else ""
        body = f"{total}{op}{x}: {work}, so {total}{op}{x}={new}" if cfg.columns else work
        thoughts.append(Thought(f"{head} {body}.{left}", "step"))
        r = rng.random()
        if r < cfg.p_verify:
            thoughts.append(Thought(f"{REDUNDANT_OPENINGS[0]}{total}{op}{x}: {work}. Yes, {new}.", "verify",
                                    redundant=True))
        elif op == "+" and r < cfg.p_verify + cfg.p_alternative:
            alt = column_add(x, total)[0] if cfg.columns else f"{x}+{total}={new}"
            thoughts.append(Thought(f"{REDUNDANT_OPENINGS[1]}{x}+{total}: {alt}, the same {new}.", "alternative",
                                    redundant=True))
        total = new
    thoughts.append(Thought(f"So the answer is \\boxed{{{total}}}.", "final"))
    return thoughts


def long_text(thoughts: list[Thought]) -> str:
    return "\n\n".join(t.text for t in thoughts)


# How the long writer opens its redundant thoughts (re-checks and alternatives); no other thought opens so.
REDUNDANT_OPENINGS = ("Let me double-check ", "Alternatively, ")


def strip_redundant(text: str) -> str:
    """A long solution (the writer's or a model's) without its redundant thoughts: the thoughts
    (blank-line separated) that open as the writer's re-checks and alternatives do. What a Long that
    stopped overthinking would write; the bound under any training that only trims reflections."""
    return "\n\n".join(t for t in text.split("\n\n") if not t.startswith(REDUNDANT_OPENINGS))


def count_opening(p: WorldProblem) -> str:
    """The opening both writers share with `WriterConfig.count_terms`: "4 terms. "."""
    return f"{len(p.operands)} terms. "


def write_short(p: WorldProblem, stepwise: bool = False, count_terms: bool = False) -> str:
    """The concise solution. `stepwise`: one running total per operation, done in the head
    ("Quickly: 7+8=15, 15-9=6."), as a short-CoT model writes; otherwise the whole chain in one step.

    Measured (default-preset sizes, Short fine-tuned 1200 steps from the same base, 30 test problems
    per level): stepwise 100/97/83/67/3% on levels 1-5, one step 87/23/3/10/7%: a tiny model cannot
    add five numbers in its head, but it can keep one running total, and loses track past four terms.
    `count_terms`: open with the number of terms, as the long writer does with `WriterConfig.count_terms`.
    """
    if count_terms:
        return count_opening(p) + write_short(p, stepwise)
    if stepwise:
        return f"Quickly: {_steps(partial_totals(p.operands, p.ops), p.ops, p.operands, 0, len(p.ops))}. " \
               f"The answer is \\boxed{{{p.answer}}}."
    # "In one step, " puts a space token before the expression, as the prompt and the long plan have:
    # copying then starts from a matching token. Starting the answer with the bare expression, the
    # Short model miscopied the second operand of two-operand problems (6% on level 1).
    return f"In one step, {p.expression}={p.answer}. The answer is \\boxed{{{p.answer}}}."


def _steps(totals: list[int], ops: list[str], operands: list[int], start: int, end: int) -> str:
    """Operations start..end-1 as running totals: "12-4=8, 8+9=17"."""
    return ", ".join(f"{totals[k]}{ops[k]}{operands[k + 1]}={totals[k + 1]}" for k in range(start, end))


def write_short_span(p: WorldProblem, start: int, end: int) -> str:
    """Concise text for operations start..end-1, one running total each ("12-4=8, 8+9=17."): the
    short thinker's turns in Long⊗Short."""
    return _steps(partial_totals(p.operands, p.ops), p.ops, p.operands, start, end) + "."


def user_prompt(problem_text: str) -> str:
    return f"{problem_text} {PROMPT_SUFFIX}"


FINISH_SUFFIX = "Finish it concisely and output the final answer within \\boxed{}."


def finish_prompt(problem_text: str, prefix: list[str]) -> str:
    """The user message that asks a model to finish a partial solution (Long⊗Short's Monte Carlo
    rollouts: "the short model asked to finish"). An empty prefix keeps the same form ("(nothing
    yet)"), so every prefix's accuracy, acc_0 included, is measured with one prompt and e_1 is the
    first thought's effect, not a change of prompt (measured at stop 16: with the ordinary prompt
    for acc_0 the plan scored -0.43, with this form +0.06)."""
    body = "\n\n".join(prefix) if prefix else EMPTY_PARTIAL
    return f"{problem_text}\n\nPartial solution:\n{body}\n\n{FINISH_SUFFIX}"


EMPTY_PARTIAL = "(nothing yet)"


def write_short_from(p: WorldProblem, done: int, stepwise: bool = False) -> str:
    """The Short writer finishing after `done` operations of the long solution: the rest in one step
    (or, `stepwise`, one running total per remaining operation)."""
    if done >= len(p.ops):
        return f"The answer is \\boxed{{{p.answer}}}."
    totals = partial_totals(p.operands, p.ops)
    if stepwise:
        return f"Quickly: {_steps(totals, p.ops, p.operands, done, len(p.ops))}. The answer is \\boxed{{{p.answer}}}."
    rest = format_expr([totals[done]] + p.operands[done + 1:], p.ops[done:])
    return f"In one step, {rest}={p.answer}. The answer is \\boxed{{{p.answer}}}."
