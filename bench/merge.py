"""Merge speed and memory: `hybridcot merge` against a plain copy of the same bytes and against mergekit.

    .venv/bin/python bench/merge.py                       # two 1.2 GB bf16 checkpoints, 4 shards each
    .venv/bin/python bench/merge.py --gb 0.2 --dtype float32 --repeats 1 --no-mergekit

Builds two synthetic Qwen2-style checkpoints (random weights, real tensor names and shapes, a
config.json, model.safetensors.index.json, `--shards` shard files, a tokenizer) of about `--gb` GB
each in a temp folder under /tmp (removed at the end unless --keep), then runs, each in its own
subprocess so its peak RSS is its own (ru_maxrss from os.wait4 on that child):

* hybridcot: `hybridcot merge long=A short=B output=OUT alpha=0.8` (the CLI, end to end);
* copy: the I/O limit of the same job in plain Python (no torch): read every shard of both inputs
  fully (1 MiB reads) and write A's shard bytes to OUT. Merge and copy both read 2·B bytes and
  write B bytes; the copy does no arithmetic and no parsing;
* mergekit: `mergekit-yaml` with the linear config `hybridcot merge` writes (same α, float32
  arithmetic, out_dtype = the inputs' dtype), on CPU with --lazy-unpickle, output shards as large
  as the inputs', no model card.

Throughput = merged output bytes (B, tensor bytes) / wall seconds of the whole process (start-up
included; the merge's own seconds from merge.json are reported too). The page cache cannot be
dropped without root, so before every run the outputs of the previous one are removed, both input
checkpoints are read once (warm-up: they are in the page cache for every method alike) and dirty
pages are flushed (sync); the methods alternate order over `--repeats` runs and the median is kept.
mergekit's output is checked against hybridcot's on a few tensors. Writes bench/results/merge.json
and prints one summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
ALPHA = 0.8
CHUNK = 1 << 20  # read/write size of the copy baseline: the fastest measured here (16 MiB was 4x slower)
METHODS = ("copy", "hybridcot", "mergekit")
DTYPES = {"bf16": ("bfloat16", 2), "float32": ("float32", 4)}
# Qwen2-1.5B-like widths at 1 GB and more; narrower (and a smaller vocabulary) for small test sizes,
# so that the two embedding matrices stay a small part of the model. (hidden, intermediate, heads, kv heads, vocab)
WIDTHS = ((1536, 4096, 12, 2, 32000), (512, 1536, 8, 2, 8192), (128, 384, 4, 2, 2048))


# --------------------------------------------------------------------------- synthetic checkpoints

def model_layout(gb: float, elsize: int) -> tuple[dict, list[tuple[str, tuple[int, ...]]]]:
    """(config.json, [(tensor name, shape)]) of a Qwen2 model of about `gb` GB at `elsize` bytes a weight."""
    params = gb * 1e9 / elsize
    hidden, inter, heads, kv_heads, vocab = next((w for w in WIDTHS if 2 * w[0] * w[4] <= 0.25 * params), WIDTHS[-1])
    kv = hidden // heads * kv_heads
    layer = [("self_attn.q_proj.weight", (hidden, hidden)), ("self_attn.q_proj.bias", (hidden,)),
             ("self_attn.k_proj.weight", (kv, hidden)), ("self_attn.k_proj.bias", (kv,)),
             ("self_attn.v_proj.weight", (kv, hidden)), ("self_attn.v_proj.bias", (kv,)),
             ("self_attn.o_proj.weight", (hidden, hidden)),
             ("mlp.gate_proj.weight", (inter, hidden)), ("mlp.up_proj.weight", (inter, hidden)),
             ("mlp.down_proj.weight", (hidden, inter)),
             ("input_layernorm.weight", (hidden,)), ("post_attention_layernorm.weight", (hidden,))]
    per_layer = sum(math.prod(s) for _, s in layer)
    fixed = 2 * vocab * hidden + hidden
    n_layers = max(1, round((params - fixed) / per_layer))
    names = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(n_layers):
        names += [(f"model.layers.{i}.{n}", s) for n, s in layer]
    names += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
              "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": n_layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
              "max_position_embeddings": 4096, "max_window_layers": n_layers, "rms_norm_eps": 1e-6,
              "rope_theta": 10000.0, "tie_word_embeddings": False, "use_sliding_window": False,
              "sliding_window": None, "attention_dropout": 0.0, "initializer_range": 0.02,
              "bos_token_id": None, "eos_token_id": 2, "pad_token_id": 0, "use_cache": True}
    return config, names


def tokenizer_files(dest: Path) -> str:
    """Put a tokenizer in `dest`: the embedded world's (any built one) or one trained on a few strings."""
    for src in sorted(Path("~/.cache/hybridcot/world").expanduser().glob("*/tokenizer")):
        if (src / "tokenizer.json").is_file():
            for f in src.iterdir():
                if f.is_file():
                    shutil.copy2(f, dest / f.name)
            return str(src)
    from hybridcot.data.tokenizer import train_tokenizer

    tok = train_tokenizer(["What is 12 + 30? The answer is 42.", "Let me check: 6 * 7 = 42."] * 50, 300)
    tok.save_pretrained(dest)
    return "train_tokenizer"


