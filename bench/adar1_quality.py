"""AdaR1's quality on the embedded world: tokens and accuracy of AdaR1 (and every baseline) against
the Long model, mean of 3 seeds with 95% CIs (the AdaR1 issue's acceptance figures).

    .venv/bin/python bench/adar1_quality.py                      # seeds 0,1,2, recipes/tiny/adar1.yaml
    .venv/bin/python bench/adar1_quality.py --seeds 0 sample.limit=300

Writes bench/results/adar1_quality.json (top-level `summary`: tokens_ratio_vs_long,
accuracy_delta_vs_long in points, their CIs, the Merge / DPO-shortest comparisons, and the bound any
Long/Short style picker has on the same eval: `oracle_router_*` and `oracle_per_level_*`) and prints
one line. Each seed's chain lives in runs/bench/adar1/seed-<s>/ and resumes.
"""

from __future__ import annotations

from pathlib import Path

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


def style_bound(seed_dir: Path) -> dict:
    """The best any Long/Short style picker could do on this seed's eval (metrics.style_oracle on the
    chain's eval/long and eval/short samples): an ideal per-problem router, and the best one style per
    level within 2 points of Long. AdaR1's hybrid picks a style per problem, so it cannot beat these."""
    from hybridcot.evaluation.metrics import style_oracle
    from hybridcot.io import read_jsonl

    o = style_oracle(read_jsonl(seed_dir / "eval" / "long" / "samples.jsonl"),
                     read_jsonl(seed_dir / "eval" / "short" / "samples.jsonl"))
    out = {f"oracle_router_{k}": o["per_problem"][k] for k in ("tokens_ratio_vs_long", "accuracy_delta_vs_long")}
    if o["per_level"]:
        out.update({f"oracle_per_level_{k}": o["per_level"][k] for k in ("tokens_ratio_vs_long", "accuracy_delta_vs_long")})
    return out


if __name__ == "__main__":
    main("adar1", "hybridcot.adar1.pipeline", "AdaR1Config", "run_adar1", SYSTEMS,
         "tokens_ratio_vs_long,accuracy_delta_vs_long,aes,oracle_per_level_tokens_ratio_vs_long", summary,
         seed_extra=style_bound)
