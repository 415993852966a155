"""AdaR1's report: the paper's table (accuracy, tokens, ΔA, ΔL, AES vs Long, thinking ratio) for Long,
Short, Merge, DPO-shortest, Merge+SFT, Merge+group-level and AdaR1, the Long-style share per
difficulty level (the paper's Figure 4) and accuracy vs mean tokens.

    from hybridcot.evaluation.adar1_report import write_adar1_report
    write_adar1_report({"long": long_metrics, "adar1": adar1_metrics, ...}, "runs/demo/adar1/report")

`hybridcot adar1` calls it at the end of the chain. Inputs are eval metrics dicts (metrics.json)
or demo summary rows (`summary_entry`, which carry `long_style_share` per level). Writes
`report.md`, `report.json`, `long_style_share.png` and `accuracy_vs_tokens.png`; when report.json
already holds the same rows nothing is rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from hybridcot.evaluation.report import _print, add_deltas, markdown_table, summary_entry
from hybridcot.io import atomic_write, read_json, write_json

ORDER = ("long", "short", "merge", "dpo_shortest", "merge_sft", "group_only", "adar1", "adar1_onpolicy")
LABELS = {"long": "Long", "short": "Short", "merge": "Merge", "dpo_shortest": "DPO-shortest",
          "merge_sft": "Merge+SFT", "group_only": "Merge+group-level", "adar1": "AdaR1 (bi-level)",
          "adar1_onpolicy": "AdaR1 + on-policy rounds"}
FILES = ("report.md", "report.json", "long_style_share.png", "accuracy_vs_tokens.png")


def report_rows(systems: Mapping[str, dict]) -> list[dict]:
    """One row per system (known systems in the paper's order first) from metrics or summary rows."""
    rows = []
    names = [n for n in ORDER if n in systems] + [n for n in systems if n not in ORDER]
    for name in names:
        m = systems[name]
        row = summary_entry(m, name) if "per_level" in m and "n_problems" in m else dict(m, name=name)
        share = (m.get("style_share") or {})
        row["long_style"] = share.get("long", 0.0) if share else None
        row.setdefault("long_style_share", {})
        rows.append(json.loads(json.dumps(row)))
    return rows


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x:+.1%}" if signed else f"{x:.0%}"


def adar1_table(rows: list[dict], base: str) -> tuple[list[str], list[list[str]]]:
    """The paper's table: accuracy, length, ΔA, ΔL, AES against `base`, thinking ratio, Long style."""
    head = ["system", "accuracy [95% CI]", "mean tokens", "ΔA", "ΔL", "AES", "thinking", "Long style"]
    body = []
    for r in rows:
        ci = r.get("accuracy_ci")
        acc = f"{r['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        label = LABELS.get(r["name"], r["name"]) + (" (base)" if r["name"] == base else "")
        a = r.get("aes")
        body.append([label, acc, f"{r['mean_tokens']:.1f}", _pct(r.get("delta_accuracy")),
                     _pct(r.get("delta_length")), "—" if a is None else f"{a:+.3f}",
                     _pct(r.get("thinking_ratio"), False), _pct(r.get("long_style"), False)])
    return head, body


def style_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Long-style share of each system's answers per difficulty level (the paper's Figure 4 as numbers)."""
    levels = sorted({int(k) for r in rows for k in r.get("long_style_share") or {}})
    head = ["system", *[f"L{lv}" for lv in levels]]
    body = [[LABELS.get(r["name"], r["name"]),
             *[_pct((r.get("long_style_share") or {}).get(str(lv)), False) for lv in levels]] for r in rows]
    return head, body


def plot_long_style_share(rows: list[dict], path: str | os.PathLike) -> Path:
    """One line per system: share of Long-style answers against difficulty level (the paper's Figure 4)."""
    from hybridcot.evaluation.plots import plot_per_level

    series = [{"name": LABELS.get(r["name"], r["name"]),
               "per_level": {lv: {"Long-style share": s} for lv, s in (r.get("long_style_share") or {}).items()}}
              for r in rows]
    return plot_per_level(series, "Long-style share", path)


def write_adar1_report(systems: Mapping[str, dict], output: str | os.PathLike, base: str = "long") -> dict:
    """Table + plots into `output` (skipped when report.json already holds these rows).

    Returns {"status": "ran" | "skipped", "rows", "markdown", "files"}.
    """
    from hybridcot.evaluation.plots import plot_accuracy_vs_tokens

    out = Path(output)
    rows = report_rows(systems)
    if base and any(r["name"] == base for r in rows):
        add_deltas(rows, base)
    else:
        base = ""
    rows = json.loads(json.dumps(rows))
    head, body = adar1_table(rows, base)
    shead, sbody = style_table(rows)
    title = f"AdaR1: {len(rows)} systems" + (f", ΔA / ΔL / AES against {LABELS.get(base, base)}" if base else "")
    md = (f"# {title}\n\nΔA = (A − A_base)/A_base; ΔL = (L_base − L)/L_base (a reduction is positive); "
          "AES = ΔL + 3·ΔA if ΔA ≥ 0 else ΔL + 5·ΔA. Length = mean generated tokens; thinking = share of "
          "responses with reflection keywords; Long style = share of answers written in the Long style.\n\n"
          + markdown_table(head, body)
          + "\n## Long-style share per difficulty level (paper's Figure 4)\n\n" + markdown_table(shead, sbody)
          + "\n![long_style_share](long_style_share.png)\n![accuracy_vs_tokens](accuracy_vs_tokens.png)\n")
    files = [str(out / f) for f in FILES]
    if all(Path(f).is_file() for f in files) and read_json(out / "report.json").get("rows") == rows:
        return {"status": "skipped", "rows": rows, "markdown": md, "files": files}
    plot_rows = [dict(r, name=LABELS.get(r["name"], r["name"])) for r in rows]
    plot_long_style_share(rows, out / "long_style_share.png")
    plot_accuracy_vs_tokens(plot_rows, out / "accuracy_vs_tokens.png")
    with atomic_write(out / "report.md") as f:
        f.write(md)
    write_json(out / "report.json", {"base": base, "rows": rows})
    _print(head, body, title)
    _print(shead, sbody, "Long-style share per level")
    print(f"report: wrote {', '.join(files)}")
    return {"status": "ran", "rows": rows, "markdown": md, "files": files}
