"""Evaluation: metrics (accuracy with CIs, length, ΔA, ΔL, AES, thinking ratio), the `eval` stage,
and the `report` stage (tables and plots across systems)."""

from hybridcot.evaluation.metrics import (
    aes,
    bootstrap_ci,
    mean_ci_over_seeds,
    per_problem_accuracy,
    relative,
    summarize,
)
from hybridcot.evaluation.report import ReportConfig, run_report, summary_entry, update_summary
from hybridcot.evaluation.stage import EvalConfig, generate_records, run_eval, score_samples

__all__ = [
    "EvalConfig",
    "ReportConfig",
    "aes",
    "bootstrap_ci",
    "generate_records",
    "mean_ci_over_seeds",
    "per_problem_accuracy",
    "relative",
    "run_eval",
    "run_report",
    "score_samples",
    "summarize",
    "summary_entry",
    "update_summary",
]
