"""merging.py: the linear merge against hand-computed interpolations, sharding, refusals, mergekit, α sweep;
the streaming merge's numpy arithmetic against torch's bit for bit, and `hybridcot merge` without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from hybridcot import cli, merging
from hybridcot.io import HybridcotError, read_jsonl
from hybridcot.merging import (
    INDEX,
    MergeConfig,
    check_compatible,
    merge_state_dicts,
    read_mergekit_yaml,
    run_merge,
    write_merge,
    write_mergekit_yaml,
)


def _save(model, tok_dir: Path, out: Path, **kw) -> Path:
    """Save `model` + the tokenizer files of `tok_dir` (verbatim) into `out`."""
    model.save_pretrained(out, **kw)
    for f in tok_dir.iterdir():
        if f.is_file() and (f.name.startswith("tokenizer") or f.name.startswith("chat_template")
                            or f.name == "special_tokens_map.json"):
            shutil.copy2(f, out / f.name)
    return out


def _pico(src: Path, seed: int, dtype=torch.float32, **overrides):
    """A random pico model with the fixture's config (plus overrides), seeded differently."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    cfg = AutoConfig.from_pretrained(src)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    if getattr(cfg, "layer_types", None):  # one attention type per layer
        cfg.layer_types = [cfg.layer_types[0]] * cfg.num_hidden_layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).to(dtype).eval()
    model.generation_config = GenerationConfig.from_pretrained(src)
    return model


