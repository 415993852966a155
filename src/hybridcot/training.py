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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from hybridcot.io import HybridcotError, swap_dir_into_place


class LossHistory(TrainerCallback):
    """Collects logged losses and guards every trainer the project builds (SFT, DPO, GRPO) against a
    non-finite loss or gradient.

    Transformers hides a NaN/inf step loss from the logs (`logging_nan_inf_filter` logs the running
    mean instead), so the guard looks at the gradients themselves before every optimizer step. On a
    NaN/inf gradient norm it drops the gradients (the optimizer step then leaves the weights as they
    were), stops training and cancels that step's checkpoint, so `<output>.trl/` keeps only good
    checkpoints. A logged NaN/inf loss or grad_norm stops training too. The caller raises with
    `check_finite` after `train()` returns, before anything is saved as the final model.
    """

    def __init__(self):
        self.logs: list[dict] = []
        self.log_history: list[dict] = []  # the trainer's whole log at the end (includes logs before a resume)
        self.bad_loss: float | None = None
        self.bad_what: str = "loss"  # which value went bad: loss | grad norm
        self.bad_step: int | None = None  # the optimizer step (1-based) whose loss or gradient went bad
        self.last_checkpoint: str | None = None  # the newest checkpoint under output_dir when training stopped

    def _stop(self, args, state, control, what: str, value: float, step: int) -> None:
        if self.bad_loss is None:
            self.bad_loss, self.bad_what, self.bad_step = float(value), what, step
            with contextlib.suppress(Exception):
                from transformers.trainer_utils import get_last_checkpoint

                d = getattr(args, "output_dir", None)
                self.last_checkpoint = get_last_checkpoint(d) if d and os.path.isdir(d) else None
        control.should_training_stop = True
        control.should_save = False

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if model is None or self.bad_loss is not None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))
        if bool(torch.isfinite(norm)):
            return
        for p in model.parameters():  # no update from this step: the weights stay the last good ones
            p.grad = None
        self._stop(args, state, control, "grad norm", norm.item(), state.global_step + 1)

    def on_step_end(self, args, state, control, **kw):
        if self.bad_loss is not None:  # after DefaultFlowCallback: cancel a checkpoint due at this step
            control.should_save = False
            control.should_training_stop = True

    on_epoch_end = on_step_end  # (save_strategy="epoch" saves here)

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs:
            return
        self.logs.append({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
        for key, what in (("loss", "loss"), ("grad_norm", "grad norm")):
            v = logs.get(key)
            if isinstance(v, (int, float)) and not math.isfinite(v):
                self._stop(args, state, control, what, v, state.global_step)
                break

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
                    write_extra: Callable[[Path], None] | None = None, state_dict: dict | None = None) -> Path:
    """Save model + tokenizer to `out_dir` atomically (written in a temp dir beside it, then renamed).

    `metadata` becomes `hybridcot.json`; `write_extra(tmp_dir)` may add files (logs, config) so they
    appear together with the weights or not at all. `state_dict`: the weights to write instead of
    the model's own (the full weights gathered from every process under ZeRO-3/FSDP).
    """
    import json

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if state_dict is not None:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if write_extra is not None:
            write_extra(tmp)
        if metadata is not None:
            (tmp / "hybridcot.json").write_text(json.dumps(metadata, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        swap_dir_into_place(tmp, out_dir)  # an older out_dir is removed only once the new one is in place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def save_trained(trainer, tokenizer, out_dir: str | Path, metadata: dict | None = None,
                 write_extra: Callable[[Path], None] | None = None, cleanup: Path | None = None) -> Path:
    """A TRL trainer's model saved by `save_checkpoint`, once, however many processes train it.

    Under `accelerate launch` every process reaches this point: the weights are gathered from all of
    them (`accelerator.get_state_dict`, a collective call, whole tensors under ZeRO-3/FSDP), only the
    main process writes and renames the folder (and removes `cleanup`, the TRL checkpoints), and the
    others wait until it is in place. Measured before: with 2 processes each renamed its own
    temp folder onto the output and half the runs ended with a folder without weights.
    """
    acc = getattr(trainer, "accelerator", None)
    several = acc is not None and acc.num_processes > 1
    state = acc.get_state_dict(trainer.model) if several else None  # collective: every process calls it
    if not several or acc.is_main_process:
        model = acc.unwrap_model(trainer.model) if acc is not None else trainer.model
        save_checkpoint(model, tokenizer, out_dir, metadata, write_extra=write_extra, state_dict=state)
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    if several:
        acc.wait_for_everyone()
    return Path(out_dir)


def check_finite(history: LossHistory, what: str) -> None:
    """One HybridcotError line naming the stage (`what`) and step when the guard stopped training."""
    if history.bad_loss is not None:
        step = f" at step {history.bad_step}" if history.bad_step is not None else ""
        kept = (f"the last good checkpoint is {history.last_checkpoint}" if history.last_checkpoint
                else "no checkpoint was saved before it")
        raise HybridcotError(f"{what}: {history.bad_what} became {history.bad_loss}{step}; training stopped and "
                             f"no final model was written ({kept}); lower the learning rate")


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
    """Progress bars only on a terminal and without HYBRIDCOT_QUIET=1 (`ui.progress_enabled`)."""
    from hybridcot.ui import progress_enabled

    return progress_enabled()


def trl_dir(output: str | Path) -> Path:
    """Where a training stage keeps TRL's resumable checkpoints: `<output>.trl/` beside the output."""
    output = Path(output)
    return output.parent / f"{output.name}.trl"


def last_trl_checkpoint(output: str | Path) -> str | None:
    """The newest complete `checkpoint-N` folder under `<output>.trl/`, or None.

    The Trainer writes a checkpoint in place, its trainer_state.json last: a kill while it saves
    leaves a folder without one (or with a torn one), which is passed over rather than resumed from.
    """
    import json
    import re

    d = trl_dir(output)
    if not d.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()]
    for _, p in sorted(found, reverse=True):
        try:
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return str(p)
    return None


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


def tokenize_rows(tok, rows: list[dict], cache: dict[str, list[int]] | None = None,
                  max_length: int | None = None) -> dict[str, list]:
    """Conversational prompt/completion rows -> `input_ids` and `labels` (-100 on the prompt), the
    columns TRL's SFTTrainer builds itself, computed the same way (chat template with the generation
    prompt for the prompt, the whole conversation for prompt+completion, the completion starting
    where the two token lists diverge) but tokenizing each distinct text once: `cache` (text -> ids)
    can be shared between trainers of one process. The world build's three stages reuse most of
    their texts (Long's and Short's rows are the base's; repeated levels repeat rows), which makes
    tokenizing most of a stage's setup free. Sequences are cut to `max_length` (TRL's keep_start
    truncation); `length` holds each one's length, for the length-grouped sampler. A test checks the
    columns equal TRL's own."""
    from trl.data_utils import common_prefix_length

    cache = {} if cache is None else cache
    prompts = tok.apply_chat_template([r["prompt"] for r in rows], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template([r["prompt"] + r["completion"] for r in rows], tokenize=False)
    todo = list(dict.fromkeys(t for t in [*prompts, *full] if t not in cache))
    if todo:
        for text, enc in zip(todo, tok(todo, add_special_tokens=False)["input_ids"]):
            cache[text] = enc
    input_ids, labels = [], []
    for p, f in zip(prompts, full):
        p_ids, ids = cache[p], cache[f]
        n = common_prefix_length(p_ids, ids)
        input_ids.append(ids[:max_length])
        labels.append(([-100] * n + ids[n:])[:max_length])
    return {"input_ids": input_ids, "labels": labels, "length": [len(x) for x in input_ids]}


def sft_trainer(model, tok, rows: list[dict], *, output_dir: str | Path, steps: int | None = None,
                batch_size: int, lr: float, seed: int, warmup_ratio: float = 0.05,
                history: LossHistory | None = None, token_cache: dict[str, list[int]] | None = None,
                **sft_args: Any):
    """A TRL `SFTTrainer` on prompt/completion rows (loss on the completion only), not yet trained.

    `steps` = optimizer steps (None: `num_train_epochs` from sft_args, default 1 epoch). Defaults
    are the world build's (no saving, cosine, group_by_length); `sft_args` override any SFTConfig
    field. use_cpu/bf16 default to `device_flags()`: CPU only without CUDA. With `token_cache` (a
    dict, possibly shared between calls) the rows are tokenized by `tokenize_rows` instead of by
    TRL: the same columns, each distinct text tokenized once.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    flags = device_flags(sft_args.pop("use_cpu", None), sft_args.pop("bf16", None))
    max_length = sft_args.pop("max_length", 1024)
    own = token_cache is not None and bool(rows) and "prompt" in rows[0] and isinstance(rows[0]["prompt"], list)
    if own:  # trainer-ready columns: TRL's per-row preparation pass is skipped
        dataset = Dataset.from_dict(tokenize_rows(tok, rows, token_cache, max_length))
        sft_args.setdefault("dataset_kwargs", {"skip_prepare_dataset": True})
    else:
        dataset = Dataset.from_list(rows)
    # The world build's schedule (fixed steps, integer warmup) is kept exactly: its models are cached by config.
    warmup = max(1, int(warmup_ratio * steps)) if steps else warmup_ratio
    args = dict(
        output_dir=str(output_dir), max_steps=steps or -1, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup, weight_decay=0.0,
        logging_steps=max(1, (steps or 200) // 20), save_strategy="no", report_to="none", seed=seed,
        data_seed=seed, max_length=max_length, completion_only_loss=True, dataloader_num_workers=0,
        disable_tqdm=not show_progress(), train_sampling_strategy="group_by_length", **flags,
    )
    args.update(sft_args)
    return SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=dataset, processing_class=tok,
                      callbacks=[history if history is not None else LossHistory()])


def sft_train(model, tok, rows: list[dict], *, steps: int | None = None, batch_size: int, lr: float, seed: int,
              what: str, warmup_ratio: float = 0.05, output_dir: str | Path | None = None,
              resume_from: str | None = None, history: LossHistory | None = None,
              token_cache: dict[str, list[int]] | None = None, **sft_args: Any) -> tuple[object, list[float]]:
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
                              seed=seed, warmup_ratio=warmup_ratio, history=hist, token_cache=token_cache,
                              **sft_args)
        trainer.train(resume_from_checkpoint=resume_from)
    check_finite(hist, what)
    return trainer.model, hist.losses
