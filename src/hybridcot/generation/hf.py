"""Batched `transformers` generation: the backend that is always there (CPU or one GPU).

Rows (prompt, sample index) are sorted by prompt length and cut into batches of `batch_size`
rows, left-padded, and decoded with the KV cache by `model.generate`. Greedy when temperature is 0.

Sampling is done by our own logits processor, one `torch.Generator` per row seeded from
(seed, prompt tokens, occurrence of that prompt, sample index): a sample does not depend on which
other rows share its batch, on `batch_size`, or on prompt order (up to float rounding of padded
batches). `model.generate` itself then runs greedy over the one token we kept.

Prefix sharing (`share_prefix=True`, the default): when a batch holds several sampled rows of one
prompt (n > 1), each distinct prompt is run through the model once, all but its last token, and
its KV cache is copied to its rows; `model.generate` then continues from that cache and runs only
the last prompt token per row. The sampled tokens are those of the unshared path (same per-row
RNGs; the logits differ only by float rounding, tested on the pico model). Each Sample's
`prefill_tokens` says what was run for it: the whole prompt for a prompt's first row in a batch,
1 token for the others (`Generator.stats` sums them). Greedy n > 1 already decodes once (base.py).

Stop strings are checked on the generated tokens only (never across the prompt boundary), and a
row stops as soon as one appears; EOS ids are the tokenizer's plus the generation config's.
`n_tokens` counts generated tokens up to and including the EOS or the token that completed the
stop string, as vLLM does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from hybridcot.generation.base import Generator, Sample, SamplingConfig, expand_rows, truncate_at_stop
from hybridcot.io import HybridcotError
from hybridcot.models import load_causal_lm, load_tokenizer
from hybridcot.ui import progress_enabled

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


class RowSampler(LogitsProcessor):
    """Temperature + nucleus sampling with one RNG per row; returns 0 at the drawn token, -inf elsewhere."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        if self.top_p < 1.0:
            # keep the smallest prefix whose mass reaches top_p (always at least the top token)
            keep = (sorted_p.cumsum(-1) - sorted_p) < self.top_p
            sorted_p = sorted_p * keep
        cdf = sorted_p.cumsum(-1).cpu()
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.gens]).float()
        pos = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).clamp(max=cdf.shape[1] - 1)
        chosen = order.gather(1, pos.to(order.device))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen, 0.0)


class StopOnStrings(StoppingCriteria):
    """Stop a row once its generated text (not the prompt) contains a stop string; remembers when."""

    def __init__(self, tokenizer, stop: list[str], prompt_len: int):
        self.tokenizer = tokenizer
        self.stop = stop
        self.prompt_len = prompt_len
        self.window = max(len(s) for s in stop) + 8  # tokens: enough to hold the longest stop string
        self.stop_at: dict[int, int] = {}  # row -> generated length when the stop string completed

    def __call__(self, input_ids: torch.LongTensor, scores, **kw) -> torch.BoolTensor:
        gen = input_ids[:, self.prompt_len:]
        n = gen.shape[1]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for r in range(gen.shape[0]):
            if r in self.stop_at:
                done[r] = True
                continue
            tail = self.tokenizer.decode(gen[r, max(0, n - self.window):].tolist(), skip_special_tokens=True)
            if any(s in tail for s in self.stop):
                self.stop_at[r] = n
                done[r] = True
        return done


