"""`hybridcot eval`: sample a model on a problem set, grade every response, write metrics.

    hybridcot eval model=runs/demo/world/long problems=world:test:200:seed=0 output=runs/demo/eval/long

Outputs in `output/`: `samples.jsonl` (one graded response a line, appended a problem at a time, so
a killed run resumes where it stopped), `metrics.json` (see `metrics.summarize`, plus the run's
settings and speed) and `config.yaml` (the resolved config). Rerunning on a finished folder
regenerates nothing and only rewrites the metrics.

Other stages reuse the pieces: `score_samples` turns generator output into graded records and
`generate_records` runs the chunked generate-and-grade loop around any `Generator`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridcot.config import field, same_setting, save_config
from hybridcot.evaluation.metrics import summarize
from hybridcot.io import HybridcotError, JsonlAppender, iter_jsonl, write_json, write_jsonl
from hybridcot.shards import SHARD_HELP, in_shard, parse_shard, shard_folder

BACKENDS = ("auto", "hf", "vllm", "http")
# Settings that change what samples.jsonl holds: a resumed run must match them.
RUN_KEYS = ("model", "problems", "n", "temperature", "top_p", "max_tokens", "seed", "fallback_last_number")


@dataclass
class EvalConfig:
    """Evaluate one model on one problem set."""

    model: str = field("", help="model checkpoint folder (safetensors + config + tokenizer with a chat template)")
    problems: str = field("", help="problem set spec for load_problems: a JSONL/JSON/Parquet path or "
                                   "'world:<split>:<count>[:seed=S]'")
    output: str = field("", help="output folder for samples.jsonl, metrics.json and config.yaml")
    name: str = field("", help="system name in reports (default: the model folder's name)")
    backend: str = field("auto", help="generation backend: auto (vLLM where installed) | hf | vllm | http")
    urls: str = field("", help="backend=http: server base URLs, comma-separated (default $HYBRIDCOT_HTTP_URLS)")
    dtype: str = field("float32", help="model dtype for generation (float32 | bfloat16 | float16 | auto)")
    n: int = field(1, help="samples per problem; accuracy is pass@1 averaged over them")
    temperature: float = field(0.0, help="sampling temperature (0 = greedy)")
    top_p: float = field(1.0, help="nucleus sampling top-p")
    max_tokens: int = field(1024, help="maximum generated tokens per response")
    seed: int = field(0, help="sampling seed (also seeds the accuracy bootstrap)")
    limit: int | None = field(None, help="evaluate only the first `limit` problems")
    shard: str | None = field(None, help=SHARD_HELP)
    batch_size: int = field(64, help="problems per generate call (each brings n samples)")
    grade_timeout: float = field(5.0, help="seconds per grader call; a timeout counts as wrong")
    fallback_last_number: bool = field(False, help="grade the last number when a response has no \\boxed{}")
    n_boot: int = field(1000, help="bootstrap resamples for the accuracy CI (0 = no interval)")

    def __post_init__(self) -> None:
        for key in ("model", "problems", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if not self.name:
            self.name = Path(self.model).name or str(self.model)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null, got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.grade_timeout <= 0:
            raise ValueError(f"grade_timeout must be > 0, got {self.grade_timeout}")
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot}")
        parse_shard(self.shard)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Attribute or dict access, so Problem/Sample objects and JSONL dicts both work."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def grade_responses(responses: Sequence[str], golds: Sequence[str], *, timeout: float = 5.0,
                    fallback_last_number: bool = False) -> list:
    """GradeResults for parallel lists of responses and gold answers (the one grader)."""
    from hybridcot.grading import grade_many

    return list(grade_many(list(responses), list(golds), timeout=timeout, fallback_last_number=fallback_last_number))


def score_samples(problems: Sequence[Any], samples_per_problem: Sequence[Sequence[Any]], *,
                  timeout: float = 5.0, fallback_last_number: bool = False,
                  extra: dict | None = None) -> list[dict]:
    """Grade generator output: one record per sample, problem by problem, in order.

    `problems` are Problem objects or dicts (id, answer, level); samples are `Sample` objects or
    dicts with text / n_tokens / finish_reason. `extra` keys are added to every record (and win).
    Every record carries `style` ("long" | "short", `hybridcot.adar1.style.classify_style`), so
    each summary reports the Long-style share overall and per level (`style_share`).
    """
    from hybridcot.adar1.style import classify_style
    from hybridcot.grading import shows_thinking

    if len(problems) != len(samples_per_problem):
        raise HybridcotError(f"score_samples: {len(problems)} problems but {len(samples_per_problem)} sample lists")
    flat = [(p, j, s) for p, ss in zip(problems, samples_per_problem) for j, s in enumerate(ss)]
    texts = [str(_get(s, "text", "") or "") for _, _, s in flat]
    golds = [str(_get(p, "answer", "")) for p, _, _ in flat]
    results = grade_responses(texts, golds, timeout=timeout, fallback_last_number=fallback_last_number)
    records = []
    for (p, j, s), text, gold, res in zip(flat, texts, golds, results):
        records.append({
            "id": str(_get(p, "id")),
            "level": _get(p, "level"),
            "sample": j,
            "text": text,
            "n_tokens": int(_get(s, "n_tokens", 0) or 0),
            "n_chars": len(text),
            "extracted": res.extracted,
            "gold": gold,
            "correct": bool(res.correct),
            "reason": res.reason,
            "finish_reason": _get(s, "finish_reason", "stop"),
            "thinking": bool(shows_thinking(text)),
            "style": classify_style(text),
            **(extra or {}),
        })
    return records


def generate_records(generator: Any, problems: Sequence[Any], params: Any, *, batch_size: int = 64,
                     timeout: float = 5.0, fallback_last_number: bool = False, extra: dict | None = None,
                     on_chunk: Callable[[list[dict]], None] | None = None, progress: Any = None) -> list[dict]:
    """Generate and grade `problems` in chunks of `batch_size`; returns all records.

    Every chunk samples with the same `params` (the backends seed each row from the seed, its
    prompt and its sample index, so a sample does not depend on its chunk: a resumed run draws what
    an uninterrupted one would). `on_chunk` gets each chunk's records as soon as they
    are graded (to append them to disk); `progress` is a tqdm-like object advanced per problem.
    """
    from hybridcot.generation import chat_prompt

    out: list[dict] = []
    for i in range(0, len(problems), batch_size):
        chunk = list(problems[i:i + batch_size])
        samples = generator.generate([chat_prompt(str(_get(q, "problem"))) for q in chunk], params)
        recs = score_samples(chunk, samples, timeout=timeout, fallback_last_number=fallback_last_number, extra=extra)
        if on_chunk is not None:
            on_chunk(recs)
        out.extend(recs)
        if progress is not None:
            progress.update(len(chunk))
    return out


def load_done(path: Path, n: int) -> dict[str, list[dict]]:
    """Complete problems already in `path` (id -> its n records); drops torn or partial problems.

    A problem is complete when it has samples 0..n-1. When the file holds a partial problem (a kill
    between two lines of one problem) it is rewritten without it, atomically, so appending the
    problem again cannot duplicate samples.
    """
    if not path.exists():
        return {}
    groups: dict[str, dict[int, dict]] = {}
    order: list[dict] = []
    for _, r in iter_jsonl(path, allow_torn_tail=True):
        if "id" not in r or "sample" not in r:
            raise HybridcotError(f"{path}: record without 'id'/'sample' fields; not an eval samples file")
        order.append(r)
        groups.setdefault(str(r["id"]), {}).setdefault(int(r["sample"]), r)
    done = {pid: [g[j] for j in range(n)] for pid, g in groups.items() if set(g) == set(range(n))}
    torn = path.stat().st_size > 0 and not _ends_with_newline(path)
    if torn or len(order) != sum(len(v) for v in done.values()):
        write_jsonl(path, (r for r in order if str(r["id"]) in done and done[str(r["id"])][int(r["sample"])] is r))
    return done


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def _check_resume(cfg: EvalConfig, out: Path) -> None:
    prev = out / "config.yaml"
    if not prev.exists() or not (out / "samples.jsonl").exists():
        return
    try:
        old = yaml.safe_load(prev.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return
    new = dataclasses.asdict(cfg)
    diff = [k for k in RUN_KEYS if k in old and not same_setting(old[k], new[k])]
    if diff:
        k = diff[0]
        raise HybridcotError(f"{out}: holds a run with {k}={old[k]!r} (now {new[k]!r}); "
                             "use a new output folder or delete samples.jsonl")


def progress(total: int, initial: int, desc: str):
    """A per-problem progress bar (rate, time left); off unless `hybridcot.ui.progress_enabled()`."""
    from hybridcot.ui import progress as bar

    return bar(total=total, initial=initial, desc=desc, unit="problem")


def load_run_problems(spec: str, limit: int | None, shard: str | None = None) -> tuple[list, list[str]]:
    """The problems of a resumable run (eval, collaborate) and their ids: none or a repeated id is an
    error. With `shard` ("i/n") only that shard's problems (possibly none) are kept, after `limit`."""
    from hybridcot.data.problems import load_problems

    problems = load_problems(spec, limit=limit)
    if not problems:
        raise HybridcotError(f"{spec}: no problems to evaluate")
    ids = [str(_get(p, "id")) for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise HybridcotError(f"{spec}: duplicate problem id {dup!r}")
    part = parse_shard(shard)
    if part is not None:
        keep = [in_shard(i, part) for i in ids]
        problems, ids = [p for p, k in zip(problems, keep) if k], [i for i, k in zip(ids, keep) if k]
    return problems, ids


def run_eval(cfg: EvalConfig) -> dict:
    """Run (or resume) one evaluation; returns the metrics dict also written to metrics.json."""
    from hybridcot.generation import SamplingConfig

    t0 = time.time()
    out = shard_folder(cfg.output, cfg.shard)  # a shard writes to <output>/shard-i-of-n/
    out.mkdir(parents=True, exist_ok=True)
    problems, ids = load_run_problems(cfg.problems, cfg.limit, cfg.shard)
    _check_resume(cfg, out)
    save_config(cfg, out)

    samples_path = out / "samples.jsonl"
    if not problems:  # an empty shard (a small set split many ways)
        samples_path.touch()
        metrics = {"name": cfg.name, "model": cfg.model, "problems": cfg.problems, "shard": cfg.shard,
                   "n_problems": 0}
        write_json(out / "metrics.json", metrics)
        print(f"eval {cfg.name}: shard {cfg.shard} holds no problems -> {out / 'metrics.json'}")
        return metrics
    done = load_done(samples_path, cfg.n)
    todo = [(i, p) for i, p in enumerate(problems) if ids[i] not in done]
    params = SamplingConfig(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                            seed=cfg.seed)
    new: list[dict] = []
    gen_s = 0.0
    if todo:
        from hybridcot.generation import load_generator

        generator = load_generator(cfg.model, backend=cfg.backend, dtype=cfg.dtype, urls=cfg.urls or None,
                                   progress=False)  # the per-problem bar below, not one per generate call
        t1 = time.time()
        try:
            with JsonlAppender(samples_path) as app, progress(len(problems), len(problems) - len(todo),
                                                                f"eval {cfg.name}") as bar:
                def write(recs: list[dict]) -> None:
                    for r in recs:
                        app.write(r)

                new = generate_records(generator, [p for _, p in todo], params, batch_size=cfg.batch_size,
                                       timeout=cfg.grade_timeout, fallback_last_number=cfg.fallback_last_number,
                                       extra={"model": cfg.name}, on_chunk=write, progress=bar)
        finally:
            generator.close()
        gen_s = time.time() - t1

    by_id = {r["id"]: [] for r in new}
    for r in new:
        by_id[r["id"]].append(r)
    records = [r for pid in ids for r in (done.get(pid) or by_id.get(pid, []))]
    new_tokens = sum(int(r["n_tokens"]) for r in new)
    metrics = {
        "name": cfg.name,
        "model": cfg.model,
        "problems": cfg.problems,
        **({"shard": cfg.shard} if cfg.shard else {}),
        "sampling": {"n": cfg.n, "temperature": cfg.temperature, "top_p": cfg.top_p,
                     "max_tokens": cfg.max_tokens, "seed": cfg.seed},
        **summarize(records, n_boot=cfg.n_boot, seed=cfg.seed),
        "timing": {"wall_s": time.time() - t0, "generate_s": gen_s, "generated_tokens": new_tokens,
                   "tokens_per_s": new_tokens / gen_s if gen_s > 0 else None,
                   "problems_generated": len(todo), "problems_resumed": len(problems) - len(todo)},
    }
    write_json(out / "metrics.json", metrics)
    print(summary_line(metrics) + f" -> {out / 'metrics.json'}")
    return metrics


def summary_line(m: dict) -> str:
    """One line for the terminal: accuracy with CI, length, thinking and truncation."""
    ci = m.get("accuracy_ci")
    ci_s = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    tps = (m.get("timing") or {}).get("tokens_per_s")
    speed = f" | {tps:.0f} tok/s" if tps else ""
    shares = m.get("style_share")
    style = f" | long style {shares.get('long', 0.0):.0%}" if shares else ""
    return (f"eval {m.get('name', '?')}: accuracy {m['accuracy']:.3f}{ci_s} | mean tokens {m['mean_tokens']:.1f}"
            f" | thinking {m['thinking_ratio']:.0%}{style} | truncated {m['truncated']:.0%}"
            f" | {m['n_problems']} problems x {m['samples_per_problem']}{speed}")
