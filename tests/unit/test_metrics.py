"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from hybridcot.evaluation.metrics import (
    aes,
    bootstrap_ci,
    mean_ci_over_seeds,
    per_problem_accuracy,
    relative,
    style_oracle,
    summarize,
)
from hybridcot.io import HybridcotError


def rec(pid, level, sample, correct, n_tokens, thinking=False, finish="stop", text="x", **extra):
    return {"id": pid, "level": level, "sample": sample, "text": text, "n_tokens": n_tokens,
            "n_chars": len(text), "extracted": None, "correct": correct, "finish_reason": finish,
            "thinking": thinking, **extra}


@pytest.fixture
def records():
    # p1 (level 1): 2/2 correct, 10 and 20 tokens, one thinking.
    # p2 (level 3): 1/2 correct, 30 and 60 tokens, one truncated, none thinking.
    return [
        rec("p1", 1, 0, True, 10, thinking=True, text="abcd"),
        rec("p1", 1, 1, True, 20, text="ab"),
        rec("p2", 3, 0, False, 30, finish="length", text="abcdef"),
        rec("p2", 3, 1, True, 60, text="abcdefgh"),
    ]


def test_summarize_hand_computed(records):
    s = summarize(records, n_boot=200, seed=0)
    assert s["accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["mean_tokens"] == pytest.approx((10 + 20 + 30 + 60) / 4)
    assert s["mean_chars"] == pytest.approx((4 + 2 + 6 + 8) / 4)
    assert s["thinking_ratio"] == pytest.approx(0.25)
    assert s["truncated"] == pytest.approx(0.25)
    assert s["n_problems"] == 2 and s["n_samples"] == 4 and s["samples_per_problem"] == 2
    assert set(s["per_level"]) == {"1", "3"}
    assert s["per_level"]["1"] == {"accuracy": 1.0, "mean_tokens": 15.0, "n": 1, "n_samples": 2,
                                   "thinking_ratio": 0.5}
    assert s["per_level"]["3"]["accuracy"] == pytest.approx(0.5)
    assert s["per_level"]["3"]["mean_tokens"] == pytest.approx(45.0)
    assert s["per_level"]["3"]["thinking_ratio"] == 0.0
    lo, hi = s["accuracy_ci"]
    # Two problems with accuracies 1.0 and 0.5: every resample mean lies in [0.5, 1.0].
    assert 0.5 <= lo <= s["accuracy"] <= hi <= 1.0
    assert "per_problem" not in s


def test_accuracy_weighs_problems_not_samples():
    # p1: 1 sample right; p2: 3 samples wrong. Per-sample mean = 0.25, per-problem = 0.5.
    rs = [rec("p1", None, 0, True, 5)] + [rec("p2", None, i, False, 5) for i in range(3)]
    s = summarize(rs, n_boot=50)
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["per_level"] == {}
    assert s["samples_per_problem"] == [1, 3]


def test_per_problem_accuracy(records):
    assert per_problem_accuracy(records) == {"p1": 1.0, "p2": 0.5}


def test_style_share_reported_when_present():
    rs = [rec("a", 1, 0, True, 5, style="long"), rec("b", 1, 0, True, 5, style="short"),
          rec("c", 2, 0, True, 5, style="long")]
    s = summarize(rs, n_boot=10)
    assert s["style_share"] == {"long": pytest.approx(2 / 3), "short": pytest.approx(1 / 3)}
    assert s["per_level"]["2"]["style_share"] == {"long": 1.0}


def test_summarize_rejects_empty_and_malformed():
    with pytest.raises(HybridcotError):
        summarize([])
    with pytest.raises(HybridcotError, match="record 0"):
        summarize([{"id": "a"}])


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 0.5, 1]
    a = bootstrap_ci(values, n_boot=500, seed=3)
    b = bootstrap_ci(values, n_boot=500, seed=3)
    assert a == b
    # Continuous values: another seed gives (slightly) different quantiles.
    spread = [0.1 * i + 0.013 * i * i for i in range(12)]
    assert bootstrap_ci(spread, 300, seed=0) != bootstrap_ci(spread, 300, seed=1)
    mean = sum(values) / len(values)
    assert a[0] < mean < a[1]
    assert 0 <= a[0] and a[1] <= 1
    # A wider alpha gives a narrower interval.
    n = bootstrap_ci(values, n_boot=500, seed=3, alpha=0.5)
    assert a[0] <= n[0] and n[1] <= a[1]


