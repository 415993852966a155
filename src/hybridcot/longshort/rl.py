"""`hybridcot rl`: Long⊗Short step 6, multi-turn RL of the two thinkers with TRL's `GRPOTrainer`.

    hybridcot rl long_model=runs/ls/sft/long short_model=runs/ls/sft/short problems=world:train:2000 \\
        output=runs/ls/rl rounds=long,short steps=100

A round trains ONE thinker (`rounds` lists them in order, default long then short) while the other,
frozen, is its environment. Each training step TRL hands `rollout_func` the step's prompts (the
problems' chats, already repeated `num_generations` times); it plays a whole dialogue per prompt
(`collaborate`'s engine: turns alternate, long first, until a final short turn or `max_turns`):
the trained thinker's turns are sampled here from the trainer's current weights, with their
log-probs under the temperature-scaled distribution TRL scores (log_softmax(logits / temperature)),
the partner's turns by a generator on the frozen partner checkpoint (`partner_backend`, any backend).

Token layout of one rollout (what TRL trains on): `prompt_ids` = the trained thinker's chat up to
its first turn (chat template, generation prompt; for the short thinker that includes the long
thinker's first turn); `completion_ids` = everything after, in the trained thinker's view: its own
sampled tokens (EOS included; `env_mask` 1, their log-probs) and the chat-template glue + partner
turns between them (`env_mask` 0, log-prob 0.0, outside the loss and the length). The sampled tokens
are kept as sampled (token in, token out), so `prompt_ids + completion_ids` is the chat-template
rendering of the thinker's full view with its own turns as written. That equals the tokenization
of `protocol.messages_for(role, problem, turns)` whenever the turns were written canonically (tags as
`render` writes them); the template's trailing whitespace after the last message is left out. The
template must extend a conversation by appending (checked on every turn; templates that rewrite
earlier turns, e.g. dropping old reasoning, are refused with an error).

Rewards (`longshort.rewards.REWARDS`, weights in `rewards`, each logged by TRL as
`rewards/<name>/mean`): correctness + format + length (Kimi-1.5 style, over the trained thinker's
tokens, per group of one problem's rollouts), 1 / 1 / 1.

Outputs in `output/`: `round-<i>-<role>/` per round, an ordinary checkpoint folder (weights,
tokenizer, `hybridcot.json` with stage "rl", role, round and the parent checkpoints, `train_log.json`
with every logged step incl. each reward's mean, `config.yaml`); `long/` and `short/`, the final
thinkers (the last round of each role, else the input model) as plain checkpoint folders for the
stages after this one (hard links to those files where the filesystem allows, else copies);
`final.json` (those paths, where they came from, the rounds); `config.yaml`. Finished rounds are
skipped on a rerun (`force=true` retrains them); a killed round resumes from its TRL checkpoint in
`round-<i>-<role>.trl/`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from hybridcot.config import config_dict, field, save_config
from hybridcot.data.world import PROMPT_SUFFIX
from hybridcot.generation import SamplingConfig, load_generator, resolve_backend
from hybridcot.io import HybridcotError, read_json, swap_dir_into_place, write_json
from hybridcot.longshort.collaborate import DialogueState, new_states, step_dialogues
from hybridcot.longshort.protocol import LONG, ROLES, SHORT, messages_for
from hybridcot.longshort.rewards import REWARDS

BACKENDS = ("auto", "hf", "vllm", "http")  # http: servers from $HYBRIDCOT_HTTP_URLS
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")  # TRL 1.16's


def partner_of(role: str) -> str:
    return SHORT if role == LONG else LONG


# ---------------------------------------------------------------- one dialogue from the trained side


def problem_of(prompt: Any) -> str:
    """The problem text behind a dataset prompt (the chat `messages_for(role, problem, [])` starts with)."""
    content = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    suffix = " " + PROMPT_SUFFIX
    if not isinstance(content, str) or not content.endswith(suffix):
        raise HybridcotError(f"rl: a prompt must be a problem's chat ending in the prompt suffix, got {content!r:.80}")
    return content[:-len(suffix)]


def view_text(tokenizer: Any, role: str, state: DialogueState, own: Sequence[str] | None, generation: bool) -> str:
    """The chat-template text of `role`'s view of a dialogue; `own` replaces its own turns' contents
    (the raw text it wrote) where given."""
    msgs = messages_for(role, state.problem, state.turns)
    if own is not None:
        it = iter(own)
        msgs = [{**m, "content": next(it)} if m["role"] == "assistant" else m for m in msgs]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation)


class TokenView:
    """The trained thinker's side of one dialogue as tokens: its prompt, then a completion of its own
    sampled tokens (mask 1, their log-probs) and the template glue + partner turns (mask 0, 0.0)."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.prompt_ids: list[int] | None = None
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.logps: list[float] = []
        self.own: list[str] = []  # own turns' contents as decoded from the sampled tokens
        self.text = ""  # the template text that prompt_ids + ids stand for
        self._eos = ""  # the sampled EOS after the last own turn, not yet matched in the template

    def _encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) if text else []

    @property
    def context(self) -> list[int]:
        return (self.prompt_ids or []) + self.ids

    def extend(self, text: str, final: bool = False) -> None:
        """Catch up with the template text `text` of the dialogue so far (glue and partner turns)."""
        if self.prompt_ids is None:
            self.prompt_ids, self.text = self._encode(text), text
            return
        if final and len(text.rstrip()) >= len(self.text) + len(self._eos):
            text = text.rstrip()  # ChatML's newline after the last message belongs to no turn
        if not text.startswith(self.text):
            raise HybridcotError("rl: the chat template does not extend a conversation by appending (it rewrites "
                                 "earlier turns), so one token sequence cannot hold the dialogue; use a template "
                                 f"that keeps every turn verbatim. Expected a continuation of ...{self.text[-80:]!r}, "
                                 f"got ...{text[max(0, len(self.text) - 80):len(self.text) + 40]!r}")
        glue = text[len(self.text):]
        if self._eos and glue.startswith(self._eos):  # the template's end of turn is the EOS it sampled
            glue = glue[len(self._eos):]
        ids = self._encode(glue)
        self.ids += ids
        self.mask += [0] * len(ids)
        self.logps += [0.0] * len(ids)
        self.text, self._eos = text, ""

    def add_own(self, tokens: list[int], logps: list[float], stopped: bool) -> str:
        """Append a sampled turn (ending with an EOS when `stopped`); returns its text for the protocol."""
        body = tokens[:-1] if stopped else tokens
        content = self.tok.decode(body, skip_special_tokens=False)
        self.own.append(content)
        self.ids += tokens
        self.mask += [1] * len(tokens)
        self.logps += list(logps)
        self.text += content
        self._eos = self.tok.decode(tokens[-1:], skip_special_tokens=False) if stopped else ""
        return self.tok.decode(tokens, skip_special_tokens=True)


