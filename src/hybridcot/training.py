"""Thin wrappers around TRL's trainers shared by the world builder and the method stages.

Only what TRL does not decide for us lives here: CPU-friendly defaults, a loss-history hook, NaN
guards and writing the result as an ordinary checkpoint folder (temp dir, then rename).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import TrainerCallback

from hybridcot.io import HybridcotError


class LossHistory(TrainerCallback):
    """Collects logged losses; stops training on a NaN/inf loss (the last good weights are kept)."""

    def __init__(self):
        self.logs: list[dict] = []
        self.bad_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs:
            return
        self.logs.append({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_loss = loss
            control.should_training_stop = True

    @property
    def losses(self) -> list[float]:
        return [entry["loss"] for entry in self.logs if "loss" in entry]


def cpu_threads() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def save_checkpoint(model, tokenizer, out_dir: str | Path, metadata: dict | None = None) -> Path:
    """Save model + tokenizer to `out_dir` atomically (written in a temp dir beside it, then renamed)."""
    import json

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if metadata is not None:
            (tmp / "hybridcot.json").write_text(json.dumps(metadata, indent=2) + "\n")
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
