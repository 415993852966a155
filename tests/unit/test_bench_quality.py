"""bench/longshort_quality.py and bench/_quality.py without running chains: the summary over seeds
(relative figures and CIs) and the cold-start data's size read from each seed's dialogues."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import load_bench
from hybridcot.data import world as W
from hybridcot.io import write_json, write_jsonl
from hybridcot.longshort.dialogues import DialoguesConfig, run_dialogues

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # the scripts import _quality
    monkeypatch.delitem(sys.modules, "_quality", raising=False)
    return load_bench("longshort_quality")


def _seed_dir(root: Path, seed: int, tokenizer: Path) -> Path:
    import random

    rng = random.Random(seed)
    rows = []
    for p in W.generate_problems(10, seed=seed):
        th = W.write_long(p, rng)
        rows.append({"id": p.id, "problem": p.problem, "answer": str(p.answer), "level": p.level,
                     "thoughts": [{"text": t.text} for t in th], "s": [0.3 if t.kind == "step" else -0.2 for t in th]})
    out = root / f"seed-{seed}"
    write_jsonl(out / "importance" / "importance.jsonl", rows)
    run_dialogues(DialoguesConfig(input=str(out / "importance"), output=str(out / "dialogues"),
                                  tokenizer=str(tokenizer)))
    return out


def test_protocol_floor_reads_the_dialogues_stats(bench, tmp_path: Path, world_tokenizer_dir: Path) -> None:
    d = _seed_dir(tmp_path, 0, world_tokenizer_dir)
    got = bench.protocol_floor(d)
    stats = json.loads((d / "dialogues" / "stats.json").read_text())
    assert got["dialogues_tokens_vs_cot"] == stats["tokens_vs_cot"]
    assert got["dialogues_short_token_share"] == pytest.approx(1 - stats["long_token_share"])
    # every step was important at tau 0; at the floor only thought 1 is Long: shorter, more by Short
    assert got["floor_tokens_vs_cot"] < got["dialogues_tokens_vs_cot"]
    assert got["floor_short_token_share"] > got["dialogues_short_token_share"]


def test_main_writes_summary_with_the_floor_over_seeds(bench, tmp_path: Path, world_tokenizer_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    q = sys.modules["_quality"]
    for s in (0, 1):
        _seed_dir(tmp_path, s, world_tokenizer_dir)

    def fake_run_seeds(method, module, cls, fn, seeds, recipe, root, overrides):
        m = {"long": {"accuracy": 0.9, "mean_tokens": 100.0}}
        return {s: {"metrics": {**m, "longshort_sft": {"accuracy": 0.8, "mean_tokens": 80.0 + s,
                                                       "short_thinker_token_share": 0.4},
                                "longshort_rl": {"accuracy": 0.85 + 0.01 * s, "mean_tokens": 60.0,
                                                 "short_thinker_token_share": 0.5}}, "wall_s": 1.0} for s in seeds}

    monkeypatch.setattr(q, "run_seeds", fake_run_seeds)
    monkeypatch.setattr(q, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", ["longshort_quality.py", "--seeds", "0,1", "--root", str(tmp_path)])
    q.main("longshort", "m", "C", "f", bench.SYSTEMS, "tokens_ratio_vs_long,floor_tokens_vs_cot", bench.summary,
           extra_keys=("short_thinker_token_share",), seed_extra=bench.seed_figures)
    res = json.loads((tmp_path / "results" / "longshort_quality.json").read_text())
    s = res["summary"]
    assert s["system"] == "longshort_rl" and s["tokens_ratio_vs_long"] == pytest.approx(0.6)
    assert s["accuracy_delta_vs_long"] == pytest.approx(-4.5)
    assert s["short_thinker_token_share"] == pytest.approx(0.5)
    floors = [bench.protocol_floor(tmp_path / f"seed-{k}")["floor_tokens_vs_cot"] for k in (0, 1)]
    assert s["floor_tokens_vs_cot"] == pytest.approx(sum(floors) / 2)
    lo, hi = s["floor_tokens_vs_cot_ci"]
    assert lo <= s["floor_tokens_vs_cot"] <= hi and (floors[0] == floors[1] or lo < hi)
    assert "importance_s_redundant" not in s  # no importance stats in these seed folders: left out
    imp = tmp_path / "seed-0" / "importance" / "stats.json"
    write_json(imp, {"gold": {"mean_s_redundant": -0.1, "mean_s_other": 0.2, "auroc_other_vs_redundant": 0.7,
                              "precision_s_le_tau": 0.3, "recall_s_le_tau": 0.8}})
    got = bench.seed_figures(tmp_path / "seed-0")
    assert got["importance_s_redundant"] == -0.1 and got["importance_auroc"] == 0.7
    assert got["floor_tokens_vs_cot"] == floors[0]
    assert res["worlds"] == {"0": None, "1": None}  # these seed folders name no world
    assert res["chain_s"] == {"0": {"total_s": 0.0, "untimed": []}, "1": {"total_s": 0.0, "untimed": []}}  # no chain.json
    write_json(tmp_path / "x.json", res)  # plain JSON: no NaN or Infinity slipped in
    assert "Infinity" not in (tmp_path / "x.json").read_text()
    # --output names (as bench/demo.py and bench/generation.py) a variant's result file (e.g. a recipe override) and leaves the default one alone
    before = (tmp_path / "results" / "longshort_quality.json").read_text()
    monkeypatch.setattr(sys, "argv", ["longshort_quality.py", "--seeds", "0", "--root", str(tmp_path),
                                      "--output", str(tmp_path / "variant" / "v.json"), "merge.alpha=0.4"])
    q.main("longshort", "m", "C", "f", bench.SYSTEMS, "tokens_ratio_vs_long", bench.summary,
           extra_keys=("short_thinker_token_share",), seed_extra=bench.seed_figures)
    v = json.loads((tmp_path / "variant" / "v.json").read_text())
    assert v["seeds"] == [0] and v["overrides"] == ["merge.alpha=0.4"]
    assert (tmp_path / "results" / "longshort_quality.json").read_text() == before


def test_adar1_bench_reads_the_style_bound_from_the_chains_evals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.delitem(sys.modules, "_quality", raising=False)
    adar1 = load_bench("adar1_quality")
    d = tmp_path / "seed-0"

    def rows(tokens: list[int], correct: list[bool]) -> list[dict]:
        return [{"id": f"p{i}", "level": 1 + i // 2, "sample": 0, "n_tokens": t, "correct": c}
                for i, (t, c) in enumerate(zip(tokens, correct))]

    write_jsonl(d / "eval" / "long" / "samples.jsonl", rows([100, 100, 200, 200], [True] * 4))
    write_jsonl(d / "eval" / "short" / "samples.jsonl", rows([10, 10, 20, 20], [True, True, False, True]))
    got = adar1.style_bound(d)
    assert got["oracle_router_tokens_ratio_vs_long"] == pytest.approx((10 + 10 + 200 + 20) / 600)
    assert got["oracle_router_accuracy_delta_vs_long"] == 0.0
    # within 2 points of Long only level 1 may go to Short (level 2 in Short's style loses 25 points)
    assert got["oracle_per_level_tokens_ratio_vs_long"] == pytest.approx((10 + 10 + 200 + 200) / 600)
    assert not any(k.startswith("lean_") for k in got)  # no world here, so no tokenizer: no lean bounds

    # Long's answers carry one re-check each (10 "tokens" a thought): stripped, 90/90/190/190
    text = "Okay, plan.\n\nFirst, B +5.\n\nLet me double-check 3+5: 8. Yes, 8.\n\nSo the answer is \\boxed{8}."
    write_jsonl(d / "eval" / "long" / "samples.jsonl",
                [{**r, "text": text} for r in rows([100, 100, 200, 200], [True] * 4)])
    got = adar1.style_bound(d, count_tokens=lambda t: 10 * len(t.split("\n\n")))
    assert got["lean_long_tokens_ratio_vs_long"] == pytest.approx(560 / 600)
    assert got["lean_router_tokens_ratio_vs_long"] == pytest.approx((10 + 10 + 190 + 20) / 600)
    assert got["lean_per_level_tokens_ratio_vs_long"] == pytest.approx((10 + 10 + 190 + 190) / 600)
    assert got["lean_per_level_accuracy_delta_vs_long"] == 0.0
    assert got["oracle_router_tokens_ratio_vs_long"] == pytest.approx((10 + 10 + 200 + 20) / 600)  # unchanged


def test_world_record_reads_the_seeds_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.delitem(sys.modules, "_quality", raising=False)
    import _quality

    from hybridcot.data.world_models import WorldBuildConfig

    seed_dir = tmp_path / "seed-3"
    seed_dir.mkdir()
    assert _quality.world_record(seed_dir) is None  # no config.yaml
    world_out = tmp_path / "world"
    (seed_dir / "config.yaml").write_text(yaml.safe_dump({"world": {"preset": "tiny", "seed": 3,
                                                                    "output": str(world_out)}}))
    assert _quality.world_record(seed_dir) is None  # the build has not finished
    cal = {"rounds": 2, "steps_added": 1000, "done": True,
           "history": [{"met": False}, {"met": False}, {"met": True}]}
    write_json(world_out / "metrics.json", {
        "fingerprint": WorldBuildConfig(preset="tiny", seed=3).fingerprint(), "all_checks_pass": True,
        "long": {"accuracy": 0.97}, "short": {"accuracy": 0.6},
        "calibration": {"long": cal, "short": {**cal, "rounds": 0, "steps_added": 0, "history": [{"met": True}]}}})
    got = _quality.world_record(seed_dir)
    assert got["all_checks_pass"] is True and got["long_accuracy"] == 0.97 and got["short_accuracy"] == 0.6
    assert got["calibration"] == {"long": {"rounds": 2, "steps_added": 1000, "met": True},
                                  "short": {"rounds": 0, "steps_added": 0, "met": True}}
    # a list given on the command line (world.short_levels=1,2,3,4) stays text in the chain's config.yaml
    (seed_dir / "config.yaml").write_text(yaml.safe_dump({"world": {"preset": "tiny", "seed": 3, "short_levels": "1,2,3,4"}}))
    assert _quality.world_dir(seed_dir) == WorldBuildConfig(preset="tiny", seed=3, short_levels=[1, 2, 3, 4]).out_dir()


def test_adar1_bench_summary_adds_the_onpolicy_row_only_where_the_chains_ran_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.delitem(sys.modules, "_quality", raising=False)
    adar1 = load_bench("adar1_quality")
    import _quality

    def m(acc: float, tok: float) -> dict:
        return {"accuracy": acc, "mean_tokens": tok}

    seeds = {s: {"metrics": {"long": m(1.0, 200.0), "merge": m(1.0, 200.0), "dpo_shortest": m(0.98, 180.0),
                             "adar1": m(0.95, 140.0 + s)}} for s in (0, 1)}
    got = adar1.summary(_quality.aggregate(seeds, adar1.SYSTEMS))
    assert got["tokens_ratio_vs_long"] == pytest.approx(0.7025) and got["shorter_than_dpo_shortest"]
    assert not any(k.startswith("onpolicy_") for k in got)
    for s in seeds:
        seeds[s]["metrics"]["adar1_onpolicy"] = m(0.94, 120.0)
    got = adar1.summary(_quality.aggregate(seeds, adar1.SYSTEMS))
    assert got["onpolicy_tokens_ratio_vs_long"] == pytest.approx(0.6)
    assert got["onpolicy_accuracy_delta_vs_long"] == pytest.approx(-6.0)
    assert got["tokens_ratio_vs_long"] == pytest.approx(0.7025)  # AdaR1's own row is unchanged


def test_adar1_summary_states_each_acceptance_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's comparisons (Merge, DPO-shortest, group-level only, the Long-style share by level)
    on the mean and seed by seed, from per-seed rows whose answers are known."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.delitem(sys.modules, "_quality", raising=False)
    adar1 = load_bench("adar1_quality")
    q = sys.modules["_quality"]

    def row(acc: float, tok: float, share: dict | None = None) -> dict:
        return {"accuracy": acc, "mean_tokens": tok, **({"long_style_share": share} if share else {})}

    per_seed = {}
    for s, (g_tok, m_acc) in enumerate([(101.0, 0.95), (99.0, 0.99), (102.0, 0.90)]):
        per_seed[s] = {"metrics": {
            "long": row(1.0, 200.0, {"1": 1.0, "2": 1.0}),
            "merge": row(m_acc, 90.0), "dpo_shortest": row(1.0, 180.0),
            "group_only": row(0.97, g_tok),
            "adar1": row(0.98, 100.0, {"1": 0.0, "2": 0.5 + 0.1 * s, "10": 1.0})}}
    agg = q.aggregate(per_seed, adar1.SYSTEMS, extra_keys=("long_style_share",))
    got = adar1.summary(agg)
    assert got["tokens_ratio_vs_long"] == pytest.approx(0.5)
    assert got["more_accurate_than_merge"] is True and got["more_accurate_than_merge_seeds"] == [2, 3]
    assert got["shorter_than_dpo_shortest"] is True and got["shorter_than_dpo_shortest_seeds"] == [3, 3]
    # group-level only: 100.67 tokens on the mean (AdaR1 shorter), but seed 1's is shorter than AdaR1's
    assert got["shorter_than_group_only"] is True and got["shorter_than_group_only_seeds"] == [2, 3]
    assert got["at_least_as_accurate_as_group_only"] is True
    assert got["group_only_accuracy_delta_vs_long"] == pytest.approx(-3.0)
    assert got["long_style_share_levels"] == ["1", "2", "10"]  # numeric order, not text order
    assert got["long_style_share_by_level"] == pytest.approx([0.0, 0.6, 1.0])
    assert got["long_style_share_rises"] is True
    # a share that falls somewhere does not "rise", even if the last level is above the first
    for s in per_seed.values():
        s["metrics"]["adar1"]["long_style_share"]["2"] = 1.0
        s["metrics"]["adar1"]["long_style_share"]["10"] = 0.9
    assert adar1.summary(q.aggregate(per_seed, adar1.SYSTEMS, extra_keys=("long_style_share",)))["long_style_share_rises"] is False
    # a system missing on one seed: no seed-by-seed count (the lists would not line up)
    del per_seed[1]["metrics"]["group_only"]
    got = adar1.summary(q.aggregate(per_seed, adar1.SYSTEMS, extra_keys=("long_style_share",)))
    assert got["shorter_than_group_only_seeds"] is None and got["shorter_than_group_only"] is True


def test_aggregate_reads_the_long_style_share_from_eval_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain's eval metrics.json carries style_share per level, not the demo row's long_style_share:
    aggregate derives it as the summary row does."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.delitem(sys.modules, "_quality", raising=False)
    import _quality

    def metrics(shares: list[float]) -> dict:
        return {"accuracy": 1.0, "mean_tokens": 10.0,
                "per_level": {str(i + 1): {"accuracy": 1.0, "mean_tokens": 10.0, "style_share": {"long": x, "short": 1 - x}}
                              for i, x in enumerate(shares)}}

    per_seed = {s: {"metrics": {"long": metrics([1.0, 1.0]), "adar1": metrics([0.0, 0.2 * (s + 1)])}} for s in (0, 1)}
    agg = _quality.aggregate(per_seed, ["adar1"], extra_keys=("long_style_share",))
    assert agg["adar1"]["long_style_share_1"]["mean"] == 0.0
    assert agg["adar1"]["long_style_share_2"]["per_seed"] == pytest.approx([0.2, 0.4])
