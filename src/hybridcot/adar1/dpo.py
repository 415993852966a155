"""`hybridcot dpo`: AdaR1 step 6, DPO on the bi-level pairs with TRL's `DPOTrainer`.

    hybridcot dpo model=runs/demo/adar1/merge pairs=runs/demo/adar1/pairs output=runs/demo/adar1/dpo

Starts from `model` (the merged checkpoint) and references the same weights (TRL loads a frozen
copy from the folder when `ref_model` is None). Sigmoid loss, β = 0.05 (METHODS.md: 0.1, 0.05 for
small models), paper lr 5e-7, 2 epochs, batch 8 x 4 accumulation = 32, cosine with 10% warmup;
the tiny-world recipes raise the learning rate. `pairs` is the pairs stage's `pairs.jsonl` (or its
folder): conversational or plain prompt / chosen / rejected, every other column is dropped here.

Output: an ordinary checkpoint folder, renamed into place only when complete, with
`train_log.json` (every logged step: loss, rewards/chosen, rewards/rejected, rewards/margins,
rewards/accuracies, ...), `config.yaml` and `hybridcot.json` (stage, base model, steps). A
finished output is skipped on a rerun (`force=true` retrains). While training, TRL checkpoints go
to `<output>.trl/` every `save_steps`; a killed run resumes from the newest one, and the folder is
removed once the model is saved. On CPU (no CUDA, or use_cpu=true) it trains in float32.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridcot.config import config_dict, field, same_setting, save_config
from hybridcot.io import HybridcotError, iter_jsonl, write_json

COLUMNS = ("prompt", "chosen", "rejected")
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sigmoid_norm")
# Settings a resumed run may change without invalidating TRL's checkpoints.
RESUME_FREE = ("force", "logging_steps", "save_steps", "save_total_limit")


@dataclass
class DPOStageConfig:
    """DPO (TRL DPOTrainer) from a checkpoint on a preference JSONL; the reference is the starting model."""

    model: str = field("", help="starting checkpoint folder (AdaR1: the merged model); also the DPO reference")
    pairs: str = field("", help="preference JSONL with prompt/chosen/rejected (the pairs stage's pairs.jsonl "
                                "or its folder); other columns are dropped")
    output: str = field("", help="output checkpoint folder (TRL's resumable checkpoints go to <output>.trl/)")
    beta: float = field(0.05, help="DPO β: strength of the pull towards the reference (METHODS.md: 0.05 small models)")
    loss_type: str = field("sigmoid", help=f"DPO loss: {' | '.join(LOSS_TYPES)} (paper: sigmoid)")
    sft_weight: float = field(0.0, help="weight of an NLL (SFT) term on the chosen responses added to the DPO loss "
                                        "(TRL loss_type [..., 'sft'], as RPO); 0 = the paper's pure DPO")
    learning_rate: float = field(5e-7, help="peak learning rate (paper: 5e-7; tiny-world recipes raise it)")
    num_train_epochs: float = field(2.0, help="epochs over the pairs (paper: 2); ignored when max_steps > 0")
    max_steps: int = field(-1, help="optimizer steps; -1 = run num_train_epochs")
    per_device_train_batch_size: int = field(8, help="pairs per device per forward pass")
    gradient_accumulation_steps: int = field(4, help="forward passes per optimizer step (8 x 4 = paper's batch 32)")
    max_length: int = field(1024, help="maximum tokens of prompt + response (longer ones are truncated)")
    lr_scheduler_type: str = field("cosine", help="learning-rate schedule (transformers name)")
    warmup_ratio: float = field(0.1, help="share of the steps spent warming up the learning rate")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    seed: int = field(0, help="seed for the data order")
    logging_steps: int = field(10, help="log loss and rewards every this many optimizer steps")
    save_steps: int = field(50, help="write a resumable TRL checkpoint to <output>.trl/ every this many steps")
    save_total_limit: int = field(2, help="TRL checkpoints kept in <output>.trl/")
    use_cpu: bool | None = field(None, help="train on CPU (null = only when CUDA is missing)")
    bf16: bool | None = field(None, help="bfloat16 mixed precision (null = on GPUs that support it; never on CPU)")
    gradient_checkpointing: bool = field(False, help="trade compute for memory (large models)")
    force: bool = field(False, help="retrain even if output already holds a finished run")

    def __post_init__(self) -> None:
        for key in ("model", "pairs", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.sft_weight < 0:
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight}")
        check_training_fields(self)


def check_training_fields(cfg: Any) -> None:
    """Validation shared by the dpo and sft stage configs."""
    if cfg.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise ValueError(f"max_steps must be > 0 or -1 (use num_train_epochs), got {cfg.max_steps}")
    if cfg.max_steps == -1 and cfg.num_train_epochs <= 0:
        raise ValueError(f"num_train_epochs must be > 0, got {cfg.num_train_epochs}")
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "logging_steps",
                "save_steps", "save_total_limit"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if not 0 <= cfg.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay}")


# ---------------------------------------------------------------- reading the data


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in v)


def load_rows(path: str | Path, columns: tuple[str, ...], default_name: str) -> list[dict]:
    """The `columns` of every row of a JSONL file (or `<folder>/<default_name>`), checked.

    Each column is a non-empty string or a non-empty list of {role, content} messages, and every
    row uses the same kind per column (TRL needs one format per dataset).
    """
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise HybridcotError(f"{path}: file not found")
    rows: list[dict] = []
    kinds: dict[str, tuple[str, int]] = {}
    for lineno, rec in iter_jsonl(path):
        row = {}
        for col in columns:
            v = rec.get(col)
            kind = "messages" if _is_messages(v) else "text" if isinstance(v, str) and v.strip() else None
            if kind is None:
                raise HybridcotError(f"{path}:{lineno}: field '{col}' must be a non-empty string or a list of "
                                     f"{{role, content}} messages, got {type(v).__name__}")
            first = kinds.setdefault(col, (kind, lineno))
            if first[0] != kind:
                raise HybridcotError(f"{path}:{lineno}: field '{col}' is {kind} but line {first[1]} has {first[0]} "
                                     "(one format per file)")
            row[col] = v
        rows.append(row)
    if not rows:
        raise HybridcotError(f"{path}: no rows")
    return rows


# ---------------------------------------------------------------- the stage


def trainer_args(cfg: Any, output_dir: Path) -> dict:
    """TrainingArguments shared by the dpo and sft stages, from a stage config."""
    from hybridcot.training import device_flags
    from hybridcot.ui import progress_enabled

    return dict(
        output_dir=str(output_dir), learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
        lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, report_to="none",
        dataloader_num_workers=0, disable_tqdm=not progress_enabled(),
        gradient_checkpointing=cfg.gradient_checkpointing, **device_flags(cfg.use_cpu, cfg.bf16),
    )


def prepare_resume(cfg: Any, stage: str) -> tuple[bool, str | None]:
    """(already finished?, TRL checkpoint to resume from) for a training stage's output."""
    from hybridcot.training import finished_stage, last_trl_checkpoint, trl_dir

    out = Path(cfg.output)
    if finished_stage(out, stage, cfg.force):
        _check_finished_config(cfg, out)
        return True, None
    tdir = trl_dir(out)
    saved = tdir / "stage_config.yaml"
    if cfg.force and tdir.exists():
        shutil.rmtree(tdir)
    last = last_trl_checkpoint(out)
    if last is not None and saved.is_file():
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        new = config_dict(cfg)
        if (k := _first_change(old, new, RESUME_FREE)) is not None:
            raise HybridcotError(f"{tdir}: holds a run with {k}={old[k]!r} (now {new[k]!r}); "
                                 f"set force=true to start over or remove {tdir}")
    tdir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, tdir, name="stage_config.yaml")
    return False, last


