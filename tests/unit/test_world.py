"""data/world.py: the column arithmetic is right digit by digit, and the writers' marks match their text.

The text format is what the world models are trained on, so these tests parse it as a reader would
(the redundancy marks are the ground truth Long⊗Short's importance estimator is checked against).
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcot.data.world import (
    LEVELS,
    ORDINALS,
    PROMPT_SUFFIX,
    WorldProblem,
    WriterConfig,
    column_add,
    column_sub,
    column_work,
    generate_problems,
    long_text,
    make_problem,
    partial_totals,
    user_prompt,
    write_long,
    write_short,
    write_short_span,
)

SETTINGS = settings(max_examples=150, deadline=None)
naturals = st.integers(min_value=0, max_value=10**7)


def _digits_hi_to_lo(n: int, width: int) -> list[int]:
    return [int(c) for c in str(n).rjust(width, "0")]


def parse_add(text: str, a: int, b: int) -> int:
    """Check every column fact of column_add's text against a and b; return the number it spells."""
    parts = text.split(", ")
    carry_out = None
    if parts[-1].startswith("carry "):
        carry_out = int(parts.pop()[len("carry "):])
    width = max(len(str(a)), len(str(b)))
    assert len(parts) == width
    da, db = _digits_hi_to_lo(a, width)[::-1], _digits_hi_to_lo(b, width)[::-1]
    carry, result_digits = 0, []
    for k, part in enumerate(parts):  # units first
        m = re.fullmatch(r"(\d)\+(\d)=(\d+)" if k == 0 else r"(\d)\+(\d)\+([01])=(\d+)", part)
        assert m, part
        nums = [int(g) for g in m.groups()]
        assert (nums[0], nums[1]) == (da[k], db[k])
        if k:
            assert nums[2] == carry  # the carry written is the one the previous column produced
        s = nums[-1]
        assert s == sum(nums[:-1]) and s <= 19  # a true one-digit fact
        carry = s // 10
        result_digits.append(s % 10)
    assert carry_out == (carry or None)
    return int((str(carry_out) if carry_out else "") + "".join(map(str, reversed(result_digits))))


def parse_sub(text: str, a: int, b: int) -> int:
    """Check every column fact of column_sub's text; return the number its column digits spell."""
    parts = text.split(", ")
    width = len(str(a))
    assert len(parts) == width
    da, db = _digits_hi_to_lo(a, width)[::-1], _digits_hi_to_lo(b, width)[::-1]
    borrow, result_digits = 0, []
    for k, part in enumerate(parts):
        lhs = r"(?P<x>\d)-(?P<y>\d)" if k == 0 else r"(?P<x>\d)-(?P<y>\d)-(?P<b>[01])"
        m = re.fullmatch(lhs + r"(?:=(?P<d>\d)| borrow (?P<bd>\d))", part)
        assert m, part
        x, y = int(m["x"]), int(m["y"])
        assert (x, y) == (da[k], db[k])
        if k:
            assert int(m["b"]) == borrow
        raw = x - y - borrow
        if m["d"] is not None:  # "=d": no borrow needed
            assert raw >= 0 and int(m["d"]) == raw
            borrow, d = 0, raw
        else:
            assert raw < 0 and int(m["bd"]) == raw + 10
            borrow, d = 1, raw + 10
        result_digits.append(d)
    assert borrow == 0  # a >= b: nothing left to borrow from
    return int("".join(map(str, reversed(result_digits))))


# ---- column arithmetic ----

@SETTINGS
@given(naturals, naturals)
def test_column_add_value_and_digits(a: int, b: int) -> None:
    text, value = column_add(a, b)
    assert value == a + b
    assert parse_add(text, a, b) == a + b
    assert column_work(a, "+", b) == (text, value)


@SETTINGS
@given(naturals, naturals)
def test_column_sub_value_and_digits(x: int, y: int) -> None:
    a, b = max(x, y), min(x, y)
    text, value = column_sub(a, b)
    assert value == a - b
    assert parse_sub(text, a, b) == a - b
    assert column_work(a, "-", b) == (text, value)


def test_column_examples() -> None:
    # pinned: the models are trained on exactly this text
    assert column_add(47, 38) == ("7+8=15, 4+3+1=8", 85)
    assert column_add(99, 1) == ("9+1=10, 9+0+1=10, carry 1", 100)
    assert column_add(5, 0) == ("5+0=5", 5)
    assert column_sub(85, 12) == ("5-2=3, 8-1-0=7", 73)
    assert column_sub(53, 25) == ("3-5 borrow 8, 5-2-1=2", 28)
    assert column_sub(100, 1) == ("0-1 borrow 9, 0-0-1 borrow 9, 1-0-1=0", 99)


def test_column_sub_rejects_negative_results() -> None:
    with pytest.raises(AssertionError):
        column_sub(3, 4)


# ---- problems ----