def _weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / INDEX).exists():
        out: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads((path / INDEX).read_text())["weight_map"].values())):
            out.update(load_file(path / shard))
        return out
    return load_file(path / "model.safetensors")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, pico_model_dir: Path) -> tuple[Path, Path]:
    """(long, short): the session pico model and one from the same config with another seed."""
    short = _save(_pico(pico_model_dir, seed=1), pico_model_dir, tmp_path_factory.mktemp("short"))
    return pico_model_dir, short


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, pico_model_dir: Path, pair) -> dict[str, Path]:
    """Variants: bf16 pair, sharded pair (different shard sizes), and mismatching models."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("variants")
    long, short = (AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32) for p in pair)
    out = {
        "sharded_long": _save(long, pico_model_dir, root / "sharded_long", max_shard_size="100KB"),
        "sharded_short": _save(short, pico_model_dir, root / "sharded_short", max_shard_size="60KB"),
    }
    out["bf16_long"] = _save(long.to(torch.bfloat16), pico_model_dir, root / "bf16_long")  # .to() is in place
    out["bf16_short"] = _save(short.to(torch.bfloat16), pico_model_dir, root / "bf16_short")
    out["wide"] = _save(_pico(pico_model_dir, 2, intermediate_size=96), pico_model_dir, root / "wide")
    out["deep"] = _save(_pico(pico_model_dir, 3, num_hidden_layers=3), pico_model_dir, root / "deep")
    out["untied"] = _save(_pico(pico_model_dir, 4, tie_word_embeddings=False), pico_model_dir, root / "untied")
    # Same weights shapes, different tokenizer: two token ids swapped in the vocabulary.
    other_tok = shutil.copytree(pair[1], root / "other_tok")
    tj = json.loads((other_tok / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other_tok / "tokenizer.json").write_text(json.dumps(tj))
    out["other_tok"] = other_tok
    other_tpl = shutil.copytree(pair[1], root / "other_template")
    tpl = next(p for p in other_tpl.iterdir() if p.name.startswith("chat_template"))
    tpl.write_text(tpl.read_text().replace("<|im_start|>", "<|im_start|> "))
    out["other_template"] = other_tpl
    return out


def test_merge_matches_hand_interpolation(pair, tmp_path: Path) -> None:
    long, short = pair
    info = write_merge(long, short, tmp_path / "merged", 0.8)
    A, B, M = _weights(long), _weights(short), _weights(tmp_path / "merged")
    assert set(M) == set(A) and "lm_head.weight" not in M  # tied embeddings: absent in both, absent here
    for k in A:
        assert M[k].dtype == torch.float32
        torch.testing.assert_close(M[k], 0.8 * A[k] + 0.2 * B[k], rtol=1e-6, atol=1e-7)
    assert not torch.equal(A["model.embed_tokens.weight"], B["model.embed_tokens.weight"])  # the test has teeth
    meta = json.loads((tmp_path / "merged" / "merge.json").read_text())
    assert meta["alpha"] == 0.8 and meta["n_tensors"] == len(A) == info["n_tensors"]
    assert meta["bytes"] == sum(t.numel() * t.element_size() for t in A.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no temp folder left behind
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        assert (tmp_path / "merged" / name).read_bytes() == (long / name).read_bytes()


def test_bf16_pair_keeps_dtype_and_computes_in_float32(models, tmp_path: Path) -> None:
    write_merge(models["bf16_long"], models["bf16_short"], tmp_path / "m", 0.7)
    A, B, M = _weights(models["bf16_long"]), _weights(models["bf16_short"]), _weights(tmp_path / "m")
    for k in A:
        assert M[k].dtype == torch.bfloat16
        assert torch.equal(M[k], (0.7 * A[k].float() + 0.3 * B[k].float()).to(torch.bfloat16)), k
    assert "out_dtype: bfloat16" in (tmp_path / "m" / "mergekit.yaml").read_text()


def test_merge_state_dicts_is_pure_and_checks_its_inputs() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([3])}
    m = merge_state_dicts(a, b, 0.25)
    assert torch.equal(m["w"], torch.tensor([2.5, 5.0])) and torch.equal(m["n"], torch.tensor([3]))
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # inputs untouched
    with pytest.raises(HybridcotError, match="'x' is only in the short"):
        merge_state_dicts(a, {**b, "x": torch.zeros(1)}, 0.5)
    with pytest.raises(HybridcotError, match="'w'"):
        merge_state_dicts(a, {**b, "w": torch.zeros(3)}, 0.5)
    with pytest.raises(HybridcotError, match="not floating point"):
        merge_state_dicts(a, {**b, "n": torch.tensor([4])}, 0.5)
    with pytest.raises(HybridcotError, match="alpha"):
        merge_state_dicts(a, b, 1.5)


def test_sharded_checkpoints_merge_to_the_same_tensors_with_a_valid_index(pair, models, tmp_path: Path) -> None:
    write_merge(*pair, tmp_path / "single", 0.8)
    write_merge(models["sharded_long"], models["sharded_short"], tmp_path / "sharded", 0.8)
    src_index = json.loads((models["sharded_long"] / INDEX).read_text())
    index = json.loads((tmp_path / "sharded" / INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    assert index["weight_map"] == src_index["weight_map"]  # mirrors the long model's sharding
    shards = set(index["weight_map"].values())
    assert shards == {p.name for p in (tmp_path / "sharded").glob("*.safetensors")}
    single, sharded = _weights(tmp_path / "single"), _weights(tmp_path / "sharded")
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sharded.values())
    assert set(single) == set(sharded)
    for k in single:
        assert torch.equal(single[k], sharded[k]), k
    # A sharded Long with a single-file Short (different layouts) merges to the same tensors too.
    write_merge(models["sharded_long"], pair[1], tmp_path / "mixed", 0.8)
    assert all(torch.equal(single[k], v) for k, v in _weights(tmp_path / "mixed").items())


@pytest.mark.parametrize("variant, expected", [
    ("wide", r"tensor 'model\.layers\.0\.mlp\.down_proj\.weight' has shape \[64, 128\] in long and \[64, 96\] in short"),
    ("deep", r"tensor 'model\.layers\.2\..*' is only in the short model"),
    ("untied", r"'lm_head\.weight' is only in the short model .*tie_word_embeddings"),
    ("other_tok", r"tokenizer vocabularies differ: token .* has id \d+ in long and \d+ in short"),
    ("other_template", r"chat templates differ"),
    ("bf16_short", r"has dtype F32 in long and BF16 in short"),
])
def test_refusals_are_one_line_and_leave_the_output_alone(pair, models, tmp_path: Path, variant, expected) -> None:
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    (existing / "merge.json").write_text("{}")
    (existing / "keep.txt").write_text("old merge")
    before = sorted(p.name for p in tmp_path.iterdir())
    for out in (fresh, existing):
        with pytest.raises(HybridcotError, match=expected) as e:
            write_merge(pair[0], models[variant], out)
        msg = str(e.value)
        assert "\n" not in msg and str(pair[0]) in msg and str(models[variant]) in msg
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp folders either
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt", "merge.json"]
    assert (existing / "keep.txt").read_text() == "old merge"


def test_refuses_to_overwrite_a_folder_that_is_not_a_merge(pair, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HybridcotError, match="not a merge output"):
        write_merge(*pair, tmp_path)
    with pytest.raises(HybridcotError, match="must differ"):
        write_merge(*pair, pair[0])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_rerun_replaces_a_previous_merge(pair, tmp_path: Path) -> None:
    out = tmp_path / "m"
    write_merge(*pair, out, 0.8)
    write_merge(*pair, out, 0.5)
    A, B, M = _weights(pair[0]), _weights(pair[1]), _weights(out)
    torch.testing.assert_close(M["model.norm.weight"], 0.5 * A["model.norm.weight"] + 0.5 * B["model.norm.weight"])
    assert json.loads((out / "merge.json").read_text())["alpha"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_merged_folder_loads_with_transformers_and_keeps_the_chat_template(pair, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "m"
    write_merge(*pair, out, 0.8)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tok, tok_long = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(pair[0])
    assert tok.chat_template and tok.chat_template == tok_long.chat_template
    assert tok.get_vocab() == tok_long.get_vocab()
    M = _weights(out)
    for k, v in model.state_dict().items():
        expected = M["model.embed_tokens.weight"] if k == "lm_head.weight" else M[k]  # tied
        assert torch.equal(v, expected), k
    ids = tok.apply_chat_template([{"role": "user", "content": "1 + 2"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    assert torch.isfinite(model(ids).logits).all()


def test_cli_merge_and_one_line_refusal(pair, models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["merge", f"long={pair[0]}", f"short={pair[1]}", f"output={tmp_path / 'm'}", "alpha=0.6"]) == 0
    assert (tmp_path / "m" / "config.yaml").exists() and (tmp_path / "m" / "mergekit.yaml").exists()
    assert json.loads((tmp_path / "m" / "merge.json").read_text())["alpha"] == 0.6
    capsys.readouterr()
    assert cli.main(["merge", f"long={pair[0]}", f"short={models['wide']}", f"output={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hybridcot merge: error: cannot merge") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="long is required"):
        MergeConfig(short="s", output="o")
    with pytest.raises(ValueError, match="alpha must be"):
        MergeConfig(long="l", short="s", output="o", alpha=1.2)
    with pytest.raises(ValueError, match="output is required"):
        MergeConfig(long="l", short="s")
    with pytest.raises(ValueError, match="sweep_problems"):
        MergeConfig(long="l", short="s", output="o", alpha_sweep=[0.5])
    with pytest.raises(ValueError, match="duplicate"):
        MergeConfig(long="l", short="s", output="o", alpha_sweep=[0.5, 0.5], sweep_problems="world:val:4")
    with pytest.raises(ValueError, match="vllm"):
        MergeConfig(long="l", short="s", output="o", alpha_sweep=[0.5], sweep_problems="world:val:4", backend="vllm")


def _mk_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_mergekit_yaml_read_write_and_config(tmp_path: Path) -> None:
    p = write_mergekit_yaml(tmp_path / "a.yaml", tmp_path / "L", tmp_path / "S", 0.8, "float32")
    assert read_mergekit_yaml(p) == (str((tmp_path / "L").resolve()), str((tmp_path / "S").resolve()), 0.8)
    y = _mk_yaml(tmp_path / "b.yaml", "merge_method: linear\nmodels:\n  - model: L\n    parameters: {weight: 4}\n"
                                      "  - model: S\n    parameters: {weight: 1}\ndtype: float32\n")
    assert read_mergekit_yaml(y) == ("L", "S", 0.8)  # normalize (mergekit's default) divides by the sum
    cfg = MergeConfig(mergekit_yaml=str(y), output="o")
    assert (cfg.long, cfg.short, cfg.alpha) == ("L", "S", 0.8)
    with pytest.raises(ValueError, match="disagrees"):
        MergeConfig(mergekit_yaml=str(y), long="other", output="o")
    bad = {
        "normalize: false": ("merge_method: linear\nparameters: {normalize: false}\nmodels:\n  - model: L\n"
                             "    parameters: {weight: 0.5}\n  - model: S\n    parameters: {weight: 0.2}\n"),
        "only 'linear'": "merge_method: ties\nmodels:\n  - model: L\n  - model: S\n",
        "exactly 2": "merge_method: linear\nmodels:\n  - model: L\n    parameters: {weight: 1}\n",
        r"models\[1\]\.parameters\.weight": ("merge_method: linear\nmodels:\n  - model: L\n    parameters: "
                                             "{weight: 1}\n  - model: S\n    parameters: {weight: [0, 1]}\n"),
    }
    for i, (expected, text) in enumerate(bad.items()):
        with pytest.raises(HybridcotError, match=expected) as e:
            read_mergekit_yaml(_mk_yaml(tmp_path / f"bad{i}.yaml", text))
        assert "\n" not in str(e.value) and f"bad{i}.yaml" in str(e.value)


def test_mergekit_reproduces_our_merge(pair, tmp_path: Path) -> None:
    # the venv's own script first: `.venv/bin/python -m pytest` does not put .venv/bin on PATH
    beside = Path(sys.executable).parent / "mergekit-yaml"
    exe = str(beside) if beside.exists() else shutil.which("mergekit-yaml")
    if exe is None:
        pytest.skip("mergekit-yaml is not on PATH (pip install 'hybridcot[merge]')")
    ours = tmp_path / "ours"
    write_merge(*pair, ours, 0.8)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([exe, str(ours / "mergekit.yaml"), str(tmp_path / "mk"), "--quiet", "--copy-tokenizer",
                           "--no-write-model-card"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    M, K = _weights(ours), _weights(tmp_path / "mk")
    assert set(M) == set(K)
    for k in M:
        assert K[k].dtype == M[k].dtype
        torch.testing.assert_close(K[k].float(), M[k].float(), rtol=1e-6, atol=1e-7)


def test_alpha_sweep_evaluates_in_memory_without_checkpoints(pair, tmp_path: Path) -> None:
    from hybridcot.data.problems import load_problems
    from hybridcot.generation import SamplingConfig, chat_prompt
    from hybridcot.generation.hf import HFGenerator

    spec = "world:test:6:seed=0"
    cfg = MergeConfig(long=str(pair[0]), short=str(pair[1]), alpha_sweep=[0.0, 0.5, 1.0], sweep_problems=spec,
                      max_tokens=8, sweep_dir=str(tmp_path / "sweep"))
    result = run_merge(cfg)
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [e["alpha"] for e in sweep["entries"]] == [0.0, 0.5, 1.0] == [e["alpha"] for e in result["sweep"]["entries"]]
    for e in sweep["entries"]:
        assert 0 <= e["accuracy"] <= 1 and len(e["accuracy_ci"]) == 2 and 0 < e["mean_tokens"] <= 8
        assert e["per_level"]
    assert (tmp_path / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    assert not list((tmp_path / "sweep").rglob("*.safetensors"))  # no checkpoint per α
    # α = 1 and α = 0 in memory generate exactly what the Long and Short checkpoints generate.
    recs = read_jsonl(tmp_path / "sweep" / "sweep_samples.jsonl")
    prompts = [chat_prompt(p.problem) for p in load_problems(spec)]
    params = SamplingConfig(max_tokens=8)
    for alpha, path in ((1.0, pair[0]), (0.0, pair[1])):
        gen = HFGenerator(path)
        direct = [s[0].text for s in gen.generate(prompts, params)]
        assert [r["text"] for r in recs if r["alpha"] == alpha] == direct
    mid = [r["text"] for r in recs if r["alpha"] == 0.5]
    assert mid != [r["text"] for r in recs if r["alpha"] == 1.0]  # the weights really changed between α


def test_check_compatible_accepts_a_matching_pair(pair) -> None:
    L, S = check_compatible(*pair)
    assert set(L.meta) == set(S.meta) and not L.sharded


@pytest.mark.parametrize("change,refused", [
    ({"continuing_subword_prefix": ""}, False),  # null and "" both mean no affix (tokenizers writes either)
    ({"end_of_word_suffix": ""}, False),
    ({"continuing_subword_prefix": "##"}, True),
    ({"dropout": 0.1}, True),
])
def test_tokenizer_model_settings_that_mean_the_same_are_not_a_difference(pair, tmp_path: Path, change, refused) -> None:
    import shutil

    from hybridcot.merging import _tokenizer_difference

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        shutil.copytree(pair[0], d)
    for d, upd in ((a, {"continuing_subword_prefix": None, "end_of_word_suffix": None}), (b, change)):
        tj = json.loads((d / "tokenizer.json").read_text())
        if tj["model"].get("type") != "BPE":
            pytest.skip("the fixture's tokenizer is not BPE")
        tj["model"].update({"continuing_subword_prefix": None, "end_of_word_suffix": None, **upd})
        (d / "tokenizer.json").write_text(json.dumps(tj))
    diff = _tokenizer_difference(a, b)
    assert (diff == "tokenizer.json models differ") if refused else diff is None


def test_a_normalizer_transformers_adds_on_load_is_not_a_difference(pair, tmp_path: Path) -> None:
    """The world's Long (normalizer null) against a model trained from it and saved by transformers
    (Qwen2Tokenizer, NFC): the files differ, the loaded tokenizers do not. A normalizer that survives
    loading is still refused."""
    import shutil

    from hybridcot.merging import _tokenizer_difference
    from hybridcot.models import load_tokenizer

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    shutil.copytree(pair[0], a)
    shutil.copytree(pair[0], b)
    shutil.copytree(pair[0], c)
    loaded = json.loads(load_tokenizer(a).backend_tokenizer.to_str())
    for d, norm in ((a, None), (b, loaded["normalizer"])):
        tj = json.loads((d / "tokenizer.json").read_text())
        tj["normalizer"] = norm
        (d / "tokenizer.json").write_text(json.dumps(tj))
    assert loaded["normalizer"] == {"type": "NFC"}  # what Qwen2Tokenizer adds on load
    assert _tokenizer_difference(a, b) is None
    # loaded as the file says (not rebuilt as Qwen2Tokenizer), a lowercasing normalizer is a real difference
    tj = json.loads((c / "tokenizer.json").read_text())
    tj["normalizer"] = {"type": "Lowercase"}
    (c / "tokenizer.json").write_text(json.dumps(tj))
    tc = json.loads((c / "tokenizer_config.json").read_text())
    (c / "tokenizer_config.json").write_text(json.dumps({**tc, "tokenizer_class": "TokenizersBackend"}))
    (c / "config.json").unlink()  # no qwen2 config beside it: loaded from the file as it is
    assert load_tokenizer(c)("ABC")["input_ids"] != load_tokenizer(a)("ABC")["input_ids"]
    assert _tokenizer_difference(a, c) == "tokenizer.json 'normalizer' differs"


# --------------------------------------------------------------------------- numpy pieces == torch's interpolate

_KINDS = {"F32": (torch.float32, np.uint32, torch.int32), "F16": (torch.float16, np.uint16, torch.int16),
          "BF16": (torch.bfloat16, np.uint16, torch.int16)}
# torch's own NaN bits come from its CPU kernels (bfloat16: 0xFFFF from the AVX2 / AVX-512 ones, 0x7FC0 from the
# scalar one, which the merge does not copy); without those kernels NaNs are compared as NaNs only.
_NAN_BITS_EXACT = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def _specials(kind: str) -> list[int]:
    """Bit patterns at the edges: ±0, ±inf, NaNs (quiet, signalling, payloads, negative), subnormals, the largest
    finite values (α·x + (1 − α)·y in float32 may pass them), 1.0 and its neighbours."""
    if kind == "F32":
        pos = [0, 1, 2, 0x007FFFFF, 0x00800000, 0x00800001, 0x3F7FFFFF, 0x3F800000, 0x3F800001, 0x7F7FFFFE,
               0x7F7FFFFF, 0x7F7F8000, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FBFFFFF, 0x7FFFFFFF, 0x7FC0DEAD]
        sign = 0x80000000
    elif kind == "F16":
        pos = [0, 1, 2, 0x03FF, 0x0400, 0x0401, 0x3BFF, 0x3C00, 0x3C01, 0x7BFE, 0x7BFF, 0x7C00, 0x7E00, 0x7C01,
               0x7DFF, 0x7FFF, 0x7E55]
        sign = 0x8000
    else:
        pos = [0, 1, 2, 0x007F, 0x0080, 0x0081, 0x3F7F, 0x3F80, 0x3F81, 0x7F7E, 0x7F7F, 0x7F80, 0x7FC0, 0x7F81,
               0x7FBF, 0x7FFF, 0x7FD5]
        sign = 0x8000
    return pos + [p | sign for p in pos]


def _merge_bits(kind: str, a_bits, b_bits, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(the bits `_PieceMerger` writes, the bits of torch's `interpolate`, where torch's result is NaN, where
    the bits must be equal). A NaN's bits are torch's own only for BF16 (0xFFFF) and for F32 with one NaN
    product: torch's float16 -> float32 scalar code (tails of 1-7 elements) turns every NaN into 0x7FFFFFFF
    where its SIMD code keeps the payload, and where α·a and (1 − α)·b are both NaN the sum keeps either
    payload depending on the instruction's operand order (SIMD body or scalar tail, torch's or numpy's)."""
    td, ut, it = _KINDS[kind]
    a, b = (np.asarray(x, dtype=np.uint64).astype(ut) for x in (a_bits, b_bits))
    buf_a, buf_b = bytearray(a.tobytes()), bytearray(b.tobytes())
    ta, tb = (torch.frombuffer(bytearray(buf), dtype=td) for buf in (buf_a, buf_b))
    ref = merging.interpolate(ta, tb, alpha)
    both = ((alpha * ta.float()).isnan() & ((1.0 - alpha) * tb.float()).isnan()).numpy()
    merging._PieceMerger()(kind, buf_a, buf_b, len(buf_a), alpha)
    got = np.frombuffer(buf_a, ut).copy()
    nan = ref.isnan().numpy()
    exact = np.full(len(got), kind == "BF16") | ((kind == "F32") & ~both)
    return got, ref.view(it).numpy().view(ut), nan, ~nan | (_NAN_BITS_EXACT & exact)