def build_checkpoint(out: Path, seed: int, gb: float, dtype: str, n_shards: int, tok_dir: Path) -> dict:
    """A sharded safetensors checkpoint of random weights; returns its facts (bytes, shard sizes)."""
    import torch
    from safetensors.torch import save_file

    tdtype, elsize = getattr(torch, DTYPES[dtype][0]), DTYPES[dtype][1]
    config, layout = model_layout(gb, elsize)
    config["torch_dtype"] = DTYPES[dtype][0]
    total = sum(math.prod(s) for _, s in layout) * elsize
    out.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    names = [f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors" for k in range(n_shards)]
    weight_map, shard, start, k = {}, {}, 0, 0

    def flush() -> None:
        if shard:
            save_file(shard, str(out / names[k]), metadata={"format": "pt"})
            shard.clear()

    for name, shape in layout:
        nk = min(n_shards - 1, start * n_shards // total)  # the shard this tensor starts in
        if nk != k:
            flush()
            k = nk
        if name.endswith("norm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g).mul_(0.02)
        shard[name] = t.to(tdtype)
        del t
        weight_map[name] = names[k]
        start += math.prod(shape) * elsize
    flush()
    missing = [n for n in names if not (out / n).is_file()]
    if missing:
        sys.exit(f"{gb} GB is too small for {n_shards} shards ({missing[0]} would be empty): raise --gb or lower --shards")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "pad_token_id": 0}) + "\n")
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    for f in tok_dir.iterdir():
        shutil.copy2(f, out / f.name)
    sizes = [(out / n).stat().st_size for n in names]
    return {"tensor_bytes": total, "n_tensors": len(layout), "n_layers": config["num_hidden_layers"],
            "shard_file_bytes": sizes, "largest_shard_bytes": max(sizes),
            **{k: config[k] for k in ("hidden_size", "intermediate_size", "vocab_size")}}


# --------------------------------------------------------------------------- the measured commands

def copy_worker(a: Path, b: Path, out: Path) -> None:
    """The copy baseline (plain Python, no torch): read all shards of a and b, write a's shards to out."""
    out.mkdir(parents=True, exist_ok=True)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    for src in (a, b):
        for shard in sorted(p.name for p in src.glob("*.safetensors")):
            dst = open(out / shard, "wb") if src == a else None
            with open(src / shard, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    if dst is not None:
                        dst.write(view[:n])
            if dst is not None:
                dst.close()


# Runs one command and prints {"wall_s", "maxrss_kib"} of it. A fresh small interpreter (no torch) is the
# parent: a child's ru_maxrss starts at its parent's RSS at fork time (Linux records the old mm's high-water
# mark at exec), so measuring from this torch-importing process would add ~0.3 GB to every figure.
_WRAPPER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - t0, "maxrss_kib": ru.ru_maxrss,
                  "exit": os.waitstatus_to_exitcode(status)}))
