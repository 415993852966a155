"""Generation speed: the batched `transformers` backend against vLLM on the same model and prompts.

    .venv/bin/python bench/generation.py                 # SmolLM2-135M + the default world's Long model
    .venv/bin/python bench/generation.py --models world --max-tokens 128

For each model the same prompts are sampled by both backends (temperature 0.6, top-p 0.95, the
same max tokens, no stop strings beyond EOS); tokens/s counts generated tokens over wall time of
`generate` (model loading excluded, one warm-up batch first). Each backend runs in its own
subprocess so that one's threads and memory never slow the other. Writes
bench/results/generation.json and prints one summary line with the vLLM/transformers ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _prompts(which: str, n: int) -> list:
    from hybridcot.data.problems import load_problems
    from hybridcot.generation import chat_prompt

    if which == "smollm2":
        bench = Path(os.environ.get("HYBRIDCOT_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks"))
        path = next(iter(sorted(bench.glob("gsm8k*test*.jsonl"))), None) or next(iter(sorted(bench.rglob("*gsm8k*.jsonl"))))
        probs = load_problems(path, limit=n)
    else:
        probs = load_problems(f"world:test:{n}:seed=7")
    return [chat_prompt(p.problem) for p in probs]


def _model(which: str) -> Path:
    if which == "smollm2":
        from hybridcot.models import smollm2_checkpoint

        return smollm2_checkpoint()
    from hybridcot.data.world_models import WorldBuildConfig, build_world

    return build_world(WorldBuildConfig(preset="default")) / "long"


def worker(args) -> None:
    """One backend on one model: prints a JSON line with tokens, seconds, tokens/s."""
    from hybridcot.generation import SamplingConfig, load_generator

    prompts = _prompts(args.models, args.prompts)
    params = SamplingConfig(n=1, temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    kw = {"batch_size": len(prompts)} if args.backend == "hf" else {"gpu_memory_utilization": 0.35}
    with load_generator(_model(args.models), backend=args.backend, progress=False, **kw) as gen:
        gen.generate(prompts[: min(4, len(prompts))], SamplingConfig(n=1, max_tokens=8))  # warm-up
        t = time.perf_counter()
        out = gen.generate(prompts, params)
        dt = time.perf_counter() - t
    tokens = sum(s.n_tokens for row in out for s in row)
    print("RESULT " + json.dumps({"model": args.models, "backend": args.backend, "prompts": len(prompts),
                                  "tokens": tokens, "seconds": round(dt, 3), "tokens_per_s": round(tokens / dt, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2,world", help="comma list of smollm2, world")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--backend", default="", help=argparse.SUPPRESS)  # worker mode
    ap.add_argument("--output", default=str(RESULTS / "generation.json"))
    args = ap.parse_args()
    if args.backend:
        worker(args)
        return
    runs = []
    for model in args.models.split(","):
        for backend in ("hf", "vllm"):
            cmd = [sys.executable, __file__, "--models", model, "--backend", backend,
                   "--prompts", str(args.prompts), "--max-tokens", str(args.max_tokens)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{model}/{backend} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            runs.append(json.loads(line[len("RESULT "):]))
            print(f"  {model:8s} {backend:5s} {runs[-1]['tokens']:6d} tokens in {runs[-1]['seconds']:7.1f}s "
                  f"= {runs[-1]['tokens_per_s']:8.1f} tok/s", flush=True)
    speedup = {}
    for model in args.models.split(","):
        by = {r["backend"]: r for r in runs if r["model"] == model}
        speedup[model] = round(by["vllm"]["tokens_per_s"] / by["hf"]["tokens_per_s"], 2)
    result = {"bench": "generation", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(),
              "threads": os.environ.get("HYBRIDCOT_THREADS", "default"), "max_tokens": args.max_tokens,
              "runs": runs,
              # the performance issue's figure: SmolLM2 (the real model) vLLM/transformers tokens/s
              "summary": {"vllm_over_hf_tokens_per_s": speedup.get("smollm2"), "vllm_over_hf_by_model": speedup}}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print("generation: vLLM/transformers tokens/s " + ", ".join(f"{m} {s}x" for m, s in speedup.items())
          + f" -> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