def _assert_same_bits(kind: str, got: np.ndarray, want: np.ndarray, nan: np.ndarray, exact: np.ndarray,
                      what: str = "") -> None:
    td, ut, it = _KINDS[kind]
    got_nan = torch.from_numpy(got.view({np.uint16: np.int16, np.uint32: np.int32}[ut])).view(td).isnan().numpy()
    assert np.array_equal(got_nan, nan), f"{kind} {what}: NaN where torch has none (or not)"
    bad = np.nonzero((got != want) & exact)[0]
    assert not len(bad), (f"{kind} {what}: {len(bad)} of {len(got)} differ, first at {bad[0]}: "
                          f"ours {int(got[bad[0]]):#x}, torch {int(want[bad[0]]):#x}")


@pytest.mark.parametrize("kind", list(_KINDS))
@settings(max_examples=150, deadline=None)
@given(data=st.data(), alpha=st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.8, 1 / 3]), st.floats(0.0, 1.0)))
def test_piece_merge_equals_torch_bit_for_bit_property(kind: str, data, alpha: float) -> None:
    nbits = 32 if kind == "F32" else 16
    bits = st.one_of(st.sampled_from(_specials(kind)), st.integers(0, 2 ** nbits - 1))
    pairs = data.draw(st.lists(st.tuples(bits, bits), min_size=1, max_size=80))
    got, want, nan, exact = _merge_bits(kind, [p[0] for p in pairs], [p[1] for p in pairs], alpha)
    _assert_same_bits(kind, got, want, nan, exact, f"alpha={alpha!r}")


