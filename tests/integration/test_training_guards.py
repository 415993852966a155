"""Training guards (hybridcot.training.LossHistory): a NaN/inf loss or gradient stops training.

The run ends with one line naming the stage and the step, the broken weights are never written as
the final model, and `<output>.trl/` keeps the checkpoints saved before the step that went bad.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import dpo_pairs_file, sft_rows_file
from hybridcot import cli
from hybridcot.io import HybridcotError
from hybridcot.training import LossHistory, check_finite, trl_dir


def _finite(ckpt: Path) -> bool:
    from safetensors.torch import load_file

    return all(bool(torch.isfinite(t).all()) for f in ckpt.glob("*.safetensors") for t in load_file(f).values())


def _last_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.rstrip("\n").split("\n")[-1]


def test_nan_loss_stops_sft_and_keeps_the_last_good_checkpoint(tmp_path: Path, pico_model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """From the 3rd training forward on, the final norm outputs NaN: step 3 goes bad."""
    import hybridcot.adar1.sft as sft
    from hybridcot.adar1.dpo import load_model

    calls = {"n": 0}

    def poisoned(path: str):
        tok, model = load_model(path)

        def hook(module, args, output):
            if not module.training:
                return output
            calls["n"] += 1
            return output * float("nan") if calls["n"] >= 3 else output

        model.model.norm.register_forward_hook(hook)
        return tok, model

    monkeypatch.setattr(sft, "load_model", poisoned)
    out = tmp_path / "sft"
    rc = cli.main(["sft", f"model={pico_model_dir}", f"data={sft_rows_file(tmp_path / 'rows.jsonl')}", f"output={out}",
                   "max_steps=6", "per_device_train_batch_size=2", "save_steps=1", "logging_steps=1",
                   "learning_rate=1e-4"])
    assert rc == 2
    last = _last_line(capsys)
    assert last.startswith(f"hybridcot sft: error: sft {out}: ")
    assert "became nan at step 3" in last and "no final model was written" in last
    assert f"the last good checkpoint is {trl_dir(out) / 'checkpoint-2'}" in last
    assert not out.exists()  # no final model
    ckpts = sorted(p.name for p in trl_dir(out).glob("checkpoint-*"))
    assert ckpts == ["checkpoint-1", "checkpoint-2"]  # the bad step's checkpoint was cancelled
    assert _finite(trl_dir(out) / "checkpoint-2")


def test_huge_learning_rate_stops_sft(tmp_path: Path, pico_model_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sft"
    rc = cli.main(["sft", f"model={pico_model_dir}", f"data={sft_rows_file(tmp_path / 'rows.jsonl')}", f"output={out}",
                   "max_steps=8", "per_device_train_batch_size=2", "save_steps=100", "logging_steps=1",
                   "learning_rate=1e30"])
    assert rc == 2
    last = _last_line(capsys)
    assert last.startswith(f"hybridcot sft: error: sft {out}: ") and " at step " in last
    assert "no checkpoint was saved before it" in last
    assert not out.exists()


def test_huge_learning_rate_stops_dpo(tmp_path: Path, pico_model_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dpo"
    rc = cli.main(["dpo", f"model={pico_model_dir}", f"pairs={dpo_pairs_file(tmp_path / 'pairs.jsonl')}", f"output={out}",
                   "max_steps=6", "per_device_train_batch_size=2", "save_steps=1", "logging_steps=1",
                   "learning_rate=1e30"])
    assert rc == 2
    last = _last_line(capsys)
    assert last.startswith(f"hybridcot dpo: error: dpo {out}: ") and " at step " in last
    assert not out.exists()
    for ckpt in trl_dir(out).glob("checkpoint-*"):
        assert _finite(ckpt)


class _Control:
    should_training_stop = False
    should_save = True


class _State:
    global_step = 4
    log_history: list = []


class _Args:
    output_dir = "/nonexistent/hybridcot-test"


def test_guard_drops_non_finite_gradients() -> None:
    """The callback alone (as GRPO uses it): NaN gradients are dropped before the optimizer step."""
    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    guard, control = LossHistory(), _Control()
    guard.on_pre_optimizer_step(_Args(), _State(), control, model=model)
    assert guard.bad_loss is None and not control.should_training_stop  # finite: nothing happens
    model.weight.grad[0, 0] = float("inf")
    guard.on_pre_optimizer_step(_Args(), _State(), control, model=model)
    assert all(p.grad is None for p in model.parameters())
    assert control.should_training_stop and not control.should_save
    assert guard.bad_step == 5 and guard.bad_what == "grad norm" and not math.isfinite(guard.bad_loss)
    with pytest.raises(HybridcotError, match=r"^rl round 1 \(long\): grad norm became (inf|nan) at step 5; "):
        check_finite(guard, "rl round 1 (long)")


def test_guard_reads_logged_loss() -> None:
    guard, control = LossHistory(), _Control()
    guard.on_log(_Args(), _State(), control, logs={"loss": 1.5, "grad_norm": 0.3})
    assert guard.bad_loss is None and guard.losses == [1.5]
    guard.on_log(_Args(), _State(), control, logs={"loss": float("inf")})
    assert control.should_training_stop and guard.bad_what == "loss" and guard.bad_step == 4