# Inputs and outputs: one input can be spelled several ways (a pairs folder or its pairs.jsonl), and an
# RL round's output is its round folder inside the stage's; only the training settings are compared.
_IO_KEYS = ("output", "model", "data", "pairs", "long_model", "short_model", "problems")


def _check_finished_config(cfg: Any, out: Path) -> None:
    """A finished output is reused only for the config that made it: a recipe that changed, say,
    the epochs would otherwise keep the old model without a word. Outputs from before configs were
    recorded pass."""
    from hybridcot.io import read_json

    old = read_json(out / "hybridcot.json").get("config")
    if not isinstance(old, dict):
        return
    new = json.loads(json.dumps(config_dict(cfg)))  # as hybridcot.json holds it (tuples as lists)
    if (k := _first_change(old, new, (*RESUME_FREE, *_IO_KEYS))) is not None:
        raise HybridcotError(f"{out}: holds a finished run with {k}={old[k]!r} (now {new[k]!r}); "
                             "set force=true to retrain or choose a new output folder")


def _first_change(old: dict, new: dict, skip: tuple[str, ...]) -> str | None:
    """The first key of `new`, outside `skip`, whose value differs from the one `old` recorded."""
    return next((k for k in new if k not in skip and k in old and not same_setting(old[k], new[k])), None)