@pytest.mark.parametrize("kind", list(_KINDS))
def test_piece_merge_equals_torch_bit_for_bit_randomized(kind: str) -> None:
    """Large pieces (SIMD bodies and tails) of uniform random bits, model-like weights of every magnitude and
    edge values, at α of every kind."""
    rng = np.random.default_rng(0)
    td, ut, it = _KINDS[kind]
    nbits = 32 if kind == "F32" else 16
    specials = np.array(_specials(kind), dtype=np.uint64)
    for n in (1, 7, 15, 16, 17, 33, 1000, 65537):
        alphas = (0.0, 1.0, 0.5, 0.8, float(rng.random()), float(rng.random()) * 1e-3, 1 - float(rng.random()) * 1e-3)
        for alpha in alphas:
            cols = []
            for _ in range(2):
                uniform = rng.integers(0, 2 ** nbits, n, dtype=np.uint64)
                scale = np.exp2(rng.integers(-30, 30, n)) if kind != "F16" else np.exp2(rng.integers(-24, 15, n))
                weights = torch.from_numpy(rng.standard_normal(n) * scale).to(td).view(it).numpy()
                pick = rng.integers(0, 3, n)
                col = np.where(pick == 0, uniform, weights.view(ut).astype(np.uint64))
                cols.append(np.where(pick == 2, specials[rng.integers(0, len(specials), n)], col))
            got, want, nan, exact = _merge_bits(kind, cols[0], cols[1], alpha)
            _assert_same_bits(kind, got, want, nan, exact, f"n={n} alpha={alpha!r}")
    # the top binade (largest finite values) on both sides: the float32 sum may pass the largest finite value
    top = {"F32": np.arange(0x7F000000, 0x7F800000, 4099), "F16": np.arange(0x7800, 0x7C00),
           "BF16": np.arange(0x7F00, 0x7F80)}[kind].astype(np.uint64)
    for alpha in (0.3, 0.7, float(rng.random())):
        for b in (top, rng.permutation(top), top | (1 << (nbits - 1))):
            got, want, nan, exact = _merge_bits(kind, top, b, alpha)
            _assert_same_bits(kind, got, want, nan, exact, f"top binade, alpha={alpha!r}")