def test_bootstrap_ci_degenerate_cases():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([1, 1, 1], n_boot=100) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_mean_ci_over_seeds_t_interval():
    m, lo, hi = mean_ci_over_seeds([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3: half width = t_{0.975, 2} / sqrt(3) = 4.303 / 1.732 = 2.484
    assert m == 2.0
    assert hi - m == pytest.approx(4.3027 / math.sqrt(3), rel=1e-3)
    assert m - lo == pytest.approx(hi - m)
    assert mean_ci_over_seeds([0.4]) == (0.4, 0.4, 0.4)


def test_relative_and_aes_hand_computed():
    # Base: A=0.8, L=1000. System: A=0.84, L=400 -> ΔA = 0.05, ΔL = 0.6, AES = 0.6 + 3*0.05 = 0.75.
    dA, dL = relative(0.84, 400, 0.8, 1000)
    assert dA == pytest.approx(0.05) and dL == pytest.approx(0.6)
    assert aes(dA, dL) == pytest.approx(0.75)
    # Accuracy loss: A=0.6 -> ΔA = -0.25; L=1200 -> ΔL = -0.2; AES = -0.2 + 5*(-0.25) = -1.45.
    dA, dL = relative(0.6, 1200, 0.8, 1000)
    assert dA == pytest.approx(-0.25) and dL == pytest.approx(-0.2)
    assert aes(dA, dL) == pytest.approx(-1.45)
    assert aes(dA, dL, eta=2.0) == pytest.approx(-1.65)
    # ΔA = 0 takes the "gain" branch.
    assert aes(0.0, 0.5) == pytest.approx(0.5)
    # The base against itself.
    assert relative(0.8, 1000, 0.8, 1000) == (0.0, 0.0)


def test_relative_guards_zero_base():
    assert relative(0.0, 0.0, 0.0, 0.0) == (0.0, 0.0)
    dA, dL = relative(0.5, 10, 0.0, 0.0)
    assert dA is None and dL is None
    assert aes(dA, 0.3) is None and aes(0.1, dL) is None


def test_summarize_without_bootstrap(records):
    assert summarize(records, n_boot=0)["accuracy_ci"] is None


def test_style_oracle_hand_computed():
    # Long: right everywhere, 100/200/300 tokens on levels 1/2/3. Short: 10/20/30 tokens, right on
    # level 1, half right on level 2 (two problems), wrong on level 3.
    long = [rec("a", 1, 0, True, 100), rec("b", 2, 0, True, 200), rec("c", 2, 0, True, 200), rec("d", 3, 0, True, 300)]
    short = [rec("a", 1, 0, True, 10), rec("b", 2, 0, True, 20), rec("c", 2, 0, False, 20), rec("d", 3, 0, False, 30),
             rec("z", 1, 0, True, 1)]  # only in one run: left out
    o = style_oracle(long, short, max_drop=0.0)
    assert o["n"] == 4
    pp = o["per_problem"]  # a, b from Short; c, d from Long
    assert pp["accuracy"] == 1.0 and pp["mean_tokens"] == pytest.approx((10 + 20 + 200 + 300) / 4)
    assert pp["tokens_ratio_vs_long"] == pytest.approx(530 / 800) and pp["accuracy_delta_vs_long"] == 0.0
    assert o["per_level"]["short_levels"] == [1] and o["per_level"]["mean_tokens"] == pytest.approx(710 / 4)
    loose = style_oracle(long, short, max_drop=0.25)  # level 2 to Short costs 25 points: allowed now
    assert loose["per_level"]["short_levels"] == [1, 2]
    assert loose["per_level"]["accuracy_delta_vs_long"] == pytest.approx(-25.0)
    assert loose["per_level"]["mean_tokens"] == pytest.approx((10 + 20 + 20 + 300) / 4)
    no_level = style_oracle([{**r, "level": None} for r in long], short)
    assert no_level["per_level"] is None and no_level["per_problem"] == pp
    with pytest.raises(HybridcotError, match="share no problem id"):
        style_oracle(long, [rec("q", 1, 0, True, 5)])
