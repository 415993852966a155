"""`hybridcot sample`: AdaR1 step 2, K graded responses per problem from one model.

    hybridcot sample model=runs/demo/world/long problems=world:train:2000:seed=1 output=runs/demo/sample/long
    hybridcot sample model=runs/demo/world/short problems=world:train:2000:seed=1 output=runs/demo/sample/short

A thin front of `hybridcot eval` with the paper's sampling (K = 12, temperature 0.6, top-p 0.95):
the same generation backends, grader and resumable per-sample JSONL, so `samples.jsonl` is exactly
what `hybridcot pairs` reads. Each record holds id, level, sample, text, n_tokens, n_chars,
extracted, gold, correct, reason, finish_reason, thinking, style ("long" | "short", see
`adar1.style`) and model. Outputs in `output/`: `samples.jsonl`, `metrics.json` (accuracy = mean
p over problems, lengths, Long-style share per level), `config.yaml` (the eval settings that
resuming checks) and `sample_config.yaml` (this stage's config). A killed run resumes by problem id.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridcot.config import field, save_config
from hybridcot.evaluation.stage import BACKENDS, EvalConfig, run_eval
from hybridcot.shards import SHARD_HELP, shard_folder


@dataclass
class SampleConfig:
    """Sample K responses per problem from one model and grade them (AdaR1's sampling step)."""

    model: str = field("", help="model checkpoint folder (the Long or the Short model)")
    problems: str = field("", help="problem set spec for load_problems (the training problems), "
                                   "e.g. world:train:2000:seed=1 or a JSONL path")
    output: str = field("", help="output folder for samples.jsonl, metrics.json and the configs")
    name: str = field("", help="model name stored in every record (default: the model folder's name)")
    k: int = field(12, help="responses per problem (K; paper: 12)")
    temperature: float = field(0.6, help="sampling temperature (paper: 0.6)")
    top_p: float = field(0.95, help="nucleus sampling top-p (paper: 0.95)")
    max_tokens: int = field(1024, help="maximum generated tokens per response (recipes for real models raise it)")
    backend: str = field("auto", help="generation backend: auto (vLLM where installed) | hf | vllm | http")
    urls: str = field("", help="backend=http: server base URLs, comma-separated (default $HYBRIDCOT_HTTP_URLS)")
    dtype: str = field("float32", help="model dtype for generation (float32 | bfloat16 | float16 | auto)")
    seed: int = field(0, help="sampling seed (each response is seeded from it, its prompt and its index)")
    limit: int | None = field(None, help="sample only the first `limit` problems")
    shard: str | None = field(None, help=SHARD_HELP)
    batch_size: int = field(32, help="problems per generate call (each brings k responses)")
    grade_timeout: float = field(5.0, help="seconds per grader call; a timeout counts as wrong")
    fallback_last_number: bool = field(False, help="grade the last number when a response has no \\boxed{}")

    def __post_init__(self) -> None:
        for key in ("model", "problems", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        # temperature, top_p, max_tokens, limit, batch_size, grade_timeout: checked by EvalConfig
        self.eval_config()

    def eval_config(self) -> EvalConfig:
        """The equivalent `hybridcot eval` config (n = k; no bootstrap: these samples are training data)."""
        return EvalConfig(model=self.model, problems=self.problems, output=self.output, name=self.name,
                          backend=self.backend, dtype=self.dtype, n=self.k, temperature=self.temperature,
                          top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed, limit=self.limit,
                          batch_size=self.batch_size, grade_timeout=self.grade_timeout,
                          fallback_last_number=self.fallback_last_number, n_boot=0, urls=self.urls,
                          shard=self.shard)


def run_sample(cfg: SampleConfig) -> dict:
    """Sample (or resume) K responses per problem; returns the metrics also written to metrics.json."""
    ecfg = cfg.eval_config()
    metrics = run_eval(ecfg)  # writes config.yaml (the eval settings) and checks a resume against it
    save_config(cfg, shard_folder(cfg.output, cfg.shard), name="sample_config.yaml")
    return metrics