def test_conversions_round_like_torch() -> None:
    """The integer float16 / bfloat16 conversions: every float16 up (against numpy's exact cast); down, the
    float32s at every rounding boundary of every float16 and bfloat16 value (ties to even, subnormals,
    overflow to inf) and random ones, against torch's casts. (Checked once over all 2^32 float32s.)"""
    h = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    u = np.empty(2 ** 16, np.uint32)
    merging._f16_to_f32(h, u)
    nan = np.isnan(h.view(np.float16))
    assert np.array_equal(u[~nan], h[~nan].view(np.float16).astype(np.float32).view(np.uint32))
    assert np.isnan(u[nan].view(np.float32)).all() and np.array_equal(u[nan] >> 13 & 0x3FF, h[nan] & 0x3FF)

    def check(bits: np.ndarray, kind: str) -> None:
        bits = bits.astype(np.uint32)
        f = bits.view(np.float32)
        keep = ~np.isnan(f)
        t1, t2, out = np.empty_like(bits), np.empty_like(bits), np.empty(len(bits), np.uint16)
        with np.errstate(all="ignore"):
            if kind == "BF16":
                merging._f32_to_bf16(bits.copy(), out, t1)
                want = torch.from_numpy(f).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            else:
                merging._f32_to_f16(bits.copy(), out, t1, t2)
                want = torch.from_numpy(f).to(torch.float16).view(torch.int16).numpy().view(np.uint16)
        bad = np.nonzero((out != want) & keep)[0]
        assert not len(bad), f"{kind}: {bits[bad[0]]:#x} -> {out[bad[0]]:#x}, torch {want[bad[0]]:#x}"

    hi = np.arange(2 ** 16, dtype=np.uint64) << 16  # every bfloat16, and the float32s around its rounding points
    check((hi[:, None] | np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint64)).ravel(), "BF16")
    hi = np.arange(2 ** 19, dtype=np.uint64) << 13  # the same for float16's normal range (mantissa cut at bit 13)
    check((hi[:, None] | np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF], dtype=np.uint64)).ravel(), "F16")
    rng = np.random.default_rng(0)
    for e in range(98, 114):  # float16 subnormal results: the cut moves up one bit per binade below 2^-14
        cut = 13 + 113 - e
        half = 1 << (cut - 1)
        top = rng.integers(0, 2 ** (23 - cut), 4096, dtype=np.uint64) << cut if cut < 23 else np.zeros(1, np.uint64)
        low = np.array([0, 1, half - 1, half, half + 1, (1 << cut) - 1], dtype=np.uint64) & ((1 << 23) - 1)
        for sign in (0, 1 << 31):
            check((sign | (e << 23) | top[:, None] | low).ravel(), "F16")
    check(rng.integers(0, 2 ** 32, 1 << 20, dtype=np.uint64), "F16")


# --------------------------------------------------------------------------- `hybridcot merge` without torch

_NO_TORCH = """
import sys
from hybridcot.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print("HEAVY:", ",".join(heavy))
sys.exit(rc)
"""


@pytest.mark.parametrize("variant", ["bf16", "sharded"])
def test_cli_merge_does_not_import_torch(models, tmp_path: Path, variant: str) -> None:
    long, short = models[f"{variant}_long"], models[f"{variant}_short"]
    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, "merge", f"long={long}", f"short={short}",
                           f"output={out}", "alpha=0.7"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY:", proc.stdout  # neither torch nor transformers
    A, B, M = _weights(long), _weights(short), _weights(out)
    assert set(M) == set(A)
    for k in A:  # what the torch formula gives, bit for bit
        want = merging.interpolate(A[k], B[k], 0.7, k)
        assert M[k].dtype == want.dtype, k
        assert torch.equal(M[k].reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)), k