def likelihood_shift(log: list[dict], window: int = 3) -> dict | None:
    """How DPO moved the policy's log-probabilities of the chosen and the rejected responses: the mean
    of the first and of the last `window` logged values of TRL's logps/chosen and logps/rejected.
    `chosen_fell` flags likelihood displacement: the chosen responses became less likely too (by more
    than 5% of their starting log-probability), which on the v7 world went with a collapsing model."""
    rows = [e for e in log if "logps/chosen" in e and "logps/rejected" in e]
    if not rows:
        return None
    first, last = rows[:window], rows[-window:]
    mean = lambda es, k: sum(e[k] for e in es) / len(es)  # noqa: E731
    out = {k: [round(mean(first, f"logps/{k}"), 4), round(mean(last, f"logps/{k}"), 4)] for k in ("chosen", "rejected")}
    c0, c1 = out["chosen"]
    out["chosen_fell"] = len(rows) > window and c1 < c0 - 0.05 * abs(c0)
    return out


def finish(cfg: Any, stage: str, trainer: Any, tok: Any, hist: Any, n_rows: int, t0: float,
           extra_meta: dict | None = None) -> dict:
    """Save the trained model with train_log.json, config.yaml and hybridcot.json; drop `<output>.trl/`."""
    from hybridcot.training import check_finite, save_trained, trl_dir

    check_finite(hist, f"{stage} {cfg.output}")
    log = hist.log_history or hist.logs
    steps = [e for e in log if "loss" in e]
    summary = next((e for e in reversed(log) if "train_runtime" in e), {})
    meta = {"stage": stage, "base_model": str(cfg.model), "rows": n_rows, "steps": trainer.state.global_step,
            "final_loss": steps[-1]["loss"] if steps else None, "seconds": time.time() - t0,
            "config": config_dict(cfg), **(extra_meta or {})}

    def extra(tmp: Path) -> None:
        write_json(tmp / "train_log.json", {"stage": stage, "steps": trainer.state.global_step, "log": steps,
                                            "summary": summary})
        save_config(cfg, tmp)

    save_trained(trainer, tok, cfg.output, meta, write_extra=extra, cleanup=trl_dir(cfg.output))
    return meta


def load_model(path: str):
    """Tokenizer and float32 model from a checkpoint folder (one-line error when it is not one).

    Safetensors only and no remote code unless asked (`hybridcot.models.load_causal_lm`).
    """
    from hybridcot.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(path, dtype="float32")  # checks the folder first (config.json, weights)
    tok = load_tokenizer(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model


def run_dpo(cfg: DPOStageConfig) -> dict:
    """Train (or resume, or skip when finished); returns what hybridcot.json holds."""
    from hybridcot.io import read_json

    t0 = time.time()
    done, resume = prepare_resume(cfg, "dpo")
    if done:
        print(f"dpo: {cfg.output} is a finished run; skipping (force=true retrains)")
        return read_json(Path(cfg.output) / "hybridcot.json")
    rows = load_rows(cfg.pairs, COLUMNS, "pairs.jsonl")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from hybridcot.training import LossHistory, trl_dir

    tok, model = load_model(cfg.model)
    losses = dict(loss_type=[cfg.loss_type, "sft"], loss_weights=[1.0, cfg.sft_weight]) if cfg.sft_weight > 0 \
        else dict(loss_type=[cfg.loss_type])
    args = DPOConfig(beta=cfg.beta, **losses, **trainer_args(cfg, trl_dir(cfg.output)))
    hist = LossHistory()
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, callbacks=[hist])
    if resume:
        print(f"dpo: resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    shift = likelihood_shift(hist.log_history or hist.logs)
    meta = finish(cfg, "dpo", trainer, tok, hist, len(rows), t0, extra_meta={"logps_shift": shift})
    last = meta["final_loss"]
    print(f"dpo: {len(rows)} pairs, {meta['steps']} steps, final loss "
          f"{'n/a' if last is None else f'{last:.4f}'} in {meta['seconds']:.0f}s -> {cfg.output}")
    if shift:
        (c0, c1), (r0, r1) = shift["chosen"], shift["rejected"]
        print(f"dpo: log-prob of chosen {c0:.1f} -> {c1:.1f}, rejected {r0:.1f} -> {r1:.1f}"
              + (" -- the chosen responses became less likely too (likelihood displacement): a lower "
                 "learning_rate or sft_weight > 0 counters it" if shift["chosen_fell"] else ""))
    return meta