@st.composite
def world_problems(draw: st.DrawFn) -> WorldProblem:
    """Either a generator problem at a drawn level, or an arbitrary chain with non-negative partial totals."""
    if draw(st.booleans()):
        level = draw(st.sampled_from(sorted(LEVELS)))
        return make_problem(random.Random(draw(st.integers(0, 2**32))), level, "p")
    operands = [draw(st.integers(0, 99999))]
    ops: list[str] = []
    total = operands[0]
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from("+-"))
        x = draw(st.integers(0, total if op == "-" else 99999))
        ops.append(op)
        operands.append(x)
        total = total + x if op == "+" else total - x
    return WorldProblem("q", 3, operands, ops, template=draw(st.integers(0, 9)))


writer_configs = st.builds(WriterConfig, p_verify=st.sampled_from([0.0, 0.3, 1.0]),
                           p_alternative=st.sampled_from([0.0, 0.2, 1.0]), p_wait_step=st.sampled_from([0.0, 0.25, 1.0]))

STEP_RE = re.compile(r"(?:(?P<ord>[A-Z][a-z]+),|Wait, we still need to (?P<verb>add|subtract) (?P<wx>\d+)\.) "
                     r"(?P<a>\d+) (?P<op>[+-]) (?P<b>\d+): (?P<work>.+), so (?P=a) (?P=op) (?P=b) = (?P<r>\d+)\.")
VERIFY_RE = re.compile(r"Let me double-check (?P<a>\d+) (?P<op>[+-]) (?P<b>\d+): (?P<work>.+)\. Yes, (?P<r>\d+)\.")
ALT_RE = re.compile(r"Alternatively, (?P<b>\d+) \+ (?P<a>\d+): (?P<work>.+), the same (?P<r>\d+)\.")


@SETTINGS
@given(world_problems(), st.integers(0, 2**32), writer_configs)
def test_write_long_structure_and_redundancy_marks(p: WorldProblem, seed: int, cfg: WriterConfig) -> None:
    thoughts = write_long(p, random.Random(seed), cfg)
    text = long_text(thoughts)
    totals = partial_totals(p.operands, p.ops)

    # thoughts are joined by exactly one blank line and hold none themselves
    assert text.split("\n\n") == [t.text for t in thoughts]
    for t in thoughts:
        assert t.text and t.text == t.text.strip() and "\n" not in t.text

    assert thoughts[0].kind == "plan" and p.expression in thoughts[0].text and not thoughts[0].redundant
    assert thoughts[-1].kind == "final" and thoughts[-1].text == f"So the answer is \\boxed{{{p.answer}}}."
    assert re.findall(r"\\boxed\{(-?\d+)\}", text) == [str(p.answer)]

    steps = [t for t in thoughts if t.kind == "step"]
    assert len(steps) == len(p.ops)
    prev = None
    for t in thoughts[1:-1]:
        assert t.kind in ("step", "verify", "alternative")
        assert t.redundant == (t.kind in ("verify", "alternative"))
        if t.kind == "step":
            m = STEP_RE.fullmatch(t.text)
            assert m, t.text
            k = steps.index(t)
            a, op, b, r = int(m["a"]), m["op"], int(m["b"]), int(m["r"])
            assert (a, op, b, r) == (totals[k], p.ops[k], p.operands[k + 1], totals[k + 1])
            assert m["work"] == column_work(a, op, b)[0]
            if m["ord"]:
                assert m["ord"] == ORDINALS[k]
            else:  # "Wait, we still need to ...": a real step, never the first, never redundant
                assert k > 0 and not t.redundant
                assert (m["verb"], int(m["wx"])) == ("add" if op == "+" else "subtract", b)
            prev = (a, op, b, r, m["work"])
        elif t.kind == "verify":
            assert t.text.startswith("Let me double-check ")
            m = VERIFY_RE.fullmatch(t.text)
            assert m and prev is not None, t.text
            # restates exactly the step just above: same operation, same column work, same result
            assert (int(m["a"]), m["op"], int(m["b"]), int(m["r"]), m["work"]) == prev
            prev = None  # at most one redundant thought per step
        else:
            assert t.text.startswith("Alternatively, ")
            m = ALT_RE.fullmatch(t.text)
            assert m and prev is not None and prev[1] == "+", t.text
            a, b, r = int(m["a"]), int(m["b"]), int(m["r"])
            assert (a, b, r) == (prev[0], prev[2], prev[3])
            assert parse_add(m["work"], b, a) == r  # the other way round really is computed
            prev = None

    # dropping the redundant thoughts leaves a complete solution with the same answer
    kept = [t for t in thoughts if not t.redundant]
    assert [t.kind for t in kept] == ["plan"] + ["step"] * len(p.ops) + ["final"]


