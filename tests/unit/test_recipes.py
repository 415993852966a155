"""Recipes: every YAML under recipes/ validates against its stage configs; bad ones fail in one line.

A recipe file is matched to its stage by name (`adar1_smoke.yaml` -> stage `adar1`, `merge.yaml` ->
`merge`); files under recipes/accelerate/ are accelerate configs. A YAML that matches nothing fails
here, so every shipped config stays tested.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybridcot import cli
from hybridcot.adar1.pipeline import AdaR1Config, plan_adar1
from hybridcot.adar1.steps import short_solution
from hybridcot.config import load_config
from hybridcot.data.problems import Problem
from hybridcot.io import HybridcotError
from hybridcot.recipes import apply_overrides, load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
ALL_YAML = sorted(p for ext in ("*.yaml", "*.yml") for p in RECIPES.rglob(ext))
STAGE_YAML = [p for p in ALL_YAML if p.parent.name != "accelerate"]
ACCELERATE_YAML = [p for p in ALL_YAML if p.parent.name == "accelerate"]
ADAR1_YAML = [p for p in STAGE_YAML if p.stem.split("_")[0] == "adar1"]


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def _stage_of(path: Path) -> str:
    name = path.stem.split("_")[0]
    if name not in cli.STAGES:
        pytest.fail(f"{_rel(path)}: no stage named {name!r}; name the file after its stage "
                    f"({', '.join(cli.STAGES)}) or teach this test what it is")
    return name


def test_there_are_recipes_for_every_setting() -> None:
    names = {_rel(p) for p in ALL_YAML}
    for want in ("recipes/tiny/adar1.yaml", "recipes/tiny/adar1_smoke.yaml", "recipes/smollm2/adar1.yaml",
                 "recipes/qwen-1.5b/adar1.yaml", "recipes/qwen-7b/adar1.yaml", "recipes/accelerate/zero3.yaml",
                 "recipes/tiny/longshort.yaml", "recipes/tiny/longshort_smoke.yaml", "recipes/smollm2/longshort.yaml",
                 "recipes/qwen-7b/longshort.yaml"):
        assert want in names


@pytest.mark.parametrize("path", STAGE_YAML, ids=_rel)
def test_every_recipe_validates(path: Path) -> None:
    name = _stage_of(path)
    cfg_cls, _ = cli._load(name)
    if name in cli.RECIPE_STAGES:
        cfg = load_recipe(cfg_cls, path)
        assert cfg.recipe == str(path)
    else:
        load_config(cfg_cls, path)


@pytest.mark.parametrize("path", ADAR1_YAML, ids=_rel)
def test_every_adar1_recipe_plans(path: Path) -> None:
    """Every stage config of the chain builds, and the paths hang together (nothing is read or written)."""
    plan = plan_adar1(load_recipe(AdaR1Config, path))
    assert plan.merge.long == plan.long and plan.merge.short == plan.short
    assert plan.sample_long.model == plan.long and plan.sample_short.model == plan.short
    assert plan.train["adar1"].model == plan.merge.output
    rounds = {"adar1_onpolicy"} if plan.rounds else set()
    assert set(plan.evals) == {"long", "short", "merge", "dpo_shortest", "merge_sft", "group_only", "adar1", *rounds}
    prev = plan.train["adar1"].output  # each on-policy round samples and trains from the one before
    for r in plan.rounds:
        assert r.sample.model == r.dpo.model == prev and r.dpo.pairs == str(r.pairs_dir / "pairs.jsonl")
        prev = r.dpo.output
    assert not plan.rounds or plan.evals["adar1_onpolicy"].model == prev
    assert plan.pairs.include == "both" and plan.pairs_group.include == "group"
    assert all(ec.temperature == 0.0 and ec.n == 1 for ec in plan.evals.values())  # greedy by default


def test_rounds_style_is_checked_in_one_line() -> None:
    path = RECIPES / "tiny" / "adar1.yaml"
    assert load_recipe(AdaR1Config, path, ["rounds=1", "rounds_style=own"]).rounds_style == "own"
    assert load_recipe(AdaR1Config, path).rounds_style == "preferred"  # stop 23's rounds
    with pytest.raises((ValueError, HybridcotError), match="rounds_style must be one of"):
        load_recipe(AdaR1Config, path, ["rounds_style=mine"])


@pytest.mark.parametrize("size", ["qwen-1.5b", "qwen-7b"])
def test_gpu_recipes_use_the_papers_settings(size: str) -> None:
    cfg = load_recipe(AdaR1Config, RECIPES / size / "adar1.yaml")
    plan = plan_adar1(cfg)
    assert plan.merge.alpha == 0.8
    s = plan.sample_long
    assert (s.k, s.temperature, s.top_p, s.max_tokens, s.backend) == (12, 0.6, 0.95, 16384, "vllm")
    acc = yaml.safe_load((REPO / cfg.accelerate_config).read_text())
    for name in ("adar1", "group_only", "dpo_shortest"):
        d = plan.train[name]
        assert (d.beta, d.learning_rate, d.num_train_epochs, d.loss_type) == (0.1, 5e-7, 2.0, "sigmoid")
        assert d.per_device_train_batch_size * d.gradient_accumulation_steps * acc["num_processes"] == 32
    assert "DeepSeek-R1-Distill-Qwen" in plan.long
    assert plan.evals["adar1"].max_tokens == 16384


def test_tiny_recipe_evaluates_like_the_world_eval() -> None:
    plan = plan_adar1(load_recipe(AdaR1Config, RECIPES / "tiny" / "adar1.yaml"))
    wdir = plan.world.out_dir()
    assert plan.long == str(wdir / "long") and plan.short == str(wdir / "short")
    ec = plan.evals["long"]
    assert ec.problems == str(wdir / "data" / "test.jsonl") and ec.max_tokens == plan.world.max_new_tokens
    assert plan.sample_long.problems == str(wdir / "data" / "train.jsonl")


@pytest.mark.parametrize("path", ACCELERATE_YAML, ids=_rel)
def test_accelerate_configs_load_in_accelerate(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    for key in ("compute_environment", "distributed_type", "mixed_precision", "num_machines", "num_processes"):
        assert key in data, f"{_rel(path)}: missing {key}"
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))  # accelerate's own loader: unknown keys raise
    assert cfg.num_processes == data["num_processes"]
    if data["distributed_type"] == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] in (2, 3)


def test_recipes_name_existing_accelerate_configs() -> None:
    for path in ADAR1_YAML:
        cfg = load_recipe(AdaR1Config, path)
        if cfg.accelerate_config:
            assert (REPO / cfg.accelerate_config).is_file(), f"{_rel(path)}: {cfg.accelerate_config} missing"


# ---------------------------------------------------------------- errors are one line naming file and key


def _recipe(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, where", [
    ("world: {}\ndpo:\n  betta: 0.1\n", "dpo.betta: unknown key for DPOStageConfig (did you mean beta?)"),
    ("world: {}\ndpo:\n  beta: lots\n", "dpo.beta: expected a number, got 'lots'"),
    ("world: {}\nsample:\n  k: 0\n", "sample: k must be >= 1, got 0"),
    ("world: {}\nsample:\n  model: x\n", "sample.model: set by the chain"),
    ("world: {}\nworld_size: 3\n", "unknown key 'world_size' for AdaR1Config"),
    ("world:\n  preset: huge\n", "world: preset must be one of"),
    ("world: {}\nmerge: 0.8\n", "merge: expected a mapping"),
    ("long: a\n", "short: is required"),
    ("world: {}\nmake_short:\n  limit: many\n", "make_short"),
    ("world: {}\nbaselines: [dpo_longest]\n", "baselines: unknown 'dpo_longest'"),
    ("world: [\n", "invalid YAML"),
])
def test_bad_recipe_is_one_line_naming_file_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = _recipe(tmp_path, text)
    with pytest.raises(HybridcotError) as e:
        load_recipe(AdaR1Config, path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and where in msg, msg


def test_make_short_extra_keys_are_type_checked(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "long: a\nmake_short:\n  problems: p.jsonl\n  limit: many\n")
    with pytest.raises(HybridcotError, match=r"make_short\.limit: expected an integer"):
        load_recipe(AdaR1Config, path)


def test_dotted_overrides(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "world: {}\ndpo:\n  beta: 0.1\n")
    cfg = load_recipe(AdaR1Config, path, ["dpo.learning_rate=1e-4", "sample.k=4", "output=/x/y", "merge.alpha=0.7",
                                          "baselines=merge_sft", "summary="])
    plan = plan_adar1(cfg)
    assert plan.train["adar1"].learning_rate == 1e-4 and plan.train["adar1"].beta == 0.1
    assert plan.sample_long.k == plan.sample_short.k == 4 and plan.merge.alpha == 0.7
    assert set(plan.train) == {"adar1", "merge_sft"} and cfg.summary == "" and cfg.output == "/x/y"
    with pytest.raises(HybridcotError, match=r"^command line: dpo\.beta: expected a number"):
        load_recipe(AdaR1Config, path, ["dpo.beta=abc"])
    with pytest.raises(HybridcotError, match=r"^command line: world: preset must be"):
        load_recipe(AdaR1Config, path, ["world.preset=huge"])
    with pytest.raises(HybridcotError, match="expected key=value"):
        load_recipe(AdaR1Config, path, ["dpo.beta"])
    with pytest.raises(HybridcotError, match="not a section"):
        apply_overrides({"output": "x"}, ["output.sub=1"], AdaR1Config, AdaR1Config.SECTIONS)


def test_world_null_override_switches_to_checkpoints(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "world: {}\n")
    cfg = load_recipe(AdaR1Config, path, ["world=null", "long=/m/long", "short=/m/short",
                                          "train_problems=t.jsonl", "eval_problems=e.jsonl"])
    plan = plan_adar1(cfg)
    assert plan.world is None and plan.long == "/m/long" and plan.evals["short"].model == "/m/short"
    assert plan.evals["adar1"].max_tokens == 1024  # EvalConfig's default without a world to match


def test_seed_fills_every_section_that_does_not_set_its_own(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "world: {}\npairs:\n  seed: 5\n")
    plan = plan_adar1(load_recipe(AdaR1Config, path, ["seed=3"]))
    assert plan.sample_long.seed == 3 and plan.train["adar1"].seed == 3 and plan.evals["merge"].seed == 3
    assert plan.pairs.seed == 5 and plan.world.seed == 0


def test_cli_adar1_bad_recipe_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "world: {}\ndpo:\n  betta: 0.1\n")
    r = subprocess.run([sys.executable, "-m", "hybridcot.cli", "adar1", "--recipe", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and f"{path}: dpo.betta: unknown key" in r.stderr


def test_short_solution_strips_gsm8k_calculator_notes() -> None:
    p = Problem(id="g1", problem="q", answer="72", meta={
        "solution": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72.\n#### 72"})
    assert short_solution(p) == ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72.\n"
                                 "The answer is \\boxed{72}.")
    math = Problem(id="m1", problem="q", answer="3", meta={"solution": "So $x = \\boxed{3}$."})
    assert short_solution(math) == "So $x = \\boxed{3}$."
    with pytest.raises(HybridcotError, match="'w1' has no worked solution"):
        short_solution(Problem(id="w1", problem="q", answer="1"))


def test_errors_blame_the_file_or_the_command_line(tmp_path: Path) -> None:
    bad_file = _recipe(tmp_path, "world: {}\ndpo:\n  betta: 0.1\n")
    with pytest.raises(HybridcotError, match=rf"^{bad_file}: dpo\.betta"):
        load_recipe(AdaR1Config, bad_file, ["sample.k=4"])
    incomplete = tmp_path / "incomplete.yaml"  # completed on the command line
    incomplete.write_text("train_problems: t.jsonl\neval_problems: e.jsonl\n")
    cfg = load_recipe(AdaR1Config, incomplete, ["long=/m/l", "short=/m/s"])
    assert cfg.long == "/m/l"
    with pytest.raises(HybridcotError, match=r"^command line: sample\.k: expected an integer"):
        load_recipe(AdaR1Config, incomplete, ["long=/m/l", "short=/m/s", "sample.k=x"])


def test_longshort_cots_sample_plans_a_sampling_step_before_chunk() -> None:
    from hybridcot.longshort.pipeline import LongShortConfig, plan_longshort

    plan = plan_longshort(load_recipe(LongShortConfig, RECIPES / "qwen-7b" / "longshort.yaml", ["output=/tmp/x"]))
    assert plan.sample is not None and plan.sample.model.endswith("DeepSeek-R1-Distill-Qwen-7B")
    assert plan.sample.problems == plan.chunk.problems == "../shared/data/benchmarks/gsm8k_train.jsonl"
    assert plan.chunk.input == "/tmp/x/samples/cots/samples.jsonl"
    assert plan.dialogues.model.endswith("Qwen2.5-7B-Instruct")  # Short turns written by the short model
    world = plan_longshort(load_recipe(LongShortConfig, RECIPES / "tiny" / "longshort.yaml", ["output=/tmp/y"]))
    assert world.sample is None and world.dialogues.model == ""  # the world writer needs no model
    assert world.chunk.input == str(world.world.out_dir())


def test_longshort_thinkers_start_from_long_and_short_unless_told() -> None:
    from hybridcot.longshort.pipeline import LongShortConfig, plan_longshort

    tiny = RECIPES / "tiny" / "longshort.yaml"
    plan = plan_longshort(load_recipe(LongShortConfig, tiny, ["output=/tmp/y", "short_thinker_from="]))
    wdir = plan.world.out_dir()
    assert (plan.sft["long"].model, plan.sft["short"].model) == (str(wdir / "long"), str(wdir / "short"))
    moved = plan_longshort(load_recipe(LongShortConfig, tiny, ["output=/tmp/y", "short_thinker_from={world}/parent",
                                                               "long_thinker_from={output}/start"]))
    assert (moved.sft["long"].model, moved.sft["short"].model) == ("/tmp/y/start", str(wdir / "parent"))
    assert moved.short == str(wdir / "short")  # Short alone is still evaluated and still the world's
    qwen = load_recipe(LongShortConfig, RECIPES / "qwen-7b" / "longshort.yaml",
                       ["output=/tmp/x", "short_thinker_from={world}/parent"])
    with pytest.raises(HybridcotError, match=r"\{world\} needs a world: section"):
        plan_longshort(qwen)
