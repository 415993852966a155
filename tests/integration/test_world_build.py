"""`hybridcot world build` (tiny preset) for real, and the demo's summary shape built on it."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from hybridcot.data.world_models import WorldBuildConfig, build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    return build_world(WorldBuildConfig(preset="tiny", output=str(out), eval_backend="hf", ft_batch_size=8))


def test_world_build_writes_models_data_and_metrics(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("base", "long", "short"):
        d = tiny_world / name
        assert (d / "model.safetensors").exists() and (d / "hybridcot.json").exists()
        model = AutoModelForCausalLM.from_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        assert model.config.model_type == "qwen2" and tok.chat_template
        # the tokenizer must load exactly as it was trained (transformers rebuilds qwen2 tokenizers)
        ids = tok("First, 12+7: 2+7=9, 1+0+0=1, so 12+7=19.")["input_ids"]
        assert all(len(t.strip("Ġ")) <= 1 or not any(c.isdigit() for c in t) for t in tok.convert_ids_to_tokens(ids))
    meta = json.loads((tiny_world / "long" / "hybridcot.json").read_text())
    assert meta["parent"] == "base" and meta["losses"] and all(x == x for x in meta["losses"])
    # the base trains at batch_size, the two fine-tunes at ft_batch_size
    sizes = {n: json.loads((tiny_world / n / "hybridcot.json").read_text())["batch_size"] for n in ("base", "long", "short")}
    assert sizes == {"base": 16, "long": 8, "short": 8}
    m = json.loads((tiny_world / "metrics.json").read_text())
    assert set(m["checks"]) == {"long_accuracy_ge_0.85", "long_level5_accuracy_ge_0.70", "short_level1_accuracy_ge_0.90",
                                "short_level5_accuracy_le_0.50", "long_tokens_ge_4x_short",
                                "short_at_least_as_accurate_on_ge_30pct"}
    for name in ("long", "short"):
        assert set(m[name]["per_level"]) == {"1", "2", "3", "4", "5"}
        assert 0.0 <= m[name]["accuracy"] <= 1.0
    # Long was fine-tuned on long solutions, Short on one-liners: their lengths must differ clearly
    assert m["long"]["mean_tokens"] > 1.5 * m["short"]["mean_tokens"]
    assert (tiny_world / "config.yaml").exists()
    # the finisher: Short trained further to finish partial solutions, measured at five cuts
    fin = json.loads((tiny_world / "finisher" / "hybridcot.json").read_text())
    assert fin["parent"] == "short" and fin["finisher_config"] == {"finisher_steps": 20, "finisher_lr": 5e-4}
    assert len(fin["losses"]) >= 1 and AutoModelForCausalLM.from_pretrained(tiny_world / "finisher")
    curve = json.loads((tiny_world / "finisher" / "metrics.json").read_text())
    assert set(curve["accuracy_by_cut"]) == {"problem", "empty", "after_plan", "halfway", "before_final", "whole"}
    assert all(0.0 <= v <= 1.0 for v in curve["accuracy_by_cut"].values()) and curve["n_problems"] == 20
    thoughts = [json.loads(x) for x in (tiny_world / "data" / "train_long_thoughts.jsonl").read_text().splitlines()]
    assert len(thoughts) >= 1
    for r in thoughts:
        kinds = [t["kind"] for t in r["thoughts"]]
        assert kinds[0] == "plan" and kinds[-1] == "final"
        assert all(t["redundant"] == (t["kind"] in ("verify", "alternative")) for t in r["thoughts"])


def test_second_build_reuses_everything(tiny_world):
    from hybridcot.data.world_models import WorldBuildConfig, build_world

    before = {p: p.stat().st_mtime_ns for p in tiny_world.rglob("*") if p.is_file()}
    assert build_world(WorldBuildConfig(preset="tiny", output=str(tiny_world), eval_backend="hf",
                                        ft_batch_size=8)) == tiny_world
    after = {p: p.stat().st_mtime_ns for p in tiny_world.rglob("*") if p.is_file()}
    assert before == after


def test_demo_summary_shape(tiny_world, tmp_path):
    from hybridcot.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(output=str(tmp_path / "demo"), preset="tiny", world=str(tiny_world),
                                  eval_backend="hf"))
    rows = json.loads(summary.read_text())
    assert [r["name"] for r in rows][:2] == ["long", "short"]
    for r in rows:
        assert set(r) >= {"name", "accuracy", "accuracy_ci", "mean_tokens", "per_level", "thinking_ratio"}
        assert len(r["accuracy_ci"]) == 2 and r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
        assert set(r["per_level"]) == {"1", "2", "3", "4", "5"}
        assert set(r["per_level"]["1"]) >= {"accuracy", "mean_tokens"}
    assert (tmp_path / "demo" / "report").is_dir()


def test_a_new_finisher_config_retrains_the_finisher_alone(tiny_world, tmp_path):
    import shutil

    from hybridcot.data.world_models import WorldBuildConfig, build_world

    world = tmp_path / "tiny"
    shutil.copytree(tiny_world, world)
    before = {p.relative_to(world): p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()}
    assert build_world(WorldBuildConfig(preset="tiny", output=str(world), eval_backend="hf", ft_batch_size=8,
                                        finisher_steps=4)) == world
    after = {p.relative_to(world): p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()}
    changed = {str(p) for p in after if before.get(p) != after[p]}
    assert changed and all(p.startswith("finisher/") for p in changed), changed
    fin = json.loads((world / "finisher" / "hybridcot.json").read_text())
    assert fin["finisher_config"]["finisher_steps"] == 4 and len(fin["losses"]) >= 1


def test_calibration_tops_up_a_model_that_misses_its_target_and_leaves_one_that_meets_it(tiny_world, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from hybridcot.data.world_models import WorldBuildConfig, build_world

    world = tmp_path / "tiny"
    shutil.copytree(tiny_world, world)
    (world / "metrics.json").unlink()  # the models stay; the build calibrates them, then evaluates them again
    shutil.rmtree(world / "eval")
    weights = {n: load_file(world / n / "model.safetensors") for n in ("long", "short")}
    cfg = WorldBuildConfig(preset="tiny", output=str(world), eval_backend="hf", ft_batch_size=8, calibrate_steps=3,
                           calibrate_rounds=1, val_n=10, long_target=1.0, short_target=0.0)
    build_world(cfg)
    m = json.loads((world / "metrics.json").read_text())
    long_c, short_c = m["calibration"]["long"], m["calibration"]["short"]
    # Long cannot reach 100% on every level: one top-up (the only round allowed), evaluated before and after
    assert long_c["rounds"] == 1 and long_c["steps_added"] == 3 and long_c["done"]
    assert [h["round"] for h in long_c["history"]] == [0, 1] and not long_c["history"][0]["met"]
    assert set(long_c["history"][0]["per_level"]) == {"1", "2", "3", "4", "5"}
    assert (world / "calibration" / "long-round-1" / "samples.jsonl").exists()
    new_long = load_file(world / "long" / "model.safetensors")
    assert any(not (new_long[k] == v).all() for k, v in weights["long"].items())
    # Short meets a target of 0 as it is: evaluated once, its weights untouched
    assert short_c["rounds"] == 0 and [h["met"] for h in short_c["history"]] == [True]
    new_short = load_file(world / "short" / "model.safetensors")
    assert all((new_short[k] == v).all() for k, v in weights["short"].items())
    assert len((world / "data" / "val.jsonl").read_text().splitlines()) == 10
    before = {p: p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()}
    assert build_world(cfg) == world  # finished: reused as is
    assert before == {p: p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()}