def test_writer_probabilities_switch_thought_kinds() -> None:
    p = WorldProblem("x", 5, [50, 20, 10, 30, 5], ["+", "-", "+", "-"])
    none = write_long(p, random.Random(0), WriterConfig(p_verify=0, p_alternative=0, p_wait_step=0))
    assert [t.kind for t in none] == ["plan"] + ["step"] * 4 + ["final"]
    assert not any(t.text.startswith("Wait,") for t in none)
    allv = write_long(p, random.Random(0), WriterConfig(p_verify=1, p_alternative=0, p_wait_step=1))
    assert [t.kind for t in allv] == ["plan"] + ["step", "verify"] * 4 + ["final"]
    assert [t.text.startswith("Wait,") for t in allv if t.kind == "step"] == [False, True, True, True]
    alt = write_long(p, random.Random(0), WriterConfig(p_verify=0, p_alternative=1, p_wait_step=0))
    assert [t.kind for t in alt] == ["plan", "step", "alternative", "step", "step", "alternative", "step", "final"]


def test_default_writer_mixes_all_kinds() -> None:
    rng = random.Random(0)
    kinds: dict[str, int] = {}
    waits = 0
    for p in generate_problems(200, seed=1):
        for t in write_long(p, rng):
            kinds[t.kind] = kinds.get(t.kind, 0) + 1
            waits += t.text.startswith("Wait,")
    assert set(kinds) == {"plan", "step", "verify", "alternative", "final"}
    assert kinds["verify"] > 0.15 * kinds["step"] and kinds["alternative"] > 0.05 * kinds["step"] and waits > 0


@SETTINGS
@given(world_problems())
def test_write_short_ends_in_the_boxed_answer(p: WorldProblem) -> None:
    s = write_short(p)
    assert s.startswith(p.expression + " = ")
    assert s.endswith(f"\\boxed{{{p.answer}}}.")
    assert "\n" not in s


@SETTINGS
@given(world_problems(), st.data())
def test_write_short_span_is_a_true_equation(p: WorldProblem, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(p.ops) - 1))
    end = data.draw(st.integers(start + 1, len(p.ops)))
    lhs, rhs = write_short_span(p, start, end).removesuffix(".").split(" = ")
    tokens = lhs.split(" ")
    value = int(tokens[0])
    for op, x in zip(tokens[1::2], tokens[2::2]):
        value = value + int(x) if op == "+" else value - int(x)
    assert value == int(rhs) == partial_totals(p.operands, p.ops)[end]
    assert int(tokens[0]) == partial_totals(p.operands, p.ops)[start] and len(tokens) == 2 * (end - start) + 1


# ---- the generator ----

def test_generate_problems_is_reproducible_and_split_dependent() -> None:
    def recs(n: int, seed: int, split: str = "train") -> list[dict]:
        return [p.to_record() for p in generate_problems(n, seed=seed, split=split)]

    a = recs(50, 3)
    assert a == recs(50, 3)
    assert [r["problem"] for r in a] != [r["problem"] for r in recs(50, 3, "test")]
    assert [r["problem"] for r in a] != [r["problem"] for r in recs(50, 4)]
    assert len({r["id"] for r in a}) == 50 and a[0]["id"] == "world-train-3-000000"
    assert recs(20, 3) == a[:20]  # a prefix of a bigger set: n does not reshuffle


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(["train", "test", "val"]))
def test_levels_have_their_operand_counts_and_nonnegative_totals(seed: int, split: str) -> None:
    problems = generate_problems(25, seed=seed, split=split)
    assert [p.level for p in problems] == [1, 2, 3, 4, 5] * 5
    for p in problems:
        n, lo, hi = LEVELS[p.level]
        assert len(p.operands) == n and len(p.ops) == n - 1 and set(p.ops) <= {"+", "-"}
        assert all(lo <= x <= hi for x in p.operands)
        totals = partial_totals(p.operands, p.ops)
        assert min(totals) >= 0 and p.answer == totals[-1]
        rec = p.to_record()
        assert rec["answer"] == str(p.answer) and rec["level"] == p.level and rec["source"] == "world"
        assert p.expression in rec["problem"] and eval(p.expression) == p.answer  # noqa: S307


def test_level_weights_and_levels_subset() -> None:
    ps = generate_problems(60, seed=0, levels=(2, 4), level_weights=(0.0, 1.0))
    assert {p.level for p in ps} == {4}
    ps = generate_problems(6, seed=0, levels=(3,))
    assert all(len(p.operands) == 3 for p in ps)
    with pytest.raises(ValueError, match="level must be 1..5"):
        make_problem(random.Random(0), 6, "x")


def test_user_prompt_and_question_templates() -> None:
    p = WorldProblem("x", 2, [47, 38], ["+"], template=0)
    assert p.problem == "What is 47 + 38?"
    assert user_prompt(p.problem) == f"What is 47 + 38? {PROMPT_SUFFIX}"
    assert "\\boxed{}" in PROMPT_SUFFIX
    assert {WorldProblem("x", 2, [1, 2], ["-"], template=t).problem for t in range(5)} == {
        "What is 1 - 2?", "Compute 1 - 2.", "Calculate 1 - 2.", "Evaluate 1 - 2.", "Find the value of 1 - 2."}
