"""Evaluation metrics: accuracy (pass@1) with a bootstrap CI, length, ΔA, ΔL, AES, thinking ratio.

Everything here is a pure function of per-sample records (dicts, one per generated response):

    {"id", "level", "sample", "text", "n_tokens", "n_chars", "extracted", "correct",
     "finish_reason", "thinking", ...extra keys such as "style"}

Accuracy is pass@1 averaged over a problem's samples, then over problems (METHODS.md), so a problem
with n = 12 samples weighs as much as one with n = 1. Its confidence interval is a percentile
bootstrap over problems with a fixed seed, so the same records always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from hybridcot.io import HybridcotError

# Two-sided 97.5% quantiles of Student's t for small degrees of freedom (df -> t); used when
# scipy is missing. Beyond 30 the normal quantile is within 2% of t.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (resampling the values with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values")
    if not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci: alpha must be in (0, 1), got {alpha}")
    if n_boot < 1 or x.size == 1:
        m = float(x.mean())
        return m, m
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunked so that 1000 resamples of a 100k-problem set do not need 800 MB at once.
    step = max(1, 2_000_000 // x.size)
    for start in range(0, n_boot, step):
        k = min(step, n_boot - start)
        idx = rng.integers(0, x.size, size=(k, x.size))
        means[start:start + k] = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _t_quantile(df: int, alpha: float) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(1 - alpha / 2, df))
    except ImportError:  # pragma: no cover - scipy ships with the pinned environment
        if abs(alpha - 0.05) > 1e-12:
            raise ValueError("mean_ci_over_seeds: alpha other than 0.05 needs scipy") from None
        keys = [k for k in _T975 if k <= df]
        return _T975[max(keys)] if df <= 30 else 1.96


def mean_ci_over_seeds(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval of the mean of per-seed results (repeated runs)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci_over_seeds: no values")
    m = float(x.mean())
    if x.size == 1:
        return m, m, m
    half = _t_quantile(x.size - 1, alpha) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def relative(A: float, L: float, A_base: float, L_base: float) -> tuple[float | None, float | None]:
    """(ΔA, ΔL) against base B: ΔA = (A − A_B)/A_B, ΔL = (L_B − L)/L_B (a reduction is positive).

    A zero base is guarded: no change from zero is 0.0; any change from zero is undefined (None).
    """
    def rel(num: float, den: float) -> float | None:
        if den == 0:
            return 0.0 if num == 0 else None
        return num / den

    return rel(A - A_base, A_base), rel(L_base - L, L_base)


def aes(dA: float | None, dL: float | None, eta: float = 1.0, up: float = 3.0,
        down: float = 5.0) -> float | None:
    """Accuracy–efficiency score: η·ΔL + 3·ΔA when ΔA ≥ 0, η·ΔL + 5·ΔA otherwise (None if undefined)."""
    if dA is None or dL is None:
        return None
    return eta * dL + (up if dA >= 0 else down) * dA


def _group(records: Iterable[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for i, r in enumerate(records):
        if "id" not in r or "correct" not in r:
            raise HybridcotError(f"record {i}: needs 'id' and 'correct' fields, has {sorted(r)}")
        groups.setdefault(str(r["id"]), []).append(r)
    return groups


def per_problem_accuracy(records: Iterable[dict]) -> dict[str, float]:
    """Problem id -> share of its samples that are correct (in first-seen order)."""
    return {pid: sum(bool(r["correct"]) for r in rs) / len(rs) for pid, rs in _group(records).items()}


def style_oracle(long_records: Sequence[dict], short_records: Sequence[dict], max_drop: float = 0.02) -> dict:
    """How short a system that picks, per problem, between two models' answers could be: the bound
    under AdaR1's hybrid (which can at best pick between the Long and the Short model's styles).

    Per problem (accuracy and tokens averaged over its samples): `per_problem` takes Short's answers
    where they are at least as accurate as Long's, else Long's (an ideal router); `per_level` is the
    shortest choice of one style per level (levels from the records' `level`) whose accuracy stays
    within `max_drop` of Long's (None when no level is known). Each gives accuracy, mean_tokens,
    tokens_ratio_vs_long and accuracy_delta_vs_long (points); only problems both runs answered count."""
    lg, sg = _group(long_records), _group(short_records)
    ids = [i for i in lg if i in sg]
    if not ids:
        raise HybridcotError("style_oracle: the two runs share no problem id")

    def stats(rs: list[dict]) -> tuple[float, float]:
        return (sum(bool(r["correct"]) for r in rs) / len(rs), _mean([float(r.get("n_tokens", 0)) for r in rs]))

    L = {i: stats(lg[i]) for i in ids}
    S = {i: stats(sg[i]) for i in ids}
    base_acc, base_tok = _mean([L[i][0] for i in ids]), _mean([L[i][1] for i in ids])

    def row(pick: dict[str, tuple[float, float]]) -> dict:
        acc, tok = _mean([pick[i][0] for i in ids]), _mean([pick[i][1] for i in ids])
        return {"accuracy": acc, "mean_tokens": tok, "tokens_ratio_vs_long": tok / base_tok if base_tok else None,
                "accuracy_delta_vs_long": 100.0 * (acc - base_acc)}

    out = {"n": len(ids), "per_problem": row({i: S[i] if S[i][0] >= L[i][0] else L[i] for i in ids}),
           "per_level": None}
    levels = sorted({lg[i][0].get("level") for i in ids} - {None})
    if levels and all(lg[i][0].get("level") is not None for i in ids):
        best = None
        for mask in range(2 ** len(levels)):  # 1 bit per level: Short's style there
            short_lv = [lv for k, lv in enumerate(levels) if mask >> k & 1]
            r = row({i: S[i] if lg[i][0]["level"] in short_lv else L[i] for i in ids})
            if r["accuracy_delta_vs_long"] >= -100.0 * max_drop - 1e-9 and (best is None or r["mean_tokens"] < best["mean_tokens"]):
                best = {**r, "short_levels": short_lv}
        out["per_level"] = best
    return out


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


def _block(groups: dict[str, list[dict]]) -> dict:
    """Accuracy, length and thinking numbers for one set of problems."""
    samples = [r for rs in groups.values() for r in rs]
    acc = [sum(bool(r["correct"]) for r in rs) / len(rs) for rs in groups.values()]
    out = {
        "accuracy": _mean(acc),
        "mean_tokens": _mean([float(r.get("n_tokens", 0)) for r in samples]),
        "n": len(groups),
        "n_samples": len(samples),
        "thinking_ratio": _mean([float(bool(r.get("thinking", False))) for r in samples]),
    }
    styles = [r["style"] for r in samples if r.get("style") is not None]
    if styles:  # e.g. AdaR1's Long-style share per level
        out["style_share"] = {s: styles.count(s) / len(styles) for s in sorted(set(map(str, styles)))}
    return out


def summarize(records: Sequence[dict], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Summary of a run's per-sample records (see module docstring for the record shape).

    Keys: accuracy, accuracy_ci [lo, hi] (None when n_boot is 0), mean_tokens, mean_chars, thinking_ratio, truncated,
    n_problems, n_samples, samples_per_problem, per_level {"1": {accuracy, mean_tokens, n,
    n_samples, thinking_ratio}, ...}. `n` in per_level counts problems.
    """
    groups = _group(records)
    if not groups:
        raise HybridcotError("summarize: no records")
    samples = [r for rs in groups.values() for r in rs]
    acc = [sum(bool(r["correct"]) for r in rs) / len(rs) for rs in groups.values()]
    ci = list(bootstrap_ci(acc, n_boot=n_boot, seed=seed)) if n_boot > 0 else None
    total = _block(groups)
    counts = sorted({len(rs) for rs in groups.values()})
    summary = {
        "accuracy": total["accuracy"],
        "accuracy_ci": ci,
        "mean_tokens": total["mean_tokens"],
        "mean_chars": _mean([float(r.get("n_chars", len(r.get("text", "") or ""))) for r in samples]),
        "thinking_ratio": total["thinking_ratio"],
        "truncated": _mean([float(r.get("finish_reason") == "length") for r in samples]),
        "n_problems": len(groups),
        "n_samples": len(samples),
        "samples_per_problem": counts[0] if len(counts) == 1 else counts,
    }
    if "style_share" in total:
        summary["style_share"] = total["style_share"]
    by_level: dict[int, dict[str, list[dict]]] = {}
    for pid, rs in groups.items():
        level = rs[0].get("level")
        if level is not None:
            by_level.setdefault(int(level), {})[pid] = rs
    summary["per_level"] = {str(lv): _block(by_level[lv]) for lv in sorted(by_level)}
    return summary
