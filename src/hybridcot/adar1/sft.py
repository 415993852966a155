"""`hybridcot sft`: supervised fine-tuning on prompt/completion rows with TRL's `SFTTrainer`.

    hybridcot sft model=runs/demo/adar1/merge data=runs/demo/adar1/merge_sft/rows.jsonl \\
        output=runs/demo/adar1/merge_sft/model

Used for AdaR1's Merge+SFT baseline (the rows of `pairs.group_chosen_sft_rows`: the group-level
chosen responses), for making a Short model from a Long one (*paper*: lr 1e-5, 1 epoch, the
defaults here) and wherever a stage needs plain SFT. The loss covers the completion only. `data`
is a JSONL file (or a folder holding `sft.jsonl`) of conversational or plain prompt / completion
rows; other columns are dropped. The trainer is `hybridcot.training.sft_trainer`, the same
one the world build uses.

Output conventions are the dpo stage's: an ordinary checkpoint folder renamed into place when
complete, with `train_log.json` (every logged step), `config.yaml` and `hybridcot.json`; a finished
output is skipped on a rerun; TRL checkpoints in `<output>.trl/` make a killed run resumable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.adar1.dpo import check_training_fields, finish, load_model, load_rows, prepare_resume, trainer_args
from hybridcot.config import field

COLUMNS = ("prompt", "completion")


@dataclass
class SFTStageConfig:
    """SFT (TRL SFTTrainer, loss on the completion) from a checkpoint on prompt/completion JSONL."""

    model: str = field("", help="starting checkpoint folder")
    data: str = field("", help="prompt/completion JSONL (conversational or plain; a folder means its sft.jsonl); "
                               "other columns are dropped")
    output: str = field("", help="output checkpoint folder (TRL's resumable checkpoints go to <output>.trl/)")
    learning_rate: float = field(1e-5, help="peak learning rate (paper's Short model: 1e-5)")
    num_train_epochs: float = field(1.0, help="epochs over the rows (paper's Short model: 1); ignored when max_steps > 0")
    max_steps: int = field(-1, help="optimizer steps; -1 = run num_train_epochs")
    per_device_train_batch_size: int = field(8, help="rows per device per forward pass")
    gradient_accumulation_steps: int = field(1, help="forward passes per optimizer step")
    max_length: int = field(1024, help="maximum tokens of prompt + completion (longer ones are truncated)")
    lr_scheduler_type: str = field("cosine", help="learning-rate schedule (transformers name)")
    warmup_ratio: float = field(0.1, help="share of the steps spent warming up the learning rate")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    seed: int = field(0, help="seed for data order")
    logging_steps: int = field(10, help="log the loss every this many optimizer steps")
    save_steps: int = field(50, help="write a resumable TRL checkpoint to <output>.trl/ every this many steps")
    save_total_limit: int = field(2, help="TRL checkpoints kept in <output>.trl/")
    use_cpu: bool | None = field(None, help="train on CPU (null = only when CUDA is missing)")
    bf16: bool | None = field(None, help="bfloat16 mixed precision (null = on GPUs that support it; never on CPU)")
    gradient_checkpointing: bool = field(False, help="trade compute for memory (large models)")
    force: bool = field(False, help="retrain even if output already holds a finished run")

    def __post_init__(self) -> None:
        for key in ("model", "data", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        check_training_fields(self)


def run_sft(cfg: SFTStageConfig) -> dict:
    """Train (or resume, or skip when finished); returns what hybridcot.json holds."""
    from hybridcot.io import read_json
    from hybridcot.training import LossHistory, sft_trainer, trl_dir

    t0 = time.time()
    done, resume = prepare_resume(cfg, "sft")
    if done:
        print(f"sft: {cfg.output} is a finished run; skipping (force=true retrains)")
        return read_json(Path(cfg.output) / "hybridcot.json")
    rows = load_rows(cfg.data, COLUMNS, "sft.jsonl")
    tok, model = load_model(cfg.model)
    args = trainer_args(cfg, trl_dir(cfg.output))
    hist = LossHistory()
    trainer = sft_trainer(model, tok, rows, output_dir=args.pop("output_dir"), steps=None,
                          batch_size=args.pop("per_device_train_batch_size"), lr=args.pop("learning_rate"),
                          seed=args.pop("seed"), warmup_ratio=args.pop("warmup_steps"), history=hist,
                          completion_only_loss=True, train_sampling_strategy="random", **args)
    if resume:
        print(f"sft: resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    meta = finish(cfg, "sft", trainer, tok, hist, len(rows), t0)
    last = meta["final_loss"]
    print(f"sft: {len(rows)} rows, {meta['steps']} steps, final loss "
          f"{'n/a' if last is None else f'{last:.4f}'} in {meta['seconds']:.0f}s -> {cfg.output}")
    return meta
