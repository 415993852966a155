"""The generation interface on the random-weight pico Qwen2: HF backend semantics, and HF == vLLM greedy."""

from __future__ import annotations

import importlib.util

import pytest

from hybridcot.data.world import PROMPT_SUFFIX, generate_problems
from hybridcot.generation import SamplingConfig, available_backends, chat_prompt, load_generator, resolve_backend
from hybridcot.generation.base import truncate_at_stop
from hybridcot.io import HybridcotError

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def prompts() -> list[list[dict]]:
    # levels 1..5 give prompts of different lengths, so batches need real left padding
    return [chat_prompt(p.problem) for p in generate_problems(6, seed=3)]


@pytest.fixture(scope="module")
def hf(pico_model_dir):
    with load_generator(pico_model_dir, backend="hf", batch_size=8) as g:
        yield g


@pytest.fixture(scope="module")
def greedy(hf, prompts):
    return hf.generate(prompts, SamplingConfig(max_tokens=24))


# ---- config, prompts, backend choice ----

@pytest.mark.parametrize("kw", [{"n": 0}, {"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5},
                                {"max_tokens": 0}, {"stop": [""]}])
def test_sampling_config_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        SamplingConfig(**kw)


def test_sampling_config_accepts_single_stop_string():
    assert SamplingConfig(stop="\n\n").stop == ["\n\n"]
    assert SamplingConfig().greedy and not SamplingConfig(temperature=0.6).greedy


def test_chat_prompt():
    assert chat_prompt("What is 2 + 3?") == [{"role": "user", "content": f"What is 2 + 3? {PROMPT_SUFFIX}"}]
    msgs = chat_prompt("Q", suffix="", system="be brief")
    assert msgs == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q"}]


def test_truncate_at_stop_uses_earliest():
    assert truncate_at_stop("a;b.c;", [".", ";"]) == ("a", True)
    assert truncate_at_stop("abc", ["x"]) == ("abc", False)


def test_backend_choice(monkeypatch):
    assert available_backends()[0] == "hf"
    monkeypatch.setenv("HYBRIDCOT_BACKEND", "hf")
    assert resolve_backend("auto") == "hf"
    monkeypatch.delenv("HYBRIDCOT_BACKEND")
    assert resolve_backend("auto") == ("vllm" if HAS_VLLM else "hf")
    with pytest.raises(HybridcotError, match="backend must be one of"):
        resolve_backend("tpu")


def test_load_generator_rejects_non_checkpoint(tmp_path):
    with pytest.raises(HybridcotError, match="no config.json"):
        load_generator(tmp_path, backend="hf")


# ---- HF backend ----

def test_chat_prompts_use_the_template(hf, prompts, greedy):
    rendered = hf.tokenizer.apply_chat_template(prompts[0], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n") and PROMPT_SUFFIX in rendered
    assert hf.encode(prompts[0]) == hf.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    raw = hf.generate([rendered], SamplingConfig(max_tokens=24))
    assert raw[0][0].token_ids == greedy[0][0].token_ids


def test_greedy_is_deterministic(hf, prompts, greedy):
    again = hf.generate(prompts, SamplingConfig(max_tokens=24))
    assert [s[0].token_ids for s in again] == [s[0].token_ids for s in greedy]
    assert all(len(s) == 1 and s[0].text for s in greedy)


def test_batched_equals_one_by_one(hf, prompts, greedy):
    lengths = {len(hf.encode(p)) for p in prompts}
    assert len(lengths) > 1, "prompts must differ in length to exercise left padding"
    for p, s in zip(prompts, greedy):
        assert hf.generate([p], SamplingConfig(max_tokens=24))[0][0].token_ids == s[0].token_ids


def test_greedy_n_repeats(hf, prompts, greedy):
    out = hf.generate(prompts[:2], SamplingConfig(n=3, max_tokens=24))
    assert [[s.token_ids for s in o] for o in out] == [[g[0].token_ids] * 3 for g in greedy[:2]]


def test_sampling_seeds(hf, prompts):
    cfg = SamplingConfig(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=7)
    a = hf.generate(prompts[:3], cfg)
    b = hf.generate(prompts[:3], cfg)
    c = hf.generate(prompts[:3], SamplingConfig(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=8))
    ids = [[s.token_ids for s in o] for o in a]
    assert ids == [[s.token_ids for s in o] for o in b]
    assert all(len({tuple(x) for x in o}) == 3 for o in ids), "the n samples of a prompt should differ"
    assert all(x != y for o, p in zip(ids, c) for x, y in zip(o, [s.token_ids for s in p]))
    # a sample does not depend on batching or on the other prompts
    one = hf.generate([prompts[1]], cfg)[0]
    assert [s.token_ids for s in one] == ids[1]


def test_max_tokens_gives_length(hf, prompts, greedy):
    out = hf.generate(prompts, SamplingConfig(max_tokens=5))
    for o, g in zip(out, greedy):
        assert (o[0].finish_reason, o[0].n_tokens, len(o[0].token_ids)) == ("length", 5, 5)
        assert o[0].token_ids == g[0].token_ids[:5]


def _ascii_stop(text: str) -> str:
    """A 3-letter ASCII stretch after the start of `text`, to use as a stop string."""
    for k in range(4, len(text) - 3):
        piece = text[k:k + 3]
        if piece.isascii() and piece.isalpha():
            return piece
    pytest.skip("greedy text of the random model has no ASCII stretch")


def test_stop_string_truncates(hf, prompts, greedy):
    full = greedy[0][0]
    stop = _ascii_stop(full.text)
    out = hf.generate([prompts[0]], SamplingConfig(max_tokens=24, stop=["@@never@@", stop]))[0][0]
    assert out.finish_reason == "stop"
    assert out.text == full.text[:full.text.index(stop)]
    assert out.n_tokens < full.n_tokens and out.token_ids == full.token_ids[:out.n_tokens]
    # the token that completed the stop string is counted, the one before did not complete it
    dec = hf.tokenizer.decode
    assert stop in dec(out.token_ids) and stop not in dec(out.token_ids[:-1])


def test_eos_counts_and_stops(hf, prompts, greedy):
    full = greedy[1][0].token_ids
    eos_ids = hf.eos_ids
    try:
        hf.eos_ids = [full[3]]  # pretend the 4th greedy token is EOS
        out = hf.generate([prompts[1]], SamplingConfig(max_tokens=24))[0][0]
    finally:
        hf.eos_ids = eos_ids
    k = full.index(full[3]) + 1
    assert (out.finish_reason, out.n_tokens, out.token_ids) == ("stop", k, full[:k])


def test_empty_and_bad_prompts(hf):
    assert hf.generate([], SamplingConfig()) == []
    with pytest.raises(HybridcotError, match="prompt must be"):
        hf.generate([42], SamplingConfig())


# ---- vLLM: same greedy tokens as HF ----

@pytest.fixture(scope="module")
def vllm_gen(pico_model_dir):
    if not HAS_VLLM:
        pytest.skip("vllm is not installed (pip install 'hybridcot[fast]')")
    with load_generator(pico_model_dir, backend="vllm", dtype="float32", kv_cache_gib=0.25) as g:
        yield g


@pytest.mark.vllm
def test_vllm_greedy_equals_hf(vllm_gen, prompts):
    cfg = SamplingConfig(max_tokens=48)
    hf_out = load_generator(vllm_gen.model_path, backend="hf").generate(prompts, cfg)
    v_out = vllm_gen.generate(prompts, cfg)
    for h, v in zip(hf_out, v_out):
        assert v[0].token_ids == h[0].token_ids
        assert (v[0].text, v[0].n_tokens, v[0].finish_reason) == (h[0].text, h[0].n_tokens, h[0].finish_reason)


@pytest.mark.vllm
def test_vllm_sampling_seeds_and_stop(vllm_gen, prompts, greedy):
    cfg = SamplingConfig(n=3, temperature=1.0, max_tokens=8, seed=7)
    a = vllm_gen.generate(prompts[:2], cfg)
    b = vllm_gen.generate(prompts[:2], cfg)
    c = vllm_gen.generate(prompts[:2], SamplingConfig(n=3, temperature=1.0, max_tokens=8, seed=8))
    ids = [[s.token_ids for s in o] for o in a]
    assert ids == [[s.token_ids for s in o] for o in b]
    # vLLM's own n>1 gives sample k the seed seed+k; ours must not overlap between seeds 7 and 8
    assert not {tuple(x) for o in ids for x in o} & {tuple(s.token_ids) for o in c for s in o}
    full = greedy[0][0]
    stop = _ascii_stop(full.text)
    out = vllm_gen.generate([prompts[0]], SamplingConfig(max_tokens=24, stop=[stop]))[0][0]
    assert (out.finish_reason, out.text) == ("stop", full.text[:full.text.index(stop)])
    assert out.token_ids == full.token_ids[:out.n_tokens]
    short = vllm_gen.generate([prompts[0]], SamplingConfig(max_tokens=5))[0][0]
    assert (short.finish_reason, short.n_tokens) == ("length", 5)


# ---- the generate stage ----

def test_generate_stage_resumes(pico_model_dir, tmp_path):
    from hybridcot.cli import main
    from hybridcot.generation.stage import GenerateConfig, run_generate
    from hybridcot.io import read_jsonl

    out = tmp_path / "samples.jsonl"
    args = [f"model={pico_model_dir}", "problems=world:test:5", f"output={out}", "backend=hf", "n=2",
            "temperature=0.8", "max_tokens=6", "seed=3", "chunk=2"]
    assert main(["generate", *args]) == 0
    full = read_jsonl(out)
    assert [r["id"] for r in full] == [f"world-test-0-{i:06d}" for i in range(5)]
    assert all(r["model"] == str(pico_model_dir) and len(r["samples"]) == 2 for r in full)
    assert all(s["n_tokens"] == 6 and s["finish_reason"] == "length" for r in full for s in r["samples"])
    # a killed run: two whole records and a torn third line; resuming completes it identically
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:15])
    cfg = GenerateConfig(model=str(pico_model_dir), problems="world:test:5", output=str(out), backend="hf", n=2,
                         temperature=0.8, max_tokens=6, seed=3, chunk=2)
    run_generate(cfg)
    assert read_jsonl(out) == full
    with pytest.raises(HybridcotError, match="was made with seed=3, now seed=4"):
        run_generate(GenerateConfig(**{**cfg.__dict__, "seed": 4}))


def test_generate_config_validation():
    from hybridcot.generation.stage import GenerateConfig

    with pytest.raises(ValueError, match="model is required"):
        GenerateConfig(problems="world:test:1", output="x.jsonl")
    with pytest.raises(ValueError, match="top_p"):
        GenerateConfig(model="m", problems="world:test:1", output="x.jsonl", top_p=0)
