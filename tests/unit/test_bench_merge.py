"""bench/merge.py: a tiny end-to-end run (no timing asserts), its synthetic checkpoints, and the streaming
merge it measures on pieces smaller than a tensor (what real sizes exercise and the pico model does not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import load_bench
from hybridcot import merging
from hybridcot.io import HybridcotError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "merge.py"


def _bench():
    return load_bench("merge")


def test_synthetic_checkpoint_is_a_sharded_qwen2_the_merge_accepts(tmp_path: Path, world_tokenizer_dir: Path) -> None:
    B = _bench()
    info = B.build_checkpoint(tmp_path / "a", 1, 0.004, "bf16", 3, world_tokenizer_dir)
    B.build_checkpoint(tmp_path / "b", 2, 0.004, "bf16", 3, world_tokenizer_dir)
    index = json.loads((tmp_path / "a" / merging.INDEX).read_text())
    assert len(set(index["weight_map"].values())) == 3 == len(info["shard_file_bytes"])
    assert index["metadata"]["total_size"] == info["tensor_bytes"]
    assert 0.7 * 0.004e9 < info["tensor_bytes"] < 1.3 * 0.004e9
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"] and cfg["num_hidden_layers"] == info["n_layers"] >= 1
    L, S = merging.check_compatible(tmp_path / "a", tmp_path / "b")
    assert L.meta["model.embed_tokens.weight"] == ("BF16", (cfg["vocab_size"], cfg["hidden_size"]))
    assert any(name.endswith("q_proj.bias") for name in L.meta)  # Qwen2 tensor names
    merging.write_merge(tmp_path / "a", tmp_path / "b", tmp_path / "m", 0.8)
    m = load_file(tmp_path / "m" / index["weight_map"]["model.norm.weight"])["model.norm.weight"]
    a = load_file(tmp_path / "a" / index["weight_map"]["model.norm.weight"])["model.norm.weight"]
    b = load_file(tmp_path / "b" / index["weight_map"]["model.norm.weight"])["model.norm.weight"]
    assert torch.equal(m, (0.8 * a.float() + 0.2 * b.float()).bfloat16())
    check = B.compare(tmp_path / "m", tmp_path / "m", tmp_path / "a", tmp_path / "b",
                      ["model.norm.weight", "model.embed_tokens.weight"])
    assert all(c["equal_to_formula"] and c["equal_to_mergekit"] and c["close"] for c in check.values())
    assert check["model.norm.weight"]["max_rounding_units_vs_mergekit"] == 0


def test_tiny_run_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "merge.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDCOT_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--gb", "0.004", "--shards", "2", "--repeats", "1",
                           "--no-mergekit", "--tmp", str(tmp_path), "--output", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("merge: ")
    res = json.loads(out.read_text())
    s = res["summary"]
    for key in ("throughput_ratio_vs_copy", "peak_rss_ratio_vs_largest_shard", "hybridcot_gb_per_s",
                "copy_gb_per_s", "hybridcot_peak_rss_mb", "import_torch_safetensors_rss_mb"):
        assert isinstance(s[key], (int, float)) and s[key] > 0, key
    assert s["speed_ratio_vs_mergekit"] is None and s["targets_met"]["at_least_as_fast_as_mergekit"] is None
    assert {"cpu_count", "torch", "date", "definitions"} <= set(res)
    assert [p.name for p in tmp_path.iterdir()] == ["merge.json"]  # temp checkpoints removed


def _checkpoint(path: Path, tensors: dict[str, torch.Tensor], split: str) -> Path:
    """Two shards (names < split, names >= split) with an index and a minimal config."""
    path.mkdir()
    save_file({k: v for k, v in tensors.items() if k < split}, str(path / "s1.safetensors"),
              metadata={"format": "pt", "note": "kept"})
    save_file({k: v for k, v in tensors.items() if k >= split}, str(path / "s2.safetensors"))
    wm = {k: "s1.safetensors" if k < split else "s2.safetensors" for k in tensors}
    (path / merging.INDEX).write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    (path / "config.json").write_text(json.dumps({"architectures": ["X"], "vocab_size": 7}))
    return path


@pytest.mark.parametrize("chunk", [8, 24, 4096])
def test_streaming_in_small_pieces_matches_interpolate_bit_for_bit(tmp_path: Path, monkeypatch, chunk: int) -> None:
    g = torch.Generator().manual_seed(0)

    def tensors(seed_shift: float) -> dict[str, torch.Tensor]:
        return {"a.f32": torch.randn(100, 37, generator=g) + seed_shift,
                "b.bf16": torch.randn(3001, generator=g).bfloat16(),
                "c.f16": torch.randn(77, 5, generator=g).half(),
                "d.f64": torch.randn(999, generator=g).double(),
                "e.i64": torch.arange(10), "f.bool": torch.tensor([True, False, True]),
                "g.f8": torch.randn(513, generator=g).to(torch.float8_e4m3fn),
                "h.scalar": torch.tensor(3.5)}

    ta, tb = tensors(0.0), tensors(1.0)
    A, B = _checkpoint(tmp_path / "a", ta, "d"), _checkpoint(tmp_path / "b", tb, "d")
    monkeypatch.setattr(merging, "_CHUNK", chunk)
    out = tmp_path / "out"
    out.mkdir()
    total = merging._stream(merging.open_checkpoint(A), merging.open_checkpoint(B), 0.7, out)
    got = {**load_file(out / "s1.safetensors"), **load_file(out / "s2.safetensors")}
    assert total == sum(t.numel() * t.element_size() for t in ta.values())
    for k in ta:
        ref = merging.interpolate(ta[k], tb[k], 0.7, k)
        assert got[k].dtype == ref.dtype and got[k].shape == ref.shape, k
        assert torch.equal(got[k].reshape(-1).view(torch.uint8), ref.reshape(-1).view(torch.uint8)), k
    # the bytes are save_file's (same layout), metadata kept
    from safetensors import safe_open

    with safe_open(out / "s1.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "kept"}
    ref_file = tmp_path / "ref.safetensors"
    save_file({k: merging.interpolate(ta[k], tb[k], 0.7, k) for k in ta if k >= "d"}, str(ref_file),
              metadata={"format": "pt"})
    assert ref_file.read_bytes() == (out / "s2.safetensors").read_bytes()


def test_streaming_refuses_integer_tensors_that_differ(tmp_path: Path) -> None:
    A = _checkpoint(tmp_path / "a", {"w": torch.ones(4), "n": torch.arange(6)}, "n")
    B = _checkpoint(tmp_path / "b", {"w": torch.zeros(4), "n": torch.arange(6) + 1}, "n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HybridcotError, match="'n' is I64 .*not floating point.* differs"):
        merging._stream(merging.open_checkpoint(A), merging.open_checkpoint(B), 0.5, out)
