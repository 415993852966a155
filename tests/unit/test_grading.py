"""The grader: boxed extraction, the plain-number fast path, math-verify in its worker, time limits."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridcot import grading
from hybridcot.grading import (
    THINKING_KEYWORDS,
    GradeResult,
    extract_answer,
    extract_boxed,
    extract_gsm8k_answer,
    grade,
    grade_many,
    math_verify_statuses,
    shows_thinking,
)

# ---------------------------------------------------------------- extraction

_ATOM = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="{}\\", blacklist_categories=("Cs",)), min_size=1, max_size=6),
    st.sampled_from(["\\frac", "\\sqrt", "\\pi", "\\cdot ", "\\text", "\\{", "\\}", "\\boxed"]),
)
# Content with balanced (unescaped) braces; never ends in a lone backslash.
BALANCED = st.recursive(
    st.lists(_ATOM, max_size=4).map("".join),
    lambda inner: st.lists(st.one_of(inner.map(lambda s: "{" + s + "}"), _ATOM), max_size=4).map("".join),
    max_leaves=12,
)
NO_BRACES = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=40)


@given(prefix=NO_BRACES, content=BALANCED, suffix=NO_BRACES)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_extract_boxed_round_trips_balanced_content(prefix: str, content: str, suffix: str) -> None:
    assert extract_boxed(prefix + "\\boxed{" + content + "}" + suffix) == content


@given(a=BALANCED, b=BALANCED, mid=NO_BRACES)
@settings(max_examples=200)
def test_last_boxed_wins(a: str, b: str, mid: str) -> None:
    assert extract_boxed(f"\\boxed{{{a}}}{mid}\\boxed{{{b}}} done") == b


@given(content=BALANCED, extra=st.integers(1, 3))
def test_unbalanced_gives_none(content: str, extra: int) -> None:
    assert extract_boxed("so \\boxed{" + content + "{" * extra + "}") is None


@pytest.mark.parametrize("text,expected", [
    ("The answer is \\boxed{42}.", "42"),
    ("\\boxed {7}", "7"),
    ("\\fbox{x+1}", "x+1"),
    ("\\boxed{\\frac{1}{2}} then \\boxed{\\dfrac{3}{4}}", "\\dfrac{3}{4}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{\\boxed{5}}", "\\boxed{5}"),
    ("no answer here", None),
    ("\\boxed{1} and finally \\boxed{2", None),  # the final box was cut off
    ("\\boxed", None),
])
def test_extract_boxed_examples(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_extract_gsm8k_answer() -> None:
    assert extract_gsm8k_answer("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert extract_gsm8k_answer("...\n#### $1,234") == "1234"
    with pytest.raises(ValueError):
        extract_gsm8k_answer("no final line 18")
    with pytest.raises(ValueError):
        extract_gsm8k_answer("work\n####   ")


def test_extract_answer_fallback() -> None:
    text = "We get 3 apples, then 1,250 pears."
    assert extract_answer(text) is None
    assert extract_answer(text, fallback_last_number=True) == "1250"
    assert extract_answer("x = -2.5 and \\boxed{7}", fallback_last_number=True) == "7"
    assert extract_answer("nothing", fallback_last_number=True) is None


# ---------------------------------------------------------------- plain numbers (no worker involved)


def _formatted(n: int, draw) -> str:
    s = f"{n:,}" if draw(st.booleans()) else str(n)
    if draw(st.booleans()):
        s += draw(st.sampled_from([".0", ".00"]))
    if draw(st.booleans()):
        s = f"${s}$" if draw(st.booleans()) else f"\\${s}"
    return s


@given(n=st.integers(-10**12, 10**12), data=st.data())
@settings(max_examples=300)
def test_formatted_integers_grade_by_value(n: int, data) -> None:
    pred = _formatted(n, data.draw)
    gold = _formatted(n, data.draw)
    r = grade(f"Thus \\boxed{{{pred}}}.", gold)
    assert r == GradeResult(True, pred, "correct")
    assert grade(f"Thus \\boxed{{{pred}}}.", str(n + 1)).reason == "wrong"


def test_fast_path_is_fast_and_never_uses_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_get_worker", lambda: pytest.fail("plain numbers went to the worker"))
    responses = [f"Step one.\n\nSo the total is \\boxed{{{i * 7919 % 100003}}}." for i in range(20000)]
    golds = [str(i * 7919 % 100003 + (i % 2)) for i in range(20000)]
    t = time.perf_counter()
    results = grade_many(responses, golds)
    elapsed = time.perf_counter() - t
    assert [r.correct for r in results] == [i % 2 == 0 for i in range(20000)]
    assert elapsed < 1.0, f"20k plain-number grades took {elapsed:.2f}s"


@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(-3, 3)), min_size=1, max_size=30))
@settings(max_examples=5, deadline=None)
def test_fast_path_agrees_with_math_verify_on_ints(pairs: list[tuple[int, int]]) -> None:
    preds = [str(a) for a, _ in pairs]
    golds = [str(a + d) for a, d in pairs]
    fast = [r.reason for r in grade_many([f"\\boxed{{{p}}}" for p in preds], golds)]
    assert math_verify_statuses(preds, golds) == fast


# ---------------------------------------------------------------- math-verify in the worker


@pytest.mark.parametrize("pred,gold,correct", [
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{1}{2}", "\\frac12", True),
    ("\\dfrac{3}{4}", "0.7", False),
    ("\\{2, 1\\}", "\\{1,2\\}", True),
    ("\\{1, 3\\}", "\\{1,2\\}", False),
    ("(1, 2]", "(1,2]", True),
    ("[1, 2)", "(1,2]", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left(3,\\frac{\\pi}{2}\\right)", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("0.1234567", "0.1234568", True),  # math-verify rounds to 6 decimals; the fast path defers to it
])
def test_math_verify_cases(pred: str, gold: str, correct: bool) -> None:
    r = grade(f"So the answer is $\\boxed{{{pred}}}$.", gold)
    assert (r.correct, r.extracted) == (correct, pred)
    assert r.reason == ("correct" if correct else "wrong")


def test_no_answer() -> None:
    assert grade("I think it is 5", "5") == GradeResult(False, None, "no_answer")
    assert grade("I think it is 5", "5", fallback_last_number=True).correct


def test_adversarial_input_times_out_and_grader_recovers() -> None:
    assert grade("\\boxed{\\frac{2}{4}}", "0.5").correct  # warm the worker up
    t = time.perf_counter()
    r = grade("\\boxed{9^{9^{9^{9}}}}", "5", timeout=1.0)
    assert time.perf_counter() - t < 1.0 + 2.0
    assert not r.correct and r.reason in ("timeout", "wrong")
    # a batch with the bad job in the middle: the jobs around it are still graded
    results = grade_many(["\\boxed{\\sqrt{4}}", "\\boxed{9^{9^{9}}}", "\\boxed{\\frac{6}{3}}"], ["2", "7", "2"], timeout=1.0)
    assert [r.reason for r in results] in (["correct", "timeout", "correct"], ["correct", "wrong", "correct"])
    assert grade("\\boxed{\\frac{1}{3}}", "2/6").correct


def test_grading_from_other_threads() -> None:
    results: list[GradeResult] = []

    def work(k: int) -> None:
        results.append(grade(f"\\boxed{{\\frac{{{k}}}{{2}}}}", str(k / 2)))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert len(results) == 4 and all(r.correct for r in results)


def test_grade_many_checks_lengths() -> None:
    with pytest.raises(ValueError):
        grade_many(["\\boxed{1}"], ["1", "2"])
    assert grade_many([], []) == []


# ---------------------------------------------------------------- thinking keywords


@pytest.mark.parametrize("text,expected", [
    ("Wait, that is wrong.", True),
    ("Let me double-check 12 + 5.", True),
    ("let me  verify this", True),
    ("Hmmm, odd.", True),
    ("ALTERNATIVELY, add them.", True),
    ("12 + 5 = 17. The answer is \\boxed{17}.", False),
    ("The waiter brought a verification form.", False),  # whole words only
])
def test_shows_thinking(text: str, expected: bool) -> None:
    assert shows_thinking(text) is expected


def test_every_keyword_counts() -> None:
    for k in THINKING_KEYWORDS:
        assert shows_thinking(f"So. {k.upper()} then.")


def test_worker_killed_from_outside_is_replaced() -> None:
    assert grade("\\boxed{\\frac{4}{8}}", "1/2").correct
    worker = grading._get_worker()
    worker.proc.kill()
    worker.proc.wait()
    assert grade("\\boxed{\\frac{4}{8}}", "1/2").reason == "correct"
    assert grading._get_worker().proc.poll() is None


def test_empty_box_and_unreadable_gold() -> None:
    assert grade("\\boxed{ }", "5") == GradeResult(False, " ", "no_answer")
    assert grade("\\boxed{x}", "").reason == "error"


def test_interrupted_batch_does_not_desync_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = grading._get_worker()
    real_poll, calls = worker.rx.poll, []

    def poll(t: float) -> bool:
        calls.append(t)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_poll(t)

    monkeypatch.setattr(worker.rx, "poll", poll)
    with pytest.raises(KeyboardInterrupt):
        grade_many(["\\boxed{\\frac{1}{2}}", "\\boxed{\\frac{1}{3}}", "\\boxed{\\frac{1}{4}}"], ["0.5", "0.5", "0.5"])
    results = grade_many(["\\boxed{\\frac{1}{5}}", "\\boxed{\\frac{1}{2}}"], ["0.5", "0.5"])
    assert [r.reason for r in results] == ["wrong", "correct"]
