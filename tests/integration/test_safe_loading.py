"""Safe model loading (hybridcot.models): safetensors only and no checkpoint code unless asked.

A pico checkpoint re-saved as `pytorch_model.bin` is refused with one line naming the folder and
`--allow-pickle`, then loads with the flag; a checkpoint that needs its own Python code is refused
without running it, and runs it with `--trust-remote-code`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hybridcot import cli
from hybridcot.io import HybridcotError
from hybridcot.models import (
    ALLOW_PICKLE_ENV,
    TRUST_REMOTE_CODE_ENV,
    allow_pickle,
    check_checkpoint,
    load_causal_lm,
    loading_policy,
)

PROBLEMS = Path(__file__).resolve().parents[1] / "data" / "bad" / "problems" / "ok.jsonl"


@pytest.fixture(autouse=True)
def _no_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)


@pytest.fixture
def pickle_model(tmp_path: Path, pico_model_dir: Path) -> Path:
    """The pico checkpoint with its weights as pytorch_model.bin only."""
    import torch
    from safetensors.torch import load_file

    d = tmp_path / "pickled"
    shutil.copytree(pico_model_dir, d)
    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    return d


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def test_pickle_weights_refused_then_loaded_with_the_flag(pickle_model: Path, pico_model_dir: Path) -> None:
    with pytest.raises(HybridcotError) as e:
        load_causal_lm(pickle_model)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{pickle_model}: only pickle weights (pytorch_model.bin)")
    assert "--allow-pickle" in msg
    with loading_policy(allow_pickle=True):
        assert allow_pickle()
        model = load_causal_lm(pickle_model)
    assert not allow_pickle()  # restored after the block
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(pico_model_dir)
    for (name, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert (a == b).all(), name


def test_cli_refuses_pickle_and_takes_allow_pickle(pickle_model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", f"model={pickle_model}", f"problems={PROBLEMS}", f"output={tmp_path / 'out'}",
            "backend=hf", "max_tokens=2"]
    rc, err = _cli(args, capsys)
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith(f"hybridcot eval: error: {pickle_model}: only pickle weights")
    assert not (tmp_path / "out" / "samples.jsonl").exists()
    rc, err = _cli([*args, "--allow-pickle"], capsys)
    assert rc == 0, err
    assert len((tmp_path / "out" / "samples.jsonl").read_text().splitlines()) == 2
    assert ALLOW_PICKLE_ENV not in os.environ  # the flag lasts one command
    # the global position works too (before the stage)
    rc, err = _cli(["--allow-pickle", *args[:3], f"output={tmp_path / 'out2'}", *args[4:]], capsys)
    assert rc == 0, err


def test_training_stage_refuses_pickle(pickle_model: Path, tmp_path: Path) -> None:
    from hybridcot.adar1.dpo import load_model

    with pytest.raises(HybridcotError, match="only pickle weights"):
        load_model(str(pickle_model))
    with loading_policy(allow_pickle=True):
        tok, model = load_model(str(pickle_model))
    assert tok.pad_token is not None and model.dtype.is_floating_point


def test_safetensors_beside_pickle_loads_without_the_flag(pickle_model: Path, pico_model_dir: Path) -> None:
    shutil.copy2(pico_model_dir / "model.safetensors", pickle_model / "model.safetensors")
    assert check_checkpoint(pickle_model) == pickle_model
    load_causal_lm(pickle_model)  # safetensors is taken; the .bin is never unpickled


def test_trainer_state_files_are_not_weights(tmp_path: Path, pico_model_dir: Path) -> None:
    d = tmp_path / "ckpt"
    d.mkdir()
    shutil.copy2(pico_model_dir / "config.json", d / "config.json")
    (d / "training_args.bin").write_bytes(b"x")
    with pytest.raises(HybridcotError, match=r"no model weights"):
        check_checkpoint(d)


@pytest.fixture
def remote_code_model(tmp_path: Path, pico_model_dir: Path) -> Path:
    """The pico checkpoint declared as a custom architecture whose code writes a marker file when run."""
    d = tmp_path / "custom"
    shutil.copytree(pico_model_dir, d)
    marker = tmp_path / "code_ran"
    (d / "configuration_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import Qwen2Config\n\n\nclass CustomConfig(Qwen2Config):\n"
        "    model_type = 'hybridcot_custom'\n")
    (d / "modeling_custom.py").write_text(
        "from transformers import Qwen2ForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomForCausalLM(Qwen2ForCausalLM):\n    config_class = CustomConfig\n")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="hybridcot_custom", auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                                                        "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    return d


def test_remote_code_refused_without_running_it(remote_code_model: Path, tmp_path: Path) -> None:
    with pytest.raises(HybridcotError) as e:
        load_causal_lm(remote_code_model)
    assert str(e.value).startswith(f"{remote_code_model}: cannot load the model: ")
    assert "--trust-remote-code" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "code_ran").exists()


def test_remote_code_runs_with_the_flag(remote_code_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDCOT_THREADS": "1",
           "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}  # transformers copies the code here
    args = [sys.executable, "-m", "hybridcot.cli", "eval", f"model={remote_code_model}", f"problems={PROBLEMS}",
            f"output={tmp_path / 'out'}", "backend=hf", "max_tokens=2"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and "--trust-remote-code" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "code_ran").exists()
    r = subprocess.run([*args, "--trust-remote-code"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "code_ran").exists()
