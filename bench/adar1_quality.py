"""AdaR1's quality on the embedded world: tokens and accuracy of AdaR1 (and every baseline) against
the Long model, mean of 3 seeds with 95% CIs (the AdaR1 issue's acceptance figures).

    .venv/bin/python bench/adar1_quality.py                      # seeds 0,1,2, recipes/tiny/adar1.yaml
    .venv/bin/python bench/adar1_quality.py --seeds 0 sample.limit=300

Writes bench/results/adar1_quality.json (top-level `summary`: tokens_ratio_vs_long,
accuracy_delta_vs_long in points, their CIs, and the Merge / DPO-shortest comparisons) and prints
one line. Each seed's chain lives in runs/bench/adar1/seed-<s>/ and resumes.
"""

from __future__ import annotations

from _quality import main, pick

SYSTEMS = ["short", "merge", "dpo_shortest", "merge_sft", "group_only", "adar1"]


def summary(agg: dict) -> dict:
    out = {}
    for key in ("tokens_ratio_vs_long", "accuracy_delta_vs_long", "aes"):
        out[key], out[f"{key}_ci"] = pick(agg, "adar1", key)
    acc, _ = pick(agg, "adar1", "accuracy")
    merge_acc, _ = pick(agg, "merge", "accuracy")
    tok, _ = pick(agg, "adar1", "mean_tokens")
    dpo_tok, _ = pick(agg, "dpo_shortest", "mean_tokens")
    out["more_accurate_than_merge"] = None if acc is None or merge_acc is None else acc > merge_acc
    out["shorter_than_dpo_shortest"] = None if tok is None or dpo_tok is None else tok < dpo_tok
    return out


if __name__ == "__main__":
    main("adar1", "hybridcot.adar1.pipeline", "AdaR1Config", "run_adar1", SYSTEMS,
         "tokens_ratio_vs_long,accuracy_delta_vs_long,aes", summary)
