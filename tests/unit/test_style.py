"""adar1/style.py: the long/short rule on the world's writers and on real-model-like texts; eval records carry it."""

from __future__ import annotations

import random

import pytest

from hybridcot.adar1.style import classify_style, opens_with_plan, split_paragraphs
from hybridcot.data.world import generate_problems, long_text, write_long, write_short
from hybridcot.evaluation.metrics import summarize
from hybridcot.evaluation.stage import score_samples


@pytest.mark.parametrize("seed", [0, 1])
def test_world_writers_are_classified_exactly(seed: int) -> None:
    rng = random.Random(seed)
    problems = generate_problems(250, seed=seed, split="train")
    assert {p.level for p in problems} == {1, 2, 3, 4, 5}
    for p in problems:
        long, short = long_text(write_long(p, rng)), write_short(p)
        assert classify_style(long) == "long", long
        assert classify_style(short) == "short", short


def test_level_one_long_text_without_reflection_is_still_long() -> None:
    # One operation: plan, one step, final; the long writer adds no "Wait" to a first step.
    text = "Okay, let me work out 3 + 4 one operation at a time.\n\nFirst, 3 + 4: 7.\n\nSo the answer is \\boxed{7}."
    assert classify_style(text) == "long"
    assert classify_style(text, min_thoughts=10) == "long"  # the plan opener alone decides


R1_LIKE = ("Okay, so I need to find the sum of 17 and 25. Hmm, let me think. 17 + 25 is 42.\n"
           "Wait, let me double-check that: 17 + 20 = 37, plus 5 is 42. Yes.\n</think>\n\n"
           "The sum is $\\boxed{42}$.")
THINK_TAG = "<think>\n17 + 25 = 42\n</think>\nThe answer is \\boxed{42}."
REFLECTS_ONE_LINE = "17 + 25 = 42, but wait: 17 + 25 is 42 indeed. \\boxed{42}"
PARAGRAPHS_WITH_ALTERNATIVE = ("17 + 25 = 42.\n\nAlternatively, 25 + 17 = 42 as well.\n\n"
                               "The answer is \\boxed{42}.")
CRLF_PARAGRAPHS = "Step one: 17 + 25.\r\n\r\nSo \\boxed{42}."
INSTRUCT_ONE_LINE = "To find the sum, add the numbers: 17 + 25 = 42. The answer is $\\boxed{42}$."
LETS_SHORT = "Let's compute: 17 + 25 = 42. So the final answer is \\boxed{42}."
BARE_ANSWER = "\\boxed{42}"
LINES_NO_BLANK = "17 + 25\n= 42\nThe answer is \\boxed{42}."


@pytest.mark.parametrize("text", [R1_LIKE, THINK_TAG, REFLECTS_ONE_LINE, PARAGRAPHS_WITH_ALTERNATIVE,
                                  CRLF_PARAGRAPHS])
def test_real_model_like_long(text: str) -> None:
    assert classify_style(text) == "long"


@pytest.mark.parametrize("text", [INSTRUCT_ONE_LINE, LETS_SHORT, BARE_ANSWER, LINES_NO_BLANK, "", "  \n\n  "])
def test_real_model_like_short(text: str) -> None:
    assert classify_style(text) == "short"


def test_min_thoughts_and_helpers() -> None:
    two = "17 + 25 = 42.\n\nThe answer is \\boxed{42}."
    assert classify_style(two) == "long"
    assert classify_style(two, min_thoughts=3) == "short"  # no plan, no reflection
    assert split_paragraphs("a\n\n\n b \n \t\nc\n") == ["a", "b", "c"]
    assert opens_with_plan("  alright, here goes") and opens_with_plan("I need to add them.")
    assert not opens_with_plan("Okayish") and not opens_with_plan("The plan: okay")
    with pytest.raises(ValueError, match="min_thoughts"):
        classify_style("x", min_thoughts=0)


def test_eval_records_carry_style_and_summary_reports_share_per_level() -> None:
    problems = [{"id": "a", "answer": "7", "level": 1}, {"id": "b", "answer": "42", "level": 5}]
    samples = [[{"text": "3 + 4 = 7. The answer is \\boxed{7}.", "n_tokens": 9}],
               [{"text": R1_LIKE, "n_tokens": 60}, {"text": INSTRUCT_ONE_LINE, "n_tokens": 20}]]
    recs = score_samples(problems, samples)
    assert [r["style"] for r in recs] == ["short", "long", "short"]
    assert [r["correct"] for r in recs] == [True, True, True]
    s = summarize(recs, n_boot=0)
    assert s["style_share"] == {"long": pytest.approx(1 / 3), "short": pytest.approx(2 / 3)}
    assert s["per_level"]["1"]["style_share"] == {"short": 1.0}
    assert s["per_level"]["5"]["style_share"] == {"long": 0.5, "short": 0.5}
    # a caller's `extra` still wins (e.g. a stage that knows the style another way)
    assert score_samples(problems[:1], samples[:1], extra={"style": "long"})[0]["style"] == "long"
