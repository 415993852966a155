"""The accelerate configs in recipes/accelerate and a real multi-process training run.

* Every YAML parses with accelerate's own loader (`load_config_from_file`, the one `accelerate launch
  --config_file` uses), has the distributed type, process count and precision docs/scaling.md promises,
  uses only keys `accelerate launch` knows (it drops unknown deepspeed_config / fsdp_config keys
  silently), and resolves through accelerate's launch code to the launcher and plugin settings we
  want (DeepSpeed ZeRO stage, FSDP2 full shard with transformer-layer wrapping, torchrun on the CPU).
* `accelerate launch --config_file recipes/accelerate/multi_cpu.yaml -m hybridcot.cli sft|dpo ...`
  on the pico model: 2 ranks joined over gloo (torchrun's per-rank log folders; the trainer's epoch
  counter shows the batch was split over 2), exit status 0, a checkpoint that loads and moved away
  from the starting weights; and the adar1 chain's own launch (`accelerate_config:`). The output must
  hold the weights every time: before `training.save_trained`, every rank saved and renamed its own
  folder onto the output while transformers wrote the weights on rank 0 only, so about half the
  2-rank runs ended "finished" without weights.
* Every `accelerate launch` and `hybridcot <stage>` command in docs/scaling.md uses real flags/keys.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import pytest
import torch

from conftest import dpo_pairs_file, sft_rows_file

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "recipes" / "accelerate"
DOC = REPO / "docs" / "scaling.md"

# name -> what docs/scaling.md promises: distributed type, processes, mixed precision, use_cpu.
EXPECTED = {
    "zero2": ("DEEPSPEED", 8, "bf16", False),
    "zero3": ("DEEPSPEED", 8, "bf16", False),
    "fsdp": ("FSDP", 8, "bf16", False),
    # MULTI_GPU + use_cpu: torchrun starts the ranks, which train on the CPU over gloo (see the file).
    "multi_cpu": ("MULTI_GPU", 2, "no", True),
}
ZERO_STAGE = {"zero2": 2, "zero3": 3}

LAUNCH_TIMEOUT = 300  # seconds per 2-rank run (about 20 s on an idle 2-core machine)


def _launch_parser():
    from accelerate.commands.launch import launch_command_parser

    return launch_command_parser()


def _resolve(name: str):
    """accelerate launch's own resolution of `--config_file <name>.yaml`: (args, defaults, env of the ranks)."""
    from accelerate.commands.launch import _validate_launch_command
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = _launch_parser().parse_args(["--config_file", str(CONFIG_DIR / f"{name}.yaml"), "--main_process_port",
                                        "29500", "-m", "hybridcot.cli", "sft"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # as launch_command does before deepspeed_launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(
            list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else []))
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, defaults, env


# ---------------------------------------------------------------- the config files