class HFGenerator(Generator):
    """`transformers` backend. Keywords: batch_size (rows per forward, default 64), device, threads,
    share_prefix (prefill a prompt once for its n sampled rows, default on).

    `model` / `tokenizer` take objects already in memory (e.g. the α sweep's merged weights) instead
    of loading them from `model_path`, which then only names the model in messages; `dtype` is
    ignored for a given model.
    """

    backend = "hf"

    def __init__(self, model_path: str | Path, dtype: str = "float32", batch_size: int = 64,
                 device: str | None = None, progress: bool | None = None, threads: int | None = None, *,
                 model=None, tokenizer=None, share_prefix: bool = True):
        if dtype not in DTYPES:
            raise HybridcotError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise HybridcotError(f"batch_size must be >= 1, got {batch_size}")
        if threads:  # see base.py: one thread is much faster on a busy small CPU machine
            torch.set_num_threads(threads)
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress_enabled() if progress is None else progress
        if model is None:  # safetensors only, no remote code unless asked (hybridcot.models)
            model = load_causal_lm(self.model_path, dtype=DTYPES[dtype])
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(self.model_path)
        self.model = model.to(self.device).eval()
        eos = {self.tokenizer.eos_token_id}
        gc_eos = self.model.generation_config.eos_token_id
        eos |= set(gc_eos if isinstance(gc_eos, list) else [gc_eos])
        self.eos_ids = sorted(e for e in eos if e is not None)
        if not self.eos_ids:
            raise HybridcotError(f"{self.model_path}: no EOS token in tokenizer or generation_config")
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    def _generate(self, prompt_ids: list[list[int]], params: SamplingConfig) -> list[list[Sample]]:
        rows = expand_rows(prompt_ids, params)
        rows.sort(key=lambda r: -len(prompt_ids[r[0]]))  # longest first: padding is small, OOM shows early
        out: list[list[Sample | None]] = [[None] * params.n for _ in prompt_ids]
        batches = [rows[k:k + self.batch_size] for k in range(0, len(rows), self.batch_size)]
        for batch in tqdm(batches, desc="generate (hf)", unit="batch", disable=not self.progress):
            samples = self._batch([prompt_ids[i] for i, _, _ in batch], [s for _, _, s in batch], params)
            for (i, j, _), s in zip(batch, samples):
                out[i][j] = s
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _batch(self, prompts: list[list[int]], seeds: list[int], params: SamplingConfig) -> list[Sample]:
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        gc = GenerationConfig(max_new_tokens=params.max_tokens, do_sample=False, num_beams=1,
                              temperature=1.0, top_p=1.0, top_k=None, repetition_penalty=1.0,
                              eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        processors = LogitsProcessorList()
        if not params.greedy:
            processors.append(RowSampler(seeds, params.temperature, params.top_p))
        criteria = StoppingCriteriaList()
        stopper = StopOnStrings(self.tokenizer, params.stop, width) if params.stop else None
        if stopper:
            criteria.append(stopper)
        prefill = [len(p) for p in prompts]
        kw = {}
        if self.share_prefix and not params.greedy:
            shared = self._shared_prefill(prompts, width)
            if shared is not None:
                kw["past_key_values"], prefill = shared
        seqs = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gc,
                                   logits_processor=processors, stopping_criteria=criteria, **kw)
        gen = seqs[:, width:].tolist()
        eos = set(self.eos_ids)
        result = []
        for r, toks in enumerate(gen):
            ends = [k + 1 for k, t in enumerate(toks) if t in eos][:1]
            if stopper and r in stopper.stop_at:
                ends.append(stopper.stop_at[r])
            n = min(ends) if ends else min(len(toks), params.max_tokens)
            text, cut = truncate_at_stop(self.tokenizer.decode(toks[:n], skip_special_tokens=True), params.stop)
            finish = "stop" if ends or cut else "length"
            result.append(Sample(text=text, token_ids=toks[:n], n_tokens=n, finish_reason=finish,
                                 prefill_tokens=prefill[r]))
        return result

    def _shared_prefill(self, prompts: list[list[int]], width: int):
        """Run each distinct prompt once, without its last token, and copy its KV cache to its rows.

        Returns (cache for all rows, prompt tokens run per row), or None when no prompt repeats (or
        one has a single token). Rows keep the left padding to `width` of the unshared path, and
        position ids are the ones `generate` derives from the attention mask.
        """
        index: dict[tuple[int, ...], int] = {}
        row_of = [index.setdefault(tuple(p), len(index)) for p in prompts]
        if len(index) == len(prompts) or min(len(p) for p in prompts) < 2:
            return None
        uniq = list(index)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p[:-1]) for p in uniq], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * (len(p) - 1) for p in uniq], device=self.device)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        if not hasattr(cache, "batch_select_indices"):  # a model without a transformers Cache: do not share
            return None
        cache.batch_select_indices(torch.tensor(row_of, device=self.device))
        seen: set[int] = set()
        prefill = []
        for u in row_of:  # the first row of a prompt carries its prefill, every row its last token
            prefill.append(1 if u in seen else len(uniq[u]))
            seen.add(u)
        return cache, prefill

    def close(self) -> None:
        self.model = None
