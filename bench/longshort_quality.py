"""Long⊗Short's quality on the embedded world: the SFT and RL pairs against the Long model (tokens,
accuracy, the short thinker's share of tokens, AES), mean of 3 seeds with 95% CIs (the Long⊗Short
issue's acceptance figures).

    .venv/bin/python bench/longshort_quality.py                  # seeds 0,1,2, recipes/tiny/longshort.yaml
    .venv/bin/python bench/longshort_quality.py --seeds 0 rl.steps=10

Writes bench/results/longshort_quality.json (top-level `summary`: tokens_ratio_vs_long,
accuracy_delta_vs_long in points, short_thinker_token_share, aes_rl, aes_sft, with CIs; and the
cold-start dialogues' size against the CoTs they came from, at the recipe's tau and at the protocol's
floor, tau = inf; the importance's agreement with the writer's redundant marks) and prints one line. Each seed's chain lives in runs/bench/longshort/seed-<s>/ and resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def protocol_floor(seed_dir: Path) -> dict:
    """The cold-start data's own size (dialogues/stats.json): the dialogues at the recipe's tau and the
    floor at tau = inf (only the forced first thought Long, none where a dialogue skips the long
    thinker), each against the CoTs' tokens, with the short thinker's share; a pair that keeps the
    protocol's turns cannot go far below that floor."""
    stats = json.loads((seed_dir / "dialogues" / "stats.json").read_text())
    floor = next((r for r in stats.get("tau_sweep", []) if r["tau"] == "inf"), {})
    return {"dialogues_tokens_vs_cot": stats.get("tokens_vs_cot"),
            "dialogues_short_token_share": (1 - stats["long_token_share"]
                                            if stats.get("long_token_share") is not None else None),
            "floor_tokens_vs_cot": floor.get("tokens_vs_cot"), "floor_short_token_share": floor.get("short_token_share")}


def importance_agreement(seed_dir: Path) -> dict:
    """The Monte Carlo importance against the world writer's redundant marks (importance/stats.json):
    mean s of the redundant thoughts and of the others, AUROC, and "s <= tau" as a detector."""
    path = seed_dir / "importance" / "stats.json"
    gold = json.loads(path.read_text()).get("gold") or {} if path.is_file() else {}
    keys = {"mean_s_redundant": "s_redundant", "mean_s_other": "s_other", "auroc_other_vs_redundant": "auroc",
            "precision_s_le_tau": "precision_s_le_tau", "recall_s_le_tau": "recall_s_le_tau"}
    return {f"importance_{new}": gold.get(old) for old, new in keys.items()}


def seed_figures(seed_dir: Path) -> dict:
    return {**protocol_floor(seed_dir), **importance_agreement(seed_dir)}


if __name__ == "__main__":
    main("longshort", "hybridcot.longshort.pipeline", "LongShortConfig", "run_longshort", SYSTEMS,
         "tokens_ratio_vs_long,accuracy_delta_vs_long,short_thinker_token_share,aes_rl,aes_sft", summary,
         extra_keys=("short_thinker_token_share", "mean_turns"), seed_extra=seed_figures)