@torch.no_grad()
def sample_turns(model: Any, contexts: list[list[int]], max_new_tokens: int, temperature: float,
                 eos_ids: Sequence[int], pad_id: int) -> list[tuple[list[int], list[float], bool]]:
    """Sample one turn per context from `model` (softmax(logits / temperature), no top-p/top-k) with a KV
    cache; returns (tokens, their log-probs, ended with an EOS) per context. Rows that finish leave the batch."""
    device = next(model.parameters()).device
    width = max(len(c) for c in contexts)
    ids = torch.tensor([[pad_id] * (width - len(c)) + c for c in contexts], device=device)
    attn = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache, logits, nxt = out.past_key_values, out.logits[:, -1], pos[:, -1:] + 1
    rows = list(range(len(contexts)))  # batch row -> context
    live = [True] * len(contexts)
    toks: list[list[int]] = [[] for _ in contexts]
    lps: list[list[float]] = [[] for _ in contexts]
    eos = set(eos_ids)
    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)
        tok = torch.multinomial(logp.exp(), 1)
        lp = logp.gather(1, tok).squeeze(1).tolist()
        for b, r in enumerate(rows):
            if live[r]:
                toks[r].append(int(tok[b]))
                lps[r].append(lp[b])
                live[r] = toks[r][-1] not in eos
        if not any(live) or step == max_new_tokens - 1:
            break
        keep = [b for b, r in enumerate(rows) if live[r]]
        if len(keep) < len(rows) and hasattr(cache, "batch_select_indices"):
            sel = torch.tensor(keep, device=device)
            cache.batch_select_indices(sel)
            tok, attn, nxt, rows = tok[sel], attn[sel], nxt[sel], [rows[b] for b in keep]
        attn = torch.cat([attn, attn.new_ones(len(rows), 1)], dim=1)
        out = model(input_ids=tok, attention_mask=attn, position_ids=nxt, past_key_values=cache, use_cache=True)
        cache, logits, nxt = out.past_key_values, out.logits[:, -1], nxt + 1
    return [(t, p, bool(t) and t[-1] in eos) for t, p in zip(toks, lps)]