"""


def measure(cmd: list[str], log: Path) -> dict:
    """Run cmd under a fresh wrapper process: wall seconds and the command's own peak RSS (wait4's ru_maxrss)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-S", "-c", _WRAPPER, str(log), *cmd], capture_output=True, text=True,
                          env=env)
    if proc.returncode:
        sys.exit(f"measuring wrapper failed: {proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["exit"]:
        sys.exit(f"{' '.join(cmd)} failed (exit {res['exit']}):\n{log.read_text()[-3000:]}")
    return {"wall_s": res["wall_s"], "peak_rss_mb": res["maxrss_kib"] / 1024}  # KiB on Linux


def warm_up(dirs: list[Path]) -> None:
    """Read every input shard once (all methods then start from the same warm page cache)."""
    buf = bytearray(CHUNK)
    for d in dirs:
        for p in sorted(d.glob("*.safetensors")):
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def compare(ours: Path, theirs: Path, a: Path, b: Path, names: list[str]) -> dict:
    """hybridcot's merged tensors against mergekit's and against the formula computed here, on `names`.

    The difference is measured in rounding units of the computation: |ours − mergekit| divided by
    eps(output dtype)·(α|a| + (1 − α)|b|), so cancellation (a result near 0 from large operands) does not
    inflate it the way ulps of the result would. `close`: at most 2 such units (float rounding).
    """
    import torch
    from safetensors import safe_open

    def load(d: Path, n: str):
        wm = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
        with safe_open(d / wm[n], framework="pt") as f:
            return f.get_tensor(n)

    out = {}
    for n in names:
        m, k, ta, tb = load(ours, n), load(theirs, n), load(a, n).float(), load(b, n).float()
        ref = (ALPHA * ta + (1 - ALPHA) * tb).to(m.dtype)
        row = {"dtype": str(m.dtype).replace("torch.", ""), "shape": list(m.shape),
               "equal_to_formula": bool(torch.equal(m, ref)), "equal_to_mergekit": False,
               "max_abs_diff_vs_mergekit": None, "max_rounding_units_vs_mergekit": None, "close": False}
        if m.shape == k.shape and m.dtype == k.dtype:
            diff = (m.float() - k.float()).abs()
            scale = torch.finfo(m.dtype).eps * (ALPHA * ta.abs() + (1 - ALPHA) * tb.abs()) + 1e-30
            units = (diff / scale).max().item()
            row.update(equal_to_mergekit=bool(torch.equal(m, k)), max_abs_diff_vs_mergekit=diff.max().item(),
                       max_rounding_units_vs_mergekit=round(units, 3), close=units <= 2)
        out[n] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.2, help="size of each input checkpoint in GB (1e9 bytes)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--shards", type=int, default=4, help="shard files per checkpoint")
    ap.add_argument("--repeats", type=int, default=2, help="runs per method (alternating order); median kept")
    ap.add_argument("--no-mergekit", action="store_true", help="skip mergekit-yaml")
    ap.add_argument("--mergekit-args", default="--lazy-unpickle --quiet --no-write-model-card --copy-tokenizer",
                    help="extra mergekit-yaml options (besides --out-shard-size)")
    ap.add_argument("--tmp", default="/tmp", help="folder for the temp checkpoints")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--output", default=str(RESULTS / "merge.json"))
    ap.add_argument("--copy-worker", nargs=3, metavar=("A", "B", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.copy_worker:
        copy_worker(*(Path(p) for p in args.copy_worker))
        return
    if args.shards < 1 or args.repeats < 1 or args.gb <= 0:
        sys.exit("--shards and --repeats must be >= 1 and --gb > 0")

    import torch

    from hybridcot.io import write_json
    from hybridcot.merging import write_mergekit_yaml

    mergekit = BIN / "mergekit-yaml"
    if not args.no_mergekit and not mergekit.exists():
        found = shutil.which("mergekit-yaml")
        mergekit = Path(found) if found else None
    methods = [m for m in METHODS if m != "mergekit" or (not args.no_mergekit and mergekit is not None)]
    root = Path(tempfile.mkdtemp(prefix="hybridcot-bench-merge-", dir=args.tmp))
    try:
        t = time.perf_counter()
        tok = root / "tokenizer"
        tok.mkdir()
        tok_src = tokenizer_files(tok)
        A, B = root / "long", root / "short"
        facts = build_checkpoint(A, 1, args.gb, args.dtype, args.shards, tok)
        build_checkpoint(B, 2, args.gb, args.dtype, args.shards, tok)
        print(f"  built 2 x {facts['tensor_bytes'] / 1e9:.2f} GB {args.dtype} checkpoints ({args.shards} shards, "
              f"{facts['n_tensors']} tensors) in {time.perf_counter() - t:.0f}s", flush=True)
        yaml_path = write_mergekit_yaml(root / "mergekit.yaml", A, B, ALPHA, DTYPES[args.dtype][0])
        outs = {m: root / f"out-{m}" for m in methods}
        cmds = {
            "copy": [sys.executable, __file__, "--copy-worker", str(A), str(B), str(outs["copy"])],
            "hybridcot": [str(BIN / "hybridcot"), "merge", f"long={A}", f"short={B}", f"output={outs['hybridcot']}",
                          f"alpha={ALPHA}"],
        }
        if "mergekit" in methods:
            cmds["mergekit"] = [str(mergekit), str(yaml_path), str(outs["mergekit"]),
                                "--out-shard-size", str(facts["largest_shard_bytes"]), *args.mergekit_args.split()]
        # the interpreter's own footprint: what any torch-based merge (mergekit) pays before touching a tensor,
        # and what `hybridcot merge` pays (it merges with numpy and never imports torch)
        baseline = measure([sys.executable, "-c", "import torch, safetensors"], root / "baseline.log")
        startup = measure([sys.executable, "-c", "import numpy, safetensors, hybridcot.cli, hybridcot.merging"],
                          root / "startup.log")
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for r in range(args.repeats):
            for m in methods if r % 2 == 0 else methods[::-1]:
                shutil.rmtree(outs[m], ignore_errors=True)
                warm_up([A, B])
                os.sync()
                res = measure(cmds[m], root / f"{m}-{r}.log")
                if m == "hybridcot":
                    res["merge_s"] = json.loads((outs[m] / "merge.json").read_text())["seconds"]
                res["gb_per_s"] = facts["tensor_bytes"] / 1e9 / res["wall_s"]
                runs[m].append(res)
                print(f"  run {r + 1} {m:9s} {res['wall_s']:7.2f}s  {res['gb_per_s']:.3f} GB/s  "
                      f"peak RSS {res['peak_rss_mb']:7.0f} MB", flush=True)
        check = None  # the last runs' outputs: mergekit against hybridcot on a few tensors
        if "mergekit" in methods:
            n_last = facts["n_layers"] - 1
            check = compare(outs["hybridcot"], outs["mergekit"], A, B,
                            ["model.embed_tokens.weight", f"model.layers.{n_last}.mlp.down_proj.weight",
                             "model.layers.0.self_attn.q_proj.bias", "model.norm.weight"])
    finally:
        if args.keep:
            print(f"  kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    best = {m: {k: min(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    shard = facts["largest_shard_bytes"] / 2**20
    hy, cp = med["hybridcot"], med["copy"]
    summary = {
        "throughput_ratio_vs_copy": round(hy["gb_per_s"] / cp["gb_per_s"], 3),
        "peak_rss_ratio_vs_largest_shard": round(hy["peak_rss_mb"] / shard, 3),
        "speed_ratio_vs_mergekit": round(med["mergekit"]["wall_s"] / hy["wall_s"], 3) if "mergekit" in med else None,
        "hybridcot_gb_per_s": round(hy["gb_per_s"], 3), "copy_gb_per_s": round(cp["gb_per_s"], 3),
        "mergekit_gb_per_s": round(med["mergekit"]["gb_per_s"], 3) if "mergekit" in med else None,
        "hybridcot_peak_rss_mb": round(hy["peak_rss_mb"], 1), "copy_peak_rss_mb": round(cp["peak_rss_mb"], 1),
        "mergekit_peak_rss_mb": round(med["mergekit"]["peak_rss_mb"], 1) if "mergekit" in med else None,
        "hybridcot_wall_s": round(hy["wall_s"], 3), "hybridcot_merge_s": round(hy["merge_s"], 3),
        "copy_wall_s": round(cp["wall_s"], 3),
        "mergekit_wall_s": round(med["mergekit"]["wall_s"], 3) if "mergekit" in med else None,
        # the ratios without the interpreter: merge.json seconds, and RSS above hybridcot's own imports
        "throughput_ratio_vs_copy_excl_startup": round(cp["wall_s"] / hy["merge_s"], 3),
        # the same ratios from each method's fastest run (less sensitive to the machine's noise than medians)
        "throughput_ratio_vs_copy_best_runs": round(best["copy"]["wall_s"] / best["hybridcot"]["wall_s"], 3),
        "throughput_ratio_vs_copy_excl_startup_best_runs": round(best["copy"]["wall_s"] / best["hybridcot"]["merge_s"],
                                                                 3),
        "peak_rss_above_import_mb": round(hy["peak_rss_mb"] - startup["peak_rss_mb"], 1),
        "import_torch_safetensors_rss_mb": round(baseline["peak_rss_mb"], 1),
        "import_torch_safetensors_s": round(baseline["wall_s"], 3),
        "hybridcot_startup_import_rss_mb": round(startup["peak_rss_mb"], 1),
        "hybridcot_startup_import_s": round(startup["wall_s"], 3),
        "largest_shard_mb": round(shard, 1), "input_gb": round(facts["tensor_bytes"] / 1e9, 3),
        "dtype": args.dtype, "shards": args.shards, "repeats": args.repeats,
    }
    targets = {"throughput_ge_0.5_copy": summary["throughput_ratio_vs_copy"] >= 0.5,
               # the same target on the fastest runs, end to end and without the interpreter start-up
               "throughput_ge_0.5_copy_best_runs": summary["throughput_ratio_vs_copy_best_runs"] >= 0.5,
               "throughput_ge_0.5_copy_excl_startup_best_runs":
                   summary["throughput_ratio_vs_copy_excl_startup_best_runs"] >= 0.5,
               "peak_rss_le_2x_largest_shard": summary["peak_rss_ratio_vs_largest_shard"] <= 2.0,
               "at_least_as_fast_as_mergekit": None if summary["speed_ratio_vs_mergekit"] is None
               else summary["speed_ratio_vs_mergekit"] >= 1.0}
    summary["targets_met"] = targets
    notes = []
    if startup["peak_rss_mb"] > 0.5 * hy["peak_rss_mb"]:
        notes.append(f"hybridcot's peak RSS is dominated by the interpreter: its imports (numpy, safetensors, "
                     f"hybridcot) alone peak at {startup['peak_rss_mb']:.0f} MB of its {hy['peak_rss_mb']:.0f} MB; "
                     f"the merge itself adds {hy['peak_rss_mb'] - startup['peak_rss_mb']:.0f} MB")
    if hy["wall_s"] - hy["merge_s"] > 0.2 * hy["wall_s"]:
        notes.append(f"hybridcot's wall includes {hy['wall_s'] - hy['merge_s']:.1f}s of start-up (Python, numpy, "
                     f"safetensors: {startup['wall_s']:.2f}s here; the merge does not import torch, which alone "
                     f"takes {baseline['wall_s']:.1f}s) before the merge's own {hy['merge_s']:.1f}s (merge.json); "
                     "throughput_ratio_vs_copy_excl_startup leaves it out")
    walls = {m: [r["wall_s"] for r in rs] for m, rs in runs.items()}
    if args.repeats > 1 and max(walls["copy"]) > 1.5 * min(walls["copy"]):
        notes.append(f"noisy machine: the copy's wall ranged {min(walls['copy']):.2f}-{max(walls['copy']):.2f}s and "
                     f"hybridcot's {min(walls['hybridcot']):.2f}-{max(walls['hybridcot']):.2f}s over {args.repeats} "
                     "runs (shared CPU, page-cache writeback), so throughput_ratio_vs_copy moves with the copy's "
                     "median; the *_best_runs ratios use each method's fastest run")
    result = {
        "bench": "merge", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(),
        "threads": {k: os.environ.get(k, "default") for k in ("OMP_NUM_THREADS", "HYBRIDCOT_THREADS")},
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "mergekit": _version("mergekit"), "safetensors": _version("safetensors"), "numpy": _version("numpy"),
        "definitions": {
            "B": "tensor bytes of one input checkpoint = the merged output's tensor bytes",
            "throughput": "B / wall seconds of the whole process (interpreter start-up included), GB = 1e9 bytes",
            "copy": "plain Python, no torch: read every shard file of both inputs fully (1 MiB reads) and write "
                    "the long checkpoint's shard bytes to a new folder: reads 2B, writes B, like the merge",
            "hybridcot": f"`hybridcot merge long=A short=B output=OUT alpha={ALPHA}` (CLI, end to end)",
            "mergekit": "mergekit-yaml on the linear YAML of write_mergekit_yaml (float32 arithmetic, out_dtype = "
                        "input dtype), --out-shard-size = the largest input shard, " + args.mergekit_args,
            "merge_s": "hybridcot's own seconds (merge.json: checks, streaming, config and tokenizer copies), without "
                       "the interpreter start-up (Python, numpy, safetensors: hybridcot_startup_import_s; the merge "
                       "computes with numpy and never imports torch); throughput_ratio_vs_copy_excl_startup = copy "
                       "wall / merge_s",
            "peak_rss": "ru_maxrss (os.wait4) of the command, run by a fresh small wrapper interpreter (a child "
                        "inherits its parent's RSS high-water mark at fork), MiB; the largest shard in MiB too; "
                        "peak_rss_above_import_mb: hybridcot's above its own imports (hybridcot_startup_import_rss_mb)",
            "cache": "no page-cache drop (needs root): outputs removed, both inputs read once, sync, before every "
                     "run; methods alternate order over repeats; medians",
        },
        "checkpoint": {**facts, "dtype": args.dtype, "shards": args.shards, "tokenizer_from": tok_src,
                       "architecture": "Qwen2ForCausalLM"},
        "baseline_import": baseline, "startup_import": startup, "runs": runs, "medians": med, "best": best, "mergekit_check": check,
        "summary": summary, "notes": notes,
    }
    out = Path(args.output)
    write_json(out, result)
    met = ", ".join(f"{k} {'yes' if v else 'NO' if v is not None else 'n/a'}" for k, v in targets.items())
    print(f"merge: {hy['gb_per_s']:.2f} GB/s = {summary['throughput_ratio_vs_copy']}x copy, peak RSS "
          f"{hy['peak_rss_mb']:.0f} MB = {summary['peak_rss_ratio_vs_largest_shard']}x largest shard, "
          f"{summary['speed_ratio_vs_mergekit']}x mergekit speed; targets: {met} "
          f"-> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
