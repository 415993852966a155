"""Long⊗Short's quality on the embedded world: the SFT and RL pairs against the Long model (tokens,
accuracy, the short thinker's share of tokens, AES), mean of 3 seeds with 95% CIs (the Long⊗Short
issue's acceptance figures).

    .venv/bin/python bench/longshort_quality.py                  # seeds 0,1,2, recipes/tiny/longshort.yaml
    .venv/bin/python bench/longshort_quality.py --seeds 0 rl.steps=10

Writes bench/results/longshort_quality.json (top-level `summary`: tokens_ratio_vs_long,
accuracy_delta_vs_long in points, short_thinker_token_share, aes_rl, aes_sft, with CIs) and prints
one line. Each seed's chain lives in runs/bench/longshort/seed-<s>/ and resumes.
"""

from __future__ import annotations

from _quality import main, pick

SYSTEMS = ["short", "longshort_sft", "longshort_rl"]


def summary(agg: dict) -> dict:
    final = "longshort_rl" if "longshort_rl" in agg else "longshort_sft"
    out = {"system": final}
    for key in ("tokens_ratio_vs_long", "accuracy_delta_vs_long", "short_thinker_token_share"):
        out[key], out[f"{key}_ci"] = pick(agg, final, key)
    out["aes_rl"], out["aes_rl_ci"] = pick(agg, "longshort_rl", "aes")
    out["aes_sft"], out["aes_sft_ci"] = pick(agg, "longshort_sft", "aes")
    return out


if __name__ == "__main__":
    main("longshort", "hybridcot.longshort.pipeline", "LongShortConfig", "run_longshort", SYSTEMS,
         "tokens_ratio_vs_long,accuracy_delta_vs_long,short_thinker_token_share,aes_rl,aes_sft", summary,
         extra_keys=("short_thinker_token_share", "mean_turns"))
