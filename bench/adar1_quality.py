"""AdaR1's quality on the embedded world: tokens and accuracy of AdaR1 (and every baseline) against
the Long model, mean of 3 seeds with 95% CIs (the AdaR1 issue's acceptance figures).

    .venv/bin/python bench/adar1_quality.py                      # seeds 0,1,2, recipes/tiny/adar1.yaml
    .venv/bin/python bench/adar1_quality.py --seeds 0 sample.limit=300

Writes bench/results/adar1_quality.json (top-level `summary`: tokens_ratio_vs_long,
accuracy_delta_vs_long in points, their CIs, the Merge / DPO-shortest comparisons, and the bound any
Long/Short style picker has on the same eval: `oracle_router_*` and `oracle_per_level_*`, and the same
with Long's redundant thoughts stripped, `lean_*`) and prints
one line. Each seed's chain lives in runs/bench/adar1/seed-<s>/ and resumes.
"""

from __future__ import annotations

from pathlib import Path

from _quality import main, pick

SYSTEMS = ["short", "merge", "dpo_shortest", "merge_sft", "group_only", "adar1", "adar1_onpolicy"]


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
    # the comparisons seed by seed too (how many seeds of those run both systems agree)
    out["more_accurate_than_merge_seeds"] = _seeds_where(agg, "adar1", "merge", "accuracy", lambda a, b: a > b)
    out["shorter_than_dpo_shortest_seeds"] = _seeds_where(agg, "adar1", "dpo_shortest", "mean_tokens",
                                                          lambda a, b: a < b)
    # the paper's ablation: bi-level against group-level only, on length at equal or better accuracy
    g_acc, _ = pick(agg, "group_only", "accuracy")
    g_tok, _ = pick(agg, "group_only", "mean_tokens")
    for key in ("tokens_ratio_vs_long", "accuracy_delta_vs_long"):
        v, ci = pick(agg, "group_only", key)
        if v is not None:
            out[f"group_only_{key}"], out[f"group_only_{key}_ci"] = v, ci
    out["shorter_than_group_only"] = None if tok is None or g_tok is None else tok < g_tok
    out["at_least_as_accurate_as_group_only"] = None if acc is None or g_acc is None else acc >= g_acc
    out["shorter_than_group_only_seeds"] = _seeds_where(agg, "adar1", "group_only", "mean_tokens", lambda a, b: a < b)
    # the Long-style share of AdaR1's answers per difficulty level (mean over seeds): does it rise?
    levels = sorted((k.rsplit("_", 1)[1] for k in (agg.get("adar1") or {}) if k.startswith("long_style_share_")),
                    key=lambda lv: (len(lv), lv))
    if levels:
        share = [pick(agg, "adar1", f"long_style_share_{lv}")[0] for lv in levels]
        out["long_style_share_levels"] = levels
        out["long_style_share_by_level"] = share
        out["long_style_share_rises"] = share[-1] > share[0] and all(b >= a for a, b in zip(share, share[1:]))
    # the recipe's on-policy instance rounds (`rounds:`, our extension) after AdaR1's one pass, where run
    for key in ("tokens_ratio_vs_long", "accuracy_delta_vs_long", "aes"):
        v, ci = pick(agg, "adar1_onpolicy", key)
        if v is not None:
            out[f"onpolicy_{key}"], out[f"onpolicy_{key}_ci"] = v, ci
    return out


def _seeds_where(agg: dict, a: str, b: str, key: str, test) -> list[int] | None:
    """[seeds where test(a's key, b's key) holds, of the seeds that ran both] as [count, of], or None.
    Per-seed lists are aligned only when both systems ran on every seed, so otherwise None."""
    va = ((agg.get(a) or {}).get(key) or {}).get("per_seed")
    vb = ((agg.get(b) or {}).get(key) or {}).get("per_seed")
    if not va or not vb or len(va) != len(vb):
        return None
    return [sum(bool(test(x, y)) for x, y in zip(va, vb)), len(va)]


def style_bound(seed_dir: Path, count_tokens=None) -> dict:
    """The best any Long/Short style picker could do on this seed's eval (metrics.style_oracle on the
    chain's eval/long and eval/short samples): an ideal per-problem router, and the best one style per
    level within 2 points of Long. AdaR1's hybrid picks a style per problem, so it cannot beat these.

    The same two bounds with Long's answers stripped of their re-checks and alternatives
    (`world.strip_redundant`), `lean_*`: what a picker could reach if training also removed every
    redundant thought Long writes, the most AdaR1's instance-level pairs can trim. `lean_long_*` is
    Long's own stripped length. Ratios are to Long's real tokens; `count_tokens(text)` defaults to the
    seed's world tokenizer (no lean bounds without one)."""
    from hybridcot.data.world import strip_redundant
    from hybridcot.evaluation.metrics import style_oracle
    from hybridcot.io import read_jsonl

    long = read_jsonl(seed_dir / "eval" / "long" / "samples.jsonl")
    short = read_jsonl(seed_dir / "eval" / "short" / "samples.jsonl")
    o = style_oracle(long, short)
    out = {f"oracle_router_{k}": o["per_problem"][k] for k in ("tokens_ratio_vs_long", "accuracy_delta_vs_long")}
    if o["per_level"]:
        out.update({f"oracle_per_level_{k}": o["per_level"][k] for k in ("tokens_ratio_vs_long", "accuracy_delta_vs_long")})
    count_tokens = count_tokens or _world_token_counter(seed_dir)
    if count_tokens is None:
        return out
    lean = [{**r, "n_tokens": r["n_tokens"] - (count_tokens(r["text"]) - count_tokens(strip_redundant(r["text"])))}
            for r in long]
    ids = {r["id"] for r in short}
    real_tok = sum(r["n_tokens"] for r in long if r["id"] in ids)
    scale = sum(r["n_tokens"] for r in lean if r["id"] in ids) / real_tok if real_tok else None
    if scale is None:
        return out
    lo = style_oracle(lean, short)
    out["lean_long_tokens_ratio_vs_long"] = scale
    for name, key in (("router", "per_problem"), ("per_level", "per_level")):
        if lo[key]:
            out[f"lean_{name}_tokens_ratio_vs_long"] = lo[key]["tokens_ratio_vs_long"] * scale
            out[f"lean_{name}_accuracy_delta_vs_long"] = lo[key]["accuracy_delta_vs_long"]
    return out


def _world_token_counter(seed_dir: Path):
    """len(tokens) of a text under the seed's world tokenizer, or None without a built world."""
    from _quality import world_dir

    d = world_dir(seed_dir)
    if d is None or not (d / "tokenizer").is_dir():
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


if __name__ == "__main__":
    main("adar1", "hybridcot.adar1.pipeline", "AdaR1Config", "run_adar1", SYSTEMS,
         "tokens_ratio_vs_long,accuracy_delta_vs_long,aes,oracle_per_level_tokens_ratio_vs_long,"
         "lean_per_level_tokens_ratio_vs_long,onpolicy_tokens_ratio_vs_long,onpolicy_accuracy_delta_vs_long", summary,
         extra_keys=("long_style_share",), seed_extra=style_bound)
