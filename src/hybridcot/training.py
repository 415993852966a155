"""Thin wrappers around TRL's trainers shared by the world builder and the method stages.

Only what TRL does not decide for us lives here: CPU-friendly defaults, a loss-history hook, NaN
guards, `sft_train` (the one SFT loop: world build, `hybridcot sft`, Long⊗Short), the conventions
of a training stage's output (an ordinary checkpoint folder written to a temp dir and renamed,
with `hybridcot.json` marking it finished; TRL's resumable checkpoints in `<output>.trl/`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from hybridcot.io import HybridcotError


class LossHistory(TrainerCallback):
    """Collects logged losses; stops training on a NaN/inf loss (the last good weights are kept)."""

    def __init__(self):
        self.logs: list[dict] = []
        self.log_history: list[dict] = []  # the trainer's whole log at the end (includes logs before a resume)
        self.bad_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs:
            return
        self.logs.append({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_loss = loss
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kw):
        self.log_history = [dict(e) for e in state.log_history]

    @property
    def losses(self) -> list[float]:
        return [entry["loss"] for entry in self.logs if "loss" in entry]


def cpu_threads() -> int:
    """Intra-op threads for CPU training: $HYBRIDCOT_THREADS, else every core this process may use.

    On a busy machine set HYBRIDCOT_THREADS=1: a second OpenMP thread that has to share a core
    spin-waits at every barrier and makes small matrix products ~10x slower (measured here).
    """
    n = int(os.environ.get("HYBRIDCOT_THREADS", "0") or 0)
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def save_checkpoint(model, tokenizer, out_dir: str | Path, metadata: dict | None = None,
                    write_extra: Callable[[Path], None] | None = None) -> Path:
    """Save model + tokenizer to `out_dir` atomically (written in a temp dir beside it, then renamed).

    `metadata` becomes `hybridcot.json`; `write_extra(tmp_dir)` may add files (logs, config) so they
    appear together with the weights or not at all.
    """
    import json

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if write_extra is not None:
            write_extra(tmp)
        if metadata is not None:
            (tmp / "hybridcot.json").write_text(json.dumps(metadata, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_finite(history: LossHistory, what: str) -> None:
    if history.bad_loss is not None:
        raise HybridcotError(f"{what}: loss became {history.bad_loss} — training stopped; "
                             "lower the learning rate (the last good checkpoint was kept)")


# ---------------------------------------------------------------- training stages (sft, dpo)


def device_flags(use_cpu: bool | None = None, bf16: bool | None = None) -> dict[str, bool]:
    """TrainingArguments' use_cpu/bf16: None = auto (CPU and float32 without CUDA; bf16 where supported)."""
    cuda = torch.cuda.is_available()
    cpu = (not cuda) if use_cpu is None else bool(use_cpu)
    if bf16 is None:
        bf16 = not cpu and cuda and torch.cuda.is_bf16_supported()
    if cpu:
        cpu_threads()
    return {"use_cpu": cpu, "bf16": bool(bf16 and not cpu)}


def show_progress() -> bool:
    """Progress bars only on a terminal (logs and CI output stay clean)."""
    return sys.stderr.isatty()


def trl_dir(output: str | Path) -> Path:
    """Where a training stage keeps TRL's resumable checkpoints: `<output>.trl/` beside the output."""
    output = Path(output)
    return output.parent / f"{output.name}.trl"


def last_trl_checkpoint(output: str | Path) -> str | None:
    """The newest `checkpoint-N` folder under `<output>.trl/`, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    d = trl_dir(output)
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def finished_stage(output: str | Path, stage: str, force: bool = False) -> bool:
    """True when `output` is a finished checkpoint of `stage` (and not `force`); refuse foreign folders.

    A stage's output only appears complete (save_checkpoint renames it into place with its
    `hybridcot.json`), so its presence means done. Any other non-empty folder there is an error
    rather than something to overwrite.
    """
    import json

    output = Path(output)
    if not output.exists():
        return False
    meta_path = output / "hybridcot.json"
    meta: Any = None
    if meta_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if isinstance(meta, dict) and meta.get("stage") == stage:
        return not force
    if output.is_dir() and not any(output.iterdir()):
        return False
    raise HybridcotError(f"{output}: exists and is not a finished `hybridcot {stage}` output "
                         "(no hybridcot.json with its stage); choose a new folder or remove it")


def sft_trainer(model, tok, rows: list[dict], *, output_dir: str | Path, steps: int | None = None,
                batch_size: int, lr: float, seed: int, warmup_ratio: float = 0.05,
                history: LossHistory | None = None, **sft_args: Any):
    """A TRL `SFTTrainer` on prompt/completion rows (loss on the completion only), not yet trained.

    `steps` = optimizer steps (None: `num_train_epochs` from sft_args, default 1 epoch). Defaults
    are the world build's (no saving, cosine, group_by_length); `sft_args` override any SFTConfig
    field. use_cpu/bf16 default to `device_flags()`: CPU only without CUDA.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    flags = device_flags(sft_args.pop("use_cpu", None), sft_args.pop("bf16", None))
    # The world build's schedule (fixed steps, integer warmup) is kept exactly: its models are cached by config.
    warmup = max(1, int(warmup_ratio * steps)) if steps else warmup_ratio
    args = dict(
        output_dir=str(output_dir), max_steps=steps or -1, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup, weight_decay=0.0,
        logging_steps=max(1, (steps or 200) // 20), save_strategy="no", report_to="none", seed=seed,
        data_seed=seed, max_length=1024, completion_only_loss=True, dataloader_num_workers=0,
        disable_tqdm=True, train_sampling_strategy="group_by_length", **flags,
    )
    args.update(sft_args)
    return SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=Dataset.from_list(rows),
                      processing_class=tok, callbacks=[history if history is not None else LossHistory()])


def sft_train(model, tok, rows: list[dict], *, steps: int | None = None, batch_size: int, lr: float, seed: int,
              what: str, warmup_ratio: float = 0.05, output_dir: str | Path | None = None,
              resume_from: str | None = None, history: LossHistory | None = None,
              **sft_args: Any) -> tuple[object, list[float]]:
    """SFT with TRL on prompt/completion rows (see `sft_trainer`). Returns (model, losses).

    Without `output_dir` nothing is kept on disk (the world build); with it TRL writes checkpoints
    there per `save_strategy`, and `resume_from` continues one. Stops with HybridcotError on a
    NaN/inf loss. `history` (a LossHistory) receives every log.
    """
    hist = history if history is not None else LossHistory()
    with contextlib.ExitStack() as stack:
        if output_dir is None:
            output_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridcot-sft-"))
        trainer = sft_trainer(model, tok, rows, output_dir=output_dir, steps=steps, batch_size=batch_size, lr=lr,
                              seed=seed, warmup_ratio=warmup_ratio, history=hist, **sft_args)
        trainer.train(resume_from_checkpoint=resume_from)
    check_finite(hist, what)
    return trainer.model, hist.losses