def eos_ids_of(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS and the generation config's, as the generators stop on."""
    gc = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = {tokenizer.eos_token_id, *(gc if isinstance(gc, list) else [gc])}
    found = sorted(i for i in ids if i is not None)
    if not found:
        raise HybridcotError("rl: the trained model has no EOS token (tokenizer or generation_config)")
    return found


def rollout(prompts: Sequence[Any], model: Any, tokenizer: Any, partner: Any, *, role: str, group_size: int,
            max_turns: int = 8, long_max_tokens: int = 2048, short_max_tokens: int = 2048,
            temperature: float = 0.3, seed: int = 0) -> dict[str, list]:
    """One whole dialogue per prompt between `model` (playing `role`, sampled here) and `partner` (a
    Generator playing the other role); the dict `GRPOTrainer`'s rollout_func returns (module docstring),
    plus for the rewards `turns` (per dialogue: each turn's record with n_tokens and finish_reason),
    `own_tokens` (tokens `model` wrote) and `group` (consecutive `group_size` prompts are one group)."""
    if role not in ROLES:
        raise ValueError(f"role must be 'long' or 'short', got {role!r}")
    if group_size < 1 or len(prompts) % group_size:
        raise HybridcotError(f"rl: {len(prompts)} prompts do not split into groups of {group_size}")
    other = partner_of(role)
    caps = {LONG: long_max_tokens, SHORT: short_max_tokens}
    states = new_states([{"id": str(k), "problem": problem_of(p)} for k, p in enumerate(prompts)], 1, max_turns)
    views = [TokenView(tokenizer) for _ in states]
    partner_sampling = SamplingConfig(n=1, temperature=temperature, max_tokens=caps[other], seed=seed)
    eos = eos_ids_of(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    while True:
        step_dialogues(states, other, partner, partner_sampling)  # after it every open dialogue waits on `role`
        todo = [k for k, s in enumerate(states) if not s.done and s.next_role == role]
        if not todo:
            break
        for k in todo:
            views[k].extend(view_text(tokenizer, role, states[k], views[k].own, True))
        turns = sample_turns(model, [views[k].context for k in todo], caps[role], temperature, eos, pad)
        for k, (toks, lps, stopped) in zip(todo, turns):
            text = views[k].add_own(toks, lps, stopped)
            states[k].add(text, len(toks), "stop" if stopped else "length")
    for s, v in zip(states, views):
        if v.prompt_ids is None:
            raise HybridcotError(f"rl: a dialogue ended before the {role} thinker spoke (max_turns={max_turns})")
        v.extend(view_text(tokenizer, role, s, v.own, False), final=True)
    return {"prompt_ids": [v.prompt_ids for v in views], "completion_ids": [v.ids for v in views],
            "logprobs": [v.logps for v in views], "env_mask": [v.mask for v in views],
            "turns": [[{**t.to_record(), "n_tokens": n, "finish_reason": fr}
                       for t, n, fr in zip(s.turns, s.n_tokens, s.finish_reasons)] for s in states],
            "own_tokens": [sum(v.mask) for v in views], "group": [k // group_size for k in range(len(states))]}


def make_rollout_func(partner: Any, role: str, *, max_turns: int, long_max_tokens: int, short_max_tokens: int,
                      temperature: float, seed: int = 0):
    """`rollout_func(prompts, trainer)` for `GRPOTrainer`: `rollout` on the trainer's current weights."""

    def rollout_func(prompts: list, trainer: Any) -> dict[str, list]:
        from trl.models.utils import unwrap_model_for_generation

        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
                                         ) as model, trainer.accelerator.autocast():
            return rollout(prompts, model, trainer.processing_class, partner, role=role, group_size=group,
                           max_turns=max_turns, long_max_tokens=long_max_tokens, short_max_tokens=short_max_tokens,
                           temperature=temperature, seed=seed + 1000003 * trainer.state.global_step)

    return rollout_func


# ---------------------------------------------------------------- the stage


@dataclass
class RLConfig:
    """Multi-turn GRPO rounds for the Long⊗Short thinkers: each round trains one against the other, frozen."""

    long_model: str = field("", help="the long thinker's checkpoint (the SFT'd one); speaks first")
    short_model: str = field("", help="the short thinker's checkpoint (the SFT'd one)")
    problems: str = field("", help="training problems for load_problems: a JSONL/JSON/Parquet path or "
                                   "'world:<split>:<count>[:seed=S]'")
    output: str = field("", help="output folder: round-<i>-<role>/ checkpoints, the final thinkers long/ and "
                                 "short/, final.json, config.yaml")
    rounds: list[str] = field([LONG, SHORT], help="the role each round trains, in order (e.g. long,short,long); "
                                                  "a round starts from that role's latest checkpoint")
    steps: int = field(100, help="optimizer steps per round")
    limit: int | None = field(None, help="only the first `limit` problems")
    levels: list[int] = field([], help="train only on problems of these difficulty levels ([] = all): where the "
                                       "pair already solves a level, every rollout of a group scores the same and "
                                       "GRPO has no signal")
    num_generations: int = field(8, help="dialogues per problem, one GRPO group (METHODS.md: 8; paper code: 2)")
    per_device_train_batch_size: int = field(8, help="dialogues per device per forward pass")
    gradient_accumulation_steps: int = field(4, help="forward passes per optimizer step; a step's dialogues "
                                                     "(batch x accumulation) are rolled out together")
    learning_rate: float = field(5e-6, help="peak learning rate (paper code: 5e-6; tiny models need more)")
    lr_scheduler_type: str = field("cosine", help="learning-rate schedule (paper code: cosine)")
    warmup_ratio: float = field(0.1, help="share of the steps spent warming up (paper code: 0.1)")
    temperature: float = field(0.3, help="sampling temperature of both thinkers; TRL scores the trained one's "
                                         "tokens at the same temperature (paper code: 0.3)")
    max_turns: int = field(8, help="most turns per dialogue, both thinkers together (paper: 8)")
    long_max_tokens: int = field(2048, help="most tokens per long turn (paper code: 2048)")
    short_max_tokens: int = field(2048, help="most tokens per short turn (paper code: 2048)")
    beta: float = field(0.0, help="KL coefficient towards the round's starting model (TRL default 0: no reference)")
    loss_type: str = field("dapo", help="TRL GRPO loss aggregation (grpo | dapo | dr_grpo | bnpo | ...; TRL: dapo)")
    rewards: dict = field({"correctness": 1.0, "format": 1.0, "length": 1.0},
                          help=f"reward name -> weight, names from {sorted(REWARDS)} (paper: 1 / 1 / 1)")
    partner_backend: str = field("auto", help="generation backend of the frozen partner: auto | hf | vllm | http "
                                                 "(http: servers from $HYBRIDCOT_HTTP_URLS)")
    partner_dtype: str = field("float32", help="the partner's dtype (float32 | bfloat16 | float16 | auto)")
    partner_gpu_memory_utilization: float = field(0.3, help="vLLM partner on a GPU: its share of GPU memory")
    seed: int = field(0, help="seed for data order, sampling and the partner's sampling")
    logging_steps: int = field(1, help="log loss and rewards every this many steps")
    save_steps: int = field(25, help="write a resumable TRL checkpoint every this many steps")
    save_total_limit: int = field(2, help="TRL checkpoints kept per round")
    use_cpu: bool | None = field(None, help="train on CPU (null = only when CUDA is missing)")
    bf16: bool | None = field(None, help="bfloat16 mixed precision (null = on GPUs that support it; never on CPU)")
    gradient_checkpointing: bool = field(False, help="trade compute for memory (large models)")
    force: bool = field(False, help="retrain rounds even where output already holds them finished")

    def __post_init__(self) -> None:
        for key in ("long_model", "short_model", "problems", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if not self.rounds or any(r not in ROLES for r in self.rounds):
            raise ValueError(f"rounds must be a non-empty list of 'long' / 'short', got {self.rounds!r}")
        for key in ("steps", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
                    "long_max_tokens", "short_max_tokens", "logging_steps", "save_steps", "save_total_limit"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (GRPO compares rollouts within a group)")
        if (self.per_device_train_batch_size * self.gradient_accumulation_steps) % self.num_generations:
            raise ValueError("per_device_train_batch_size x gradient_accumulation_steps must be a multiple of "
                             f"num_generations ({self.num_generations})")
        if self.max_turns < 2:
            raise ValueError(f"max_turns must be >= 2 (both thinkers speak), got {self.max_turns}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null, got {self.limit}")
        self.levels = [int(k) for k in self.levels]
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels has duplicates: {self.levels}")
        if self.learning_rate <= 0 or self.temperature <= 0 or self.beta < 0:
            raise ValueError("learning_rate and temperature must be > 0 and beta >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        unknown = [k for k in self.rewards if k not in REWARDS]
        if not self.rewards or unknown:
            raise ValueError(f"rewards: unknown name {unknown[0]!r}" if unknown else "rewards: name at least one")
        self.rewards = {k: float(v) for k, v in self.rewards.items()}
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.partner_backend not in BACKENDS:
            raise ValueError(f"partner_backend must be one of {list(BACKENDS)}, got {self.partner_backend!r}")
        if not 0 < self.partner_gpu_memory_utilization <= 1:
            raise ValueError("partner_gpu_memory_utilization must be in (0, 1]")


def round_dir(output: str | Path, index: int, role: str) -> Path:
    return Path(output) / f"round-{index}-{role}"


def train_round(cfg: RLConfig, index: int, role: str, start: str, partner: str,
                problems: Callable[[], list]) -> tuple[dict, bool]:
    """Train `role` from `start` against `partner` into `round_dir` (or skip it finished, or resume it);
    returns (its hybridcot.json, whether it trained)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from hybridcot.adar1.dpo import load_model, prepare_resume
    from hybridcot.training import LossHistory, check_finite, device_flags, save_trained, trl_dir
    from hybridcot.ui import progress_enabled

    t0 = time.time()
    out = round_dir(cfg.output, index, role)
    done, resume = prepare_resume(dataclasses.replace(cfg, output=str(out)), "rl")  # checks a resumed config
    if done:
        print(f"rl: {out} is a finished round; skipping (force=true retrains)")
        return read_json(out / "hybridcot.json"), False
    rows = [{"prompt": messages_for(LONG, p.problem, []), "answer": p.answer, "problem": p.problem, "id": p.id}
            for p in problems()]
    tok, model = load_model(start)
    kw: dict[str, Any] = {}
    if resolve_backend(cfg.partner_backend) == "vllm":
        kw["gpu_memory_utilization"] = cfg.partner_gpu_memory_utilization
    # progress=False: TRL's per-step bar, not one per partner turn inside it
    partner_gen = load_generator(partner, backend=cfg.partner_backend, dtype=cfg.partner_dtype, progress=False, **kw)
    names = list(cfg.rewards)
    own_cap = cfg.long_max_tokens if role == LONG else cfg.short_max_tokens
    args = GRPOConfig(
        output_dir=str(trl_dir(out)), max_steps=cfg.steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, num_generations=cfg.num_generations,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_ratio,
        temperature=cfg.temperature, top_p=1.0, top_k=0, beta=cfg.beta, loss_type=cfg.loss_type,
        reward_weights=[cfg.rewards[n] for n in names], max_completion_length=own_cap * ((cfg.max_turns + 1) // 2),
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to="none", seed=cfg.seed, data_seed=cfg.seed,
        dataloader_num_workers=0, disable_tqdm=not progress_enabled(), gradient_checkpointing=cfg.gradient_checkpointing,
        **device_flags(cfg.use_cpu, cfg.bf16))
    fn = make_rollout_func(partner_gen, role, max_turns=cfg.max_turns, long_max_tokens=cfg.long_max_tokens,
                           short_max_tokens=cfg.short_max_tokens, temperature=cfg.temperature, seed=cfg.seed)
    hist = LossHistory()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL; we know
    try:
        trainer = GRPOTrainer(model=model, reward_funcs=[REWARDS[n] for n in names], args=args,
                              train_dataset=Dataset.from_list(rows), processing_class=tok, rollout_func=fn,
                              callbacks=[hist])
        if resume:
            print(f"rl: resuming round {index} ({role}) from {resume}")
        trainer.train(resume_from_checkpoint=resume)
    finally:
        partner_gen.close()
    check_finite(hist, f"rl round {index} ({role})")
    log = hist.log_history or hist.logs
    steps = [e for e in log if "loss" in e]
    last = steps[-1] if steps else {}
    meta = {"stage": "rl", "role": role, "round": index, "base_model": start, "partner_model": partner,
            "parents": {role: start, partner_of(role): partner}, "problems": len(rows),
            "steps": trainer.state.global_step, "final_loss": last.get("loss"), "final_reward": last.get("reward"),
            "seconds": time.time() - t0, "config": config_dict(cfg)}

    def extra(tmp: Path) -> None:
        write_json(tmp / "train_log.json", {"stage": "rl", "role": role, "round": index,
                                            "steps": trainer.state.global_step, "log": steps,
                                            "summary": next((e for e in reversed(log) if "train_runtime" in e), {})})
        save_config(cfg, tmp)

    save_trained(trainer, tok, out, meta, write_extra=extra, cleanup=trl_dir(out))
    reward = meta["final_reward"]
    print(f"rl: round {index} ({role}) {meta['steps']} steps, last reward "
          f"{'n/a' if reward is None else f'{reward:.3f}'} in {meta['seconds']:.0f}s -> {out}")
    return meta, True


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def publish(src: str | Path, dst: Path) -> None:
    """Make `dst` a plain checkpoint folder with `src`'s files: hard links where the filesystem allows
    (no extra disk), else copies; built beside and renamed into place; left alone when already the same."""
    def files(d: Path) -> dict:
        return {p.relative_to(d): (p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*") if p.is_file()}

    src = Path(src)
    if dst.is_dir() and not dst.is_symlink() and files(dst) == files(src):
        return

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # another filesystem
            shutil.copy2(a, b)

    tmp = dst.parent / f".{dst.name}.publish"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=link)
    swap_dir_into_place(tmp, dst)


def rl_problems(cfg: RLConfig) -> list:
    """The training problems: the first `limit` of `problems`, then those of `levels` (where set)."""
    from hybridcot.data.problems import load_problems

    loaded = load_problems(cfg.problems, limit=cfg.limit)
    if not loaded:
        raise HybridcotError(f"{cfg.problems}: no problems")
    if cfg.levels:
        unlevelled = next((p.id for p in loaded if p.level is None), None)
        if unlevelled is not None:
            raise HybridcotError(f"{cfg.problems}: problem {unlevelled!r} has no 'level' (rl.levels is set)")
        loaded = [p for p in loaded if p.level in cfg.levels]
        if not loaded:
            raise HybridcotError(f"{cfg.problems}: no problem of levels {cfg.levels}")
    return loaded


def run_rl(cfg: RLConfig) -> dict:
    """Run (or resume, or skip) every round, then publish the final thinkers as `output/long` and
    `output/short`; returns what final.json holds (plus "status": ran | skipped)."""

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if _read_yaml(out / "config.yaml") != json.loads(json.dumps(config_dict(cfg), default=str)):
        save_config(cfg, out)  # a skipped rerun rewrites nothing
    current = {LONG: str(cfg.long_model), SHORT: str(cfg.short_model)}
    loaded: list = []

    def problems() -> list:  # loaded once, and only when a round trains
        if not loaded:
            loaded.extend(rl_problems(cfg))
        return loaded

    rounds, ran = [], False
    for index, role in enumerate(cfg.rounds, start=1):
        partner = current[partner_of(role)]
        meta, trained = train_round(cfg, index, role, current[role], partner, problems)
        ran = ran or trained
        rounds.append({"round": index, "role": role, "path": str(round_dir(out, index, role)),
                       "parents": meta.get("parents"), "steps": meta.get("steps")})
        current[role] = str(round_dir(out, index, role))
    for role in ROLES:
        publish(current[role], out / role)
    final = {"long": str(out / LONG), "short": str(out / SHORT), "from": current, "rounds": rounds}
    if not (out / "final.json").is_file() or read_json(out / "final.json") != final:
        write_json(out / "final.json", final)
    return {**final, "status": "ran" if ran else "skipped"}