def test_the_configs_are_the_documented_ones() -> None:
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED)
    doc = DOC.read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f"recipes/accelerate/{name}.yaml" in doc, f"{name}.yaml is not in docs/scaling.md"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_accelerates_loader(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import ComputeEnvironment, DistributedType

    path = CONFIG_DIR / f"{name}.yaml"
    cfg = load_config_from_file(str(path))  # raises on unknown top-level keys
    assert isinstance(cfg, ClusterConfig)
    dist, procs, precision, use_cpu = EXPECTED[name]
    assert cfg.compute_environment == ComputeEnvironment.LOCAL_MACHINE
    assert cfg.distributed_type == DistributedType(dist)
    assert (cfg.num_processes, cfg.mixed_precision, cfg.use_cpu) == (procs, precision, use_cpu)
    assert (cfg.num_machines, cfg.machine_rank) == (1, 0)
    # accelerate launch copies deepspeed_config / fsdp_config keys onto its arguments and ignores the
    # ones it has no flag for: a misspelt key would be dropped without a word.
    flags = {a.dest for a in _launch_parser()._actions}
    for section in ("deepspeed_config", "fsdp_config"):
        for key in getattr(cfg, section):
            dest = key if section == "deepspeed_config" or key.startswith("fsdp_") else f"fsdp_{key}"
            assert dest in flags, f"{path.name}: {section}.{key} is not an `accelerate launch` option"
    # the header says how to launch it
    head = path.read_text(encoding="utf-8").split("\ncompute_environment:")[0]
    assert f"accelerate launch --config_file recipes/accelerate/{name}.yaml -m hybridcot.cli" in head


@pytest.mark.parametrize("name", sorted(ZERO_STAGE))
def test_deepspeed_configs_resolve_to_their_zero_stage(name: str) -> None:
    from accelerate.utils import DeepSpeedPlugin

    args, _, env = _resolve(name)
    assert args.use_deepspeed and not args.cpu and int(args.nproc_per_node) == 8
    stage = ZERO_STAGE[name]
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with mock.patch.dict(os.environ, env, clear=True):
        plugin = DeepSpeedPlugin()  # builds the DeepSpeed config from the env (deepspeed itself not needed)
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
    # ZeRO-3 must gather the 16-bit weights on save, else a saved model holds only this rank's shard
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def test_fsdp_config_resolves_to_fsdp2_full_shard_by_decoder_layer() -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel

    args, _, env = _resolve("fsdp")
    assert args.use_fsdp and int(args.nproc_per_node) == 8
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with mock.patch.dict(os.environ, env, clear=True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugin = FullyShardedDataParallelPlugin()
    assert not [str(w.message) for w in caught], "accelerate warns about the FSDP settings"
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True  # FSDP2's full shard
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.transformer_cls_names_to_wrap == list(Qwen2PreTrainedModel._no_split_modules)
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    assert plugin.cpu_ram_efficient_loading is True
    assert plugin.activation_checkpointing is False  # the stages' gradient_checkpointing does it


def test_multi_cpu_config_starts_ranks_with_torchrun() -> None:
    """With distributed_type MULTI_CPU accelerate 1.15 only starts ranks through mpirun and otherwise runs
    ONE process; the file therefore says MULTI_GPU + use_cpu, which goes through torchrun as the GPU
    configs do."""
    args, _, env = _resolve("multi_cpu")
    assert args.multi_gpu and not args.use_deepspeed and not args.use_fsdp
    assert args.use_cpu is True and int(args.nproc_per_node) == 2
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"


# ---------------------------------------------------------------- a real 2-rank run


def _accelerate() -> list[str]:
    """`accelerate` of this interpreter's environment (its console script, else the module)."""
    script = Path(sys.executable).parent / "accelerate"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]


def _launch_2_ranks(tmp_path: Path, stage: str, overrides: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    logs = tmp_path / "rank_logs"
    cmd = [*_accelerate(), "launch", "--config_file", str(CONFIG_DIR / "multi_cpu.yaml"),
           "--main_process_port", "0",  # a free port: runs side by side do not collide
           "--log_dir", str(logs), "--tee", "3",  # torchrun: one log folder per rank
           "-m", "hybridcot.cli", stage, *overrides]
    env = {**os.environ, "HYBRIDCOT_THREADS": "1", "OMP_NUM_THREADS": "1", "HYBRIDCOT_QUIET": "1",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{shlex.join(cmd)}` ran past {LAUNCH_TIMEOUT} s:\n{(e.stderr or b'')[-3000:]!r}")
    return proc, logs


def _check_2_rank_run(proc: subprocess.CompletedProcess, logs: Path, out: Path, start: Path, stage: str,
                      rows: int, steps: int, per_device: int) -> None:
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"accelerate launch exited with {proc.returncode}:\n{tail}"
    # 2 ranks took part: torchrun wrote a log folder for local ranks 0 and 1 ...
    ranks = sorted(p.name for p in logs.glob("*/attempt_0/*") if p.is_dir())
    assert ranks == ["0", "1"], f"rank log folders {ranks}:\n{tail}"
    # ... and they trained as ONE group of 2: an epoch is rows / (per_device x 2) steps (two
    # independent single-process runs would each count rows / per_device)
    log = json.loads((out / "train_log.json").read_text(encoding="utf-8"))
    assert log["steps"] == steps
    assert log["summary"]["epoch"] == pytest.approx(steps * per_device * 2 / rows)
    meta = json.loads((out / "hybridcot.json").read_text(encoding="utf-8"))
    assert meta["stage"] == stage and meta["steps"] == steps
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    assert weights and (out / "config.json").is_file(), \
        f"{stage} {out.name}: finished output without weights: {sorted(p.name for p in out.iterdir())}"
    from safetensors.torch import load_file

    from hybridcot.models import load_causal_lm

    model = load_causal_lm(out, dtype="float32")  # loads as an ordinary checkpoint
    trained = {k: v for k, v in model.state_dict().items()}
    before = {k: v for f in start.glob("*.safetensors") for k, v in load_file(f).items()}
    assert set(before) <= set(trained)
    assert all(bool(torch.isfinite(v).all()) for v in trained.values())
    changed = [k for k in before if not torch.equal(before[k], trained[k])]
    assert changed, "the weights are the starting model's"


def test_sft_under_accelerate_launch_with_2_cpu_ranks(tmp_path: Path, pico_model_dir: Path) -> None:
    out = tmp_path / "sft"
    proc, logs = _launch_2_ranks(tmp_path, "sft", [
        f"model={pico_model_dir}", f"data={sft_rows_file(tmp_path / 'rows.jsonl')}", f"output={out}", "max_steps=3",
        "per_device_train_batch_size=2", "logging_steps=1", "learning_rate=1e-3", "save_steps=100",
        "use_cpu=true"])
    _check_2_rank_run(proc, logs, out, pico_model_dir, "sft", rows=16, steps=3, per_device=2)


def test_dpo_under_accelerate_launch_with_2_cpu_ranks(tmp_path: Path, pico_model_dir: Path) -> None:
    out = tmp_path / "dpo"
    proc, logs = _launch_2_ranks(tmp_path, "dpo", [
        f"model={pico_model_dir}", f"pairs={dpo_pairs_file(tmp_path / 'pairs.jsonl', 16)}", f"output={out}", "max_steps=3",
        "per_device_train_batch_size=2", "gradient_accumulation_steps=1", "logging_steps=1", "learning_rate=1e-3",
        "save_steps=100", "use_cpu=true"])
    _check_2_rank_run(proc, logs, out, pico_model_dir, "dpo", rows=16, steps=3, per_device=2)


def test_adar1_training_step_launches_under_accelerate_config(tmp_path: Path, pico_model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain's own launch (`accelerate_config:`): the stage YAML beside the output, then
    `python -m accelerate.commands.launch --config_file <cfg> -m hybridcot.cli sft --config <yaml>`."""
    from hybridcot.adar1 import steps
    from hybridcot.adar1.sft import SFTStageConfig

    real_call, calls = subprocess.call, []

    def call(cmd, **kw):  # the chain's call, with a time limit
        calls.append(cmd)
        try:
            return real_call(cmd, timeout=LAUNCH_TIMEOUT, **kw)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{shlex.join(cmd)}` ran past {LAUNCH_TIMEOUT} s")

    monkeypatch.setattr(steps.subprocess, "call", call)
    for k, v in {"HYBRIDCOT_THREADS": "1", "OMP_NUM_THREADS": "1", "HYBRIDCOT_QUIET": "1"}.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "models" / "merge_sft"
    cfg = SFTStageConfig(model=str(pico_model_dir), data=str(sft_rows_file(tmp_path / "rows.jsonl")), output=str(out),
                         max_steps=3, per_device_train_batch_size=2, logging_steps=1, learning_rate=1e-3,
                         save_steps=100, use_cpu=True)
    config = str(CONFIG_DIR / "multi_cpu.yaml")
    assert steps.train_step(cfg, "sft", config) == "ran"
    stage_yaml = tmp_path / "models" / "merge_sft.sft.yaml"
    assert calls == [[sys.executable, "-m", "accelerate.commands.launch", "--config_file", config,
                      "-m", "hybridcot.cli", "sft", "--config", str(stage_yaml)]]
    log = json.loads((out / "train_log.json").read_text(encoding="utf-8"))
    assert log["summary"]["epoch"] == pytest.approx(3 * 2 * 2 / 16)  # 2 ranks
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors")), "finished output without weights"
    assert steps.train_step(cfg, "sft", config) == "skipped" and len(calls) == 1  # a rerun launches nothing


# ---------------------------------------------------------------- the commands in docs/scaling.md


def _doc_commands() -> list[list[str]]:
    """Every shell command of the bash blocks in docs/scaling.md (continuations joined, comments cut)."""
    text = DOC.read_text(encoding="utf-8")
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s(?:&&|;|\|\|)\s|\s&(?:\s|$)", line):
                part = part.strip()
                if part:
                    cmds.append(part)
    return cmds


def _words(cmd: str) -> list[str]:
    """The words of one documented command, shell variables as 0 (`--machine_rank $SLURM_NODEID`)."""
    words = shlex.split(re.sub(r"\$\{?[A-Za-z_]\w*\}?", "0", cmd))
    while words and (words[0] in ("srun", "do", "then") or "=" in words[0] and not words[0].startswith("-")):
        words = words[1:]  # VAR=value prefixes, srun, loop bodies
    if words[:2] == ["bash", "-c"] and len(words) > 2:
        return _words(words[2])
    return words


def test_accelerate_commands_in_the_docs_parse() -> None:
    cmds = [w for c in _doc_commands() if (w := _words(c))[:2] == ["accelerate", "launch"]]
    assert len(cmds) >= 4
    parser = _launch_parser()
    for words in cmds:
        try:
            args = parser.parse_args(words[2:])
        except SystemExit:
            pytest.fail(f"not an accelerate 1.15 command line: {shlex.join(words)}")
        if args.config_file:
            assert (REPO / args.config_file).is_file() or "<" in args.config_file, args.config_file


def test_hybridcot_commands_in_the_docs_use_real_keys() -> None:
    from hybridcot import cli

    checked = 0
    for cmd in _doc_commands():
        words = _words(cmd)
        if words[:2] == ["accelerate", "launch"]:
            words = words[words.index("hybridcot.cli") + 1:] if "hybridcot.cli" in words else []
        elif words[:1] == ["hybridcot"]:
            words = words[1:]
        else:
            continue
        if not words or words[0] not in cli.STAGES:
            continue
        cfg_cls, _ = cli._load(words[0])
        keys = set(cfg_cls.__dataclass_fields__)
        for w in words[1:]:
            if "=" in w and not w.startswith("-"):
                key = w.split("=", 1)[0]
                assert key.split(".")[0] in keys, f"{words[0]}: no config key {key!r} ({cmd})"
        checked += 1
    assert checked >= 3
