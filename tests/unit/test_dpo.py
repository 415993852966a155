"""The training stages, `hybridcot dpo` and `hybridcot sft`: one step on the pico model changes every
parameter and logs a finite loss; outputs load as checkpoints; reruns skip; kills resume; bad data
is one line."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from hybridcot.adar1.dpo import DPOStageConfig, likelihood_shift, load_rows, run_dpo
from hybridcot.adar1.sft import SFTStageConfig, run_sft
from hybridcot.data.world import generate_problems, long_text, write_long, write_short
from hybridcot.generation import chat_prompt
from hybridcot.io import HybridcotError, write_jsonl
from hybridcot.training import trl_dir

REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def _world(n: int = 4):
    rng = random.Random(0)
    return [(p, long_text(write_long(p, rng)), write_short(p)) for p in generate_problems(n, seed=3, levels=(1, 2))]


def _pairs_file(path: Path, n: int = 4) -> Path:
    """Pairs-stage rows (with its metadata columns): chosen = short, rejected = long."""
    rows = [{"prompt": chat_prompt(p.problem), "chosen": [{"role": "assistant", "content": short}],
             "rejected": [{"role": "assistant", "content": long}], "id": p.id, "level": p.level,
             "kind": "instance", "p_short": None, "chosen_tokens": 10, "rejected_tokens": 50}
            for p, long, short in _world(n)]
    write_jsonl(path, rows)
    return path


def _sft_file(path: Path, n: int = 4) -> Path:
    rows = [{"prompt": chat_prompt(p.problem), "completion": [{"role": "assistant", "content": short}],
             "id": p.id, "style": "short", "n_tokens": 10} for p, _, short in _world(n)]
    write_jsonl(path, rows)
    return path


def _params(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


ONE_STEP = dict(learning_rate=1e-3, max_steps=1, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                warmup_ratio=0.0, lr_scheduler_type="constant", logging_steps=1, max_length=256, use_cpu=True)


def _assert_every_parameter_changed(before: dict, after: dict) -> None:
    assert before.keys() == after.keys() and before
    same = [k for k in before if torch.equal(before[k], after[k])]
    assert same == [], f"parameters not updated: {same}"


def test_dpo_step_changes_every_parameter(tmp_path: Path, pico_model_dir: Path) -> None:
    pairs = _pairs_file(tmp_path / "pairs" / "pairs.jsonl")
    out = tmp_path / "dpo"
    meta = run_dpo(DPOStageConfig(model=str(pico_model_dir), pairs=str(pairs.parent), output=str(out), **ONE_STEP))
    _assert_every_parameter_changed(_params(pico_model_dir), _params(out))
    log = json.loads((out / "train_log.json").read_text())
    assert log["stage"] == "dpo" and log["steps"] == 1 and len(log["log"]) == 1
    entry = log["log"][0]
    assert math.isfinite(entry["loss"]) and entry["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy = ref
    for key in REWARD_KEYS:
        assert key in entry and math.isfinite(entry[key])
    assert meta["stage"] == "dpo" and meta["steps"] == 1 and meta["rows"] == 4
    shift = meta["logps_shift"]  # the logged log-probs of the one step, first = last
    assert shift["chosen"] == [round(entry["logps/chosen"], 4)] * 2 and shift["chosen_fell"] is False
    assert json.loads((out / "hybridcot.json").read_text())["base_model"] == str(pico_model_dir)
    assert (out / "config.yaml").is_file() and (out / "tokenizer.json").is_file()
    assert not trl_dir(out).exists()  # TRL's checkpoints are dropped once the model is saved

    # a finished output is skipped: nothing is retrained
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert run_dpo(DPOStageConfig(model=str(pico_model_dir), pairs=str(pairs), output=str(out), **ONE_STEP)) == meta
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_likelihood_shift_flags_chosen_responses_that_became_less_likely() -> None:
    def log(chosen, rejected):
        return [{"loss": 0.6, "logps/chosen": c, "logps/rejected": r} for c, r in zip(chosen, rejected)]

    # the v7 world's lr-1e-4 run, roughly: both fell
    fell = likelihood_shift(log([-55, -54, -56, -50, -58, -57, -60], [-39, -40, -38, -60, -75, -78, -80]))
    assert fell["chosen"] == [-55.0, -58.3333] and fell["rejected"] == [-39.0, -77.6667] and fell["chosen_fell"]
    rose = likelihood_shift(log([-55, -54, -56, -50, -40, -30, -29], [-39, -40, -38, -60, -75, -78, -80]))
    assert not rose["chosen_fell"]
    assert not likelihood_shift(log([-55, -54, -56, -57], [-1] * 4))["chosen_fell"]  # within 5%
    assert not likelihood_shift(log([-50, -90], [-1, -1]))["chosen_fell"]  # too few logs to tell
    assert likelihood_shift([{"loss": 0.6}]) is None  # an SFT log has no log-probs


def test_dpo_sft_weight_adds_the_chosen_nll(tmp_path: Path, pico_model_dir: Path) -> None:
    """sft_weight w adds w x (NLL of the chosen response) to the sigmoid loss: at step one (policy = ref,
    sigmoid loss = ln 2) the logged loss is ln 2 + w x nll, so the excess doubles with w."""
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    excess = {}
    for w in (0.5, 1.0):
        out = tmp_path / f"dpo-{w}"
        run_dpo(DPOStageConfig(model=str(pico_model_dir), pairs=str(pairs), output=str(out), sft_weight=w, **ONE_STEP))
        excess[w] = json.loads((out / "train_log.json").read_text())["log"][0]["loss"] - math.log(2)
    assert excess[0.5] > 0.5  # an untrained pico model's NLL per token is several nats
    assert excess[1.0] == pytest.approx(2 * excess[0.5], rel=1e-3)


def test_dpo_resumes_from_trl_checkpoint(tmp_path: Path, pico_model_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import hybridcot.adar1.dpo as dpo

    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "dpo"
    cfg = dict(ONE_STEP, max_steps=2, per_device_train_batch_size=2, save_steps=1)
    real_finish = dpo.finish

    def killed(*a, **kw):
        raise KeyboardInterrupt  # killed after training, before the model was saved

    monkeypatch.setattr(dpo, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        run_dpo(DPOStageConfig(model=str(pico_model_dir), pairs=str(pairs), output=str(out), **cfg))
    assert not out.exists() and (trl_dir(out) / "checkpoint-2").is_dir()
    # a resumed run must match the interrupted one's settings
    with pytest.raises(HybridcotError, match="beta=0.05"):
        run_dpo(DPOStageConfig(model=str(pico_model_dir), pairs=str(pairs), output=str(out), beta=0.2, **cfg))
    monkeypatch.setattr(dpo, "finish", real_finish)
    from trl import DPOTrainer

    steps_run = []
    real_step = DPOTrainer.training_step
    monkeypatch.setattr(DPOTrainer, "training_step", lambda self, *a, **kw: steps_run.append(1) or real_step(self, *a, **kw))
    meta = run_dpo(DPOStageConfig(model=str(pico_model_dir), pairs=str(pairs), output=str(out), **cfg))
    assert "resuming from" in capsys.readouterr().out
    assert meta["steps"] == 2 and not trl_dir(out).exists()
    assert steps_run == []  # both steps were done before the kill: nothing is trained again
    log = json.loads((out / "train_log.json").read_text())["log"]
    assert [e["step"] for e in log] == [1, 2]  # the steps before the kill are in the log too


def test_sft_step_changes_every_parameter(tmp_path: Path, pico_model_dir: Path) -> None:
    data = _sft_file(tmp_path / "rows.jsonl")
    out = tmp_path / "sft"
    meta = run_sft(SFTStageConfig(model=str(pico_model_dir), data=str(data), output=str(out), **ONE_STEP))
    _assert_every_parameter_changed(_params(pico_model_dir), _params(out))
    log = json.loads((out / "train_log.json").read_text())
    assert log["stage"] == "sft" and log["steps"] == 1
    assert math.isfinite(log["log"][0]["loss"]) and log["log"][0]["loss"] > 0
    assert meta["stage"] == "sft" and meta["final_loss"] == log["log"][0]["loss"]
    assert not trl_dir(out).exists()


def test_training_stage_refuses_foreign_output(tmp_path: Path, pico_model_dir: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(HybridcotError, match="not a finished `hybridcot sft` output"):
        run_sft(SFTStageConfig(model=str(pico_model_dir), data=str(tmp_path / "x.jsonl"), output=str(out)))
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("line, message", [
    ({"prompt": "p", "chosen": "c"}, "pairs.jsonl:2: field 'rejected' must be a non-empty string"),
    ({"prompt": "p", "chosen": "c", "rejected": [{"role": "assistant"}]}, "pairs.jsonl:2: field 'rejected'"),
    ({"prompt": [{"role": "user", "content": "p"}], "chosen": "c", "rejected": "r"},
     "pairs.jsonl:2: field 'prompt' is messages but line 1 has text"),
])
def test_bad_pairs_are_one_line(tmp_path: Path, line: dict, message: str) -> None:
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [{"prompt": "p", "chosen": "c", "rejected": "r", "extra": 1}, line])
    with pytest.raises(HybridcotError) as e:
        load_rows(path, ("prompt", "chosen", "rejected"), "pairs.jsonl")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_load_rows_drops_metadata_columns(tmp_path: Path) -> None:
    rows = load_rows(_pairs_file(tmp_path / "p.jsonl", 2), ("prompt", "chosen", "rejected"), "pairs.jsonl")
    assert len(rows) == 2 and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    with pytest.raises(HybridcotError, match="no rows"):
        write_jsonl(tmp_path / "empty.jsonl", [])
        load_rows(tmp_path / "empty.jsonl", ("prompt",), "x")


@pytest.mark.parametrize("cls, kw, message", [
    (DPOStageConfig, {"beta": 0}, "beta must be > 0"),
    (DPOStageConfig, {"loss_type": "nope"}, "loss_type must be one of"),
    (DPOStageConfig, {"max_steps": 0}, "max_steps must be > 0 or -1"),
    (DPOStageConfig, {"sft_weight": -1.0}, "sft_weight must be >= 0"),
    (SFTStageConfig, {"warmup_ratio": 1.0}, "warmup_ratio must be in"),
    (SFTStageConfig, {"per_device_train_batch_size": 0}, "per_device_train_batch_size must be >= 1"),
])
def test_config_validation(cls, kw: dict, message: str) -> None:
    base = {"model": "m", "output": "o", "pairs" if cls is DPOStageConfig else "data": "d"}
    with pytest.raises(ValueError, match=message):
        cls(**base, **kw)
