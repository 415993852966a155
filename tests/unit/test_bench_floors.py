"""bench/floors.py on a handful of problems: the protocol's and the style picker's floors from the
writers' texts, counted with a stand-in tokenizer (one token per character)."""

from __future__ import annotations

import random

from conftest import load_bench
from hybridcot.data import world as W


def test_floors_count_what_each_thinker_writes() -> None:
    floors = load_bench("floors")
    problems = [p for p in W.generate_problems(50, 3) if p.level in (1, 5)]
    rng = random.Random(0)
    cfg = W.WriterConfig(p_verify=1.0, p_alternative=0.0, tags=True, count_terms=True)
    thoughts = [W.write_long(p, rng, cfg) for p in problems]
    short = [W.write_short(p, stepwise=True, count_terms=True) for p in problems]
    out = floors.floors(problems, thoughts, short, len)
    long_chars = sum(len(W.long_text(t)) for t in thoughts) / len(problems)
    assert out["long_tokens"] == long_chars
    # at tau = inf the long thinker writes the plan and its tags, nothing else
    plans = sum(len(t[0].text) + len("<think></think>") for t in thoughts) / len(problems)
    assert out["dialogue_long_thinker_tokens"] == plans
    assert 0 < out["dialogue_ratio_vs_long"] < 1 and 0 < out["dialogue_short_share"] < 1
    # levels 2-4 have no problems here: the style bound then takes levels 1 and 5 only
    lv = {k: [p for p in problems if p.level == k] for k in (1, 5)}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    l1 = mean([len(s) for p, s in zip(problems, short) if p.level == 1])
    l5 = mean([len(W.long_text(t)) for p, t in zip(problems, thoughts) if p.level == 5])
    long1 = mean([len(W.long_text(t)) for p, t in zip(problems, thoughts) if p.level == 1])
    assert lv[1] and lv[5]
    assert abs(out["adar1_short_1_3_ratio_vs_long"] - (l1 + l5) / (long1 + l5)) < 1e-9
    assert out["adar1_short_1_3_lean_ratio_vs_long"] < out["adar1_short_1_3_ratio_vs_long"]  # every step re-checked

    compact = [floors.variant_thoughts(p, t, True, False) for p, t in zip(problems, thoughts)]
    checked = [floors.variant_thoughts(p, t, False, True) for p, t in zip(problems, thoughts)]
    assert floors.floors(problems, compact, short, len)["dialogue_long_thinker_tokens"] < plans
    extra = floors.floors(problems, checked, short, len)
    assert extra["long_tokens"] > out["long_tokens"] and extra["dialogue_long_thinker_tokens"] == plans
    assert all(W.strip_redundant(W.long_text(c)) == W.strip_redundant(W.long_text(t)) for c, t in zip(checked, thoughts))
