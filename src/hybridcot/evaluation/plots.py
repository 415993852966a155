"""Report plots (matplotlib, Agg canvas: no display needed, no global backend switched).

Rows are the report's system rows: {"name", "accuracy", "accuracy_ci" ([lo, hi] or None),
"mean_tokens", "per_level": {"1": {"accuracy", "mean_tokens", ...}, ...}}.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hybridcot.io import atomic_write


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt)
    return path


def _clip_share_axis(ax) -> None:
    """Accuracies live in [0, 1]: never let autoscaling show impossible values."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, -0.02), min(hi, 1.02))


def plot_accuracy_vs_tokens(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Scatter of accuracy (with its 95% CI as an error bar) against mean generated tokens."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(rows):
        x, y = float(r["mean_tokens"]), float(r["accuracy"])
        ci = r.get("accuracy_ci")
        yerr = [[max(0.0, y - ci[0])], [max(0.0, ci[1] - y)]] if ci else None
        color = f"C{i % 10}"
        ax.errorbar([x], [y], yerr=yerr, fmt="o", color=color, capsize=3, label=r["name"])
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8, color=color)
    ax.set_xlabel("mean generated tokens")
    ax.set_ylabel("accuracy (pass@1)")
    _clip_share_axis(ax)
    ax.set_title("accuracy vs length")
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def dodge_offsets(n: int, width: float = 0.3) -> list[float]:
    """x offsets that spread `n` systems' points over `width` around each level, centred, so systems
    with the same values (a style share of 0 or 1, say) sit side by side instead of hiding each other."""
    if n <= 1:
        return [0.0] * n
    step = width / (n - 1)
    return [(i - (n - 1) / 2) * step for i in range(n)]


def plot_per_level(rows: Sequence[dict], key: str, path: str | os.PathLike) -> Path:
    """One line per system: `key` ("accuracy", "mean_tokens", ...) against difficulty level. Each
    system's points are shifted a little along x (`dodge_offsets`) and get their own marker, so
    systems with equal values stay visible; the ticks stay on the levels."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    levels = sorted({int(lv) for r in rows for lv in (r.get("per_level") or {})})
    offsets = dodge_offsets(len(rows))
    for i, r in enumerate(rows):
        per = r.get("per_level") or {}
        xs = [lv for lv in levels if str(lv) in per and per[str(lv)].get(key) is not None]
        if not xs:
            continue
        ax.plot([lv + offsets[i] for lv in xs], [float(per[str(lv)][key]) for lv in xs], marker=MARKERS[i % len(MARKERS)],
                color=f"C{i % 10}", label=r["name"])
    ax.set_xlabel("difficulty level")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(f"{key.replace('_', ' ')} by level")
    if key in ("accuracy", "thinking_ratio"):
        _clip_share_axis(ax)
    if levels:
        ax.set_xticks(levels)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
