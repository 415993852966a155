"""The `generate` stage: sample n responses per problem from a model into a resumable JSONL.

    hybridcot generate model=ckpt problems=world:test:100 output=runs/samples.jsonl n=4 temperature=0.6 top_p=0.95

One line per problem: `{"id", "model", "samples": [{"text", "n_tokens", "finish_reason"}, ...]}`.
Problems are generated `chunk` at a time and each finished problem is appended at once, so a
killed run resumes where it stopped: ids already in the output are skipped. The resolved config is
saved beside the output (`<output>.config.yaml`), and resuming with settings that change the
samples (model, problems, sampling) is refused rather than mixing two runs in one file.

`shard=i/n` keeps the problems whose stable id hash mod n is i and writes `<output>.shard-i-of-n`
(with its own `.config.yaml`); `hybridcot merge-shards output=<output>` joins the n files (see
`hybridcot.shards`). `backend=http urls=...` samples from running vLLM / SGLang servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from hybridcot.config import config_dict, field, same_setting, save_config
from hybridcot.data.world import PROMPT_SUFFIX
from hybridcot.generation.base import BACKENDS, SamplingConfig, chat_prompt, load_generator
from hybridcot.io import HybridcotError, JsonlAppender, iter_jsonl
from hybridcot.shards import in_shard, parse_shard, shard_file
from hybridcot.ui import progress

# Fields that change what is sampled: a resumed run must agree on them.
SAMPLE_KEYS = ("model", "problems", "n", "temperature", "top_p", "max_tokens", "seed", "stop", "system", "suffix",
               "dtype")


@dataclass
class GenerateConfig:
    model: str = field("", help="checkpoint folder to sample from (required)")
    problems: str = field("", help="problem file (.jsonl/.json/.parquet) or world spec, e.g. world:test:100 (required)")
    output: str = field("", help="JSONL file to append one record per problem to (required)")
    backend: str = field("auto", help="generation backend: auto (vllm if installed, else hf), hf, vllm or http")
    urls: str = field("", help="backend=http: server base URLs, comma-separated (default $HYBRIDCOT_HTTP_URLS)")
    dtype: str = field("float32", help="model dtype: float32, bfloat16, float16 or auto")
    n: int = field(1, help="samples per problem")
    temperature: float = field(0.0, help="sampling temperature; 0 = greedy")
    top_p: float = field(1.0, help="nucleus sampling mass")
    max_tokens: int = field(512, help="most generated tokens per sample")
    stop: list[str] | None = field(None, help="stop strings (the text is cut before the first one)")
    seed: int = field(0, help="sampling seed (each sample gets its own seed derived from it)")
    system: str | None = field(None, help="optional system message")
    suffix: str = field(PROMPT_SUFFIX, help="text appended to each problem in the user message")
    limit: int | None = field(None, help="only the first `limit` problems")
    shard: str | None = field(None, help="run only shard i of n (e.g. 0/4): the problems whose stable id hash mod n "
                                         "is i, written to <output>.shard-i-of-n; join them with hybridcot merge-shards")
    batch_size: int = field(64, help="sequences per forward pass (hf backend)")
    threads: int = field(0, help="CPU threads for torch (0 = leave as is; 1 is fastest on a busy small machine)")
    chunk: int = field(64, help="problems per generate call; results are appended after each chunk")

    def __post_init__(self) -> None:
        for name in ("model", "problems", "output"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        if self.backend not in ("auto", *BACKENDS):
            raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {self.backend!r}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.batch_size < 1 or self.chunk < 1:
            raise ValueError("batch_size and chunk must be >= 1")
        self.sampling()  # validates n, temperature, top_p, max_tokens, stop, seed
        parse_shard(self.shard)

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              stop=self.stop, seed=self.seed)


def config_path(output: Path) -> Path:
    return output.with_name(output.name + ".config.yaml")


def _check_resume(cfg: GenerateConfig, output: Path) -> None:
    saved = config_path(output)
    if not saved.exists():
        return
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise HybridcotError(f"{saved}: invalid YAML; delete it to resume") from None
    new = config_dict(cfg)
    for k in SAMPLE_KEYS:
        if k in old and not same_setting(old[k], new[k]):
            raise HybridcotError(f"{output}: was made with {k}={old[k]!r}, now {k}={new[k]!r}; "
                                 f"use another output or delete it")


def done_ids(output: Path) -> set[str]:
    """Problem ids already in `output` (a torn last line is ignored)."""
    if not output.exists():
        return set()
    return {str(rec.get("id")) for _, rec in iter_jsonl(output, allow_torn_tail=True)}


def run_generate(cfg: GenerateConfig) -> Path:
    """Sample `cfg.n` responses for every problem not yet in `cfg.output`; returns the output path."""
    from hybridcot.data.problems import load_problems

    output = shard_file(cfg.output, cfg.shard)
    shard = parse_shard(cfg.shard)
    problems = [p for p in load_problems(cfg.problems, limit=cfg.limit) if in_shard(p.id, shard)]
    _check_resume(cfg, output)
    done = done_ids(output)
    todo = [p for p in problems if p.id not in done]
    if not problems and shard is not None:  # an empty shard: leave its (empty) output and config for merging
        output.parent.mkdir(parents=True, exist_ok=True)
        output.touch()
        save_config(cfg, output.parent, name=config_path(output).name)
    if not todo:
        print(f"generate: all {len(problems)} problems already in {output}")
        return output
    params = cfg.sampling()
    # One bar per problem (resumed ones shown as done), none per generate call under it.
    with load_generator(cfg.model, backend=cfg.backend, dtype=cfg.dtype, batch_size=cfg.batch_size,
                        threads=cfg.threads or None, urls=cfg.urls or None, progress=False) as gen, \
            JsonlAppender(output) as out, \
            progress(total=len(problems), initial=len(problems) - len(todo), desc="generate", unit="problem") as bar:
        save_config(cfg, output.parent, name=config_path(output).name)  # once the model has loaded
        for k in range(0, len(todo), cfg.chunk):
            part = todo[k:k + cfg.chunk]
            results = gen.generate([chat_prompt(p.problem, cfg.suffix, cfg.system) for p in part], params)
            for p, samples in zip(part, results):
                out.write({"id": p.id, "model": cfg.model, "samples": [s.to_record() for s in samples]})
            bar.update(len(part))
    print(f"generate: {len(todo)} problems sampled ({len(done)} were done) -> {output}")
    return output

