"""`hybridcot report`: several evaluated systems in one table, with ΔA, ΔL and AES against a base.

    hybridcot report runs=runs/demo/eval/long,runs/demo/eval/short base=long output=runs/demo/report

A run is an eval output folder (its metrics.json), a metrics.json file, or a summary.json holding a
list of systems (`summary_entry` rows, the demo's running summary that later stages add to with
`update_summary`). Writes report.md, report.json and plots (accuracy vs tokens, per-level accuracy
and tokens) into `output`, and prints the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import field
from hybridcot.evaluation.metrics import aes, relative
from hybridcot.io import HybridcotError, read_json, write_json


@dataclass
class ReportConfig:
    """Compare evaluated systems against a base system."""

    runs: list[str] = field([], help="eval output folders, metrics.json files, or summary.json files "
                                     "(lists of systems); comma-separated on the command line")
    base: str = field("long", help="name of the base system for ΔA, ΔL and AES ('' = no comparison)")
    output: str = field("", help="folder for report.md, report.json and plots ('' = print only)")
    plots: bool = field(True, help="draw accuracy-vs-tokens and per-level plots into `output`")
    html: str = field("", help="run folder (holding summary.json) to write a self-contained report.html "
                               "into, or a path ending in .html (its folder is the run); runs defaults "
                               "to its summary.json ('' = no page)")

    def __post_init__(self) -> None:
        if isinstance(self.runs, str):
            self.runs = [r for r in self.runs.split(",") if r]
        if not self.runs and self.html:
            self.runs = [str(html_paths(self.html)[0] / "summary.json")]
        if not self.runs:
            raise ValueError("runs is required: eval output folders or summary.json files")


def html_paths(html: str) -> tuple[Path, Path]:
    """(run folder, page path) for the `html` option: a folder -> folder/report.html; a .html path -> its folder."""
    p = Path(html)
    return (p.parent, p) if p.suffix.lower() in (".html", ".htm") else (p, p / "report.html")


def summary_entry(metrics: dict, name: str) -> dict:
    """The demo summary row for one system, from an eval's metrics dict.

    Where the metrics carry `style_share` per level (every eval since responses are classified by
    style), the row also has `long_style_share`: level ("1".."5") -> share of Long-style answers.
    Long⊗Short collaborate metrics also give the row `short_thinker_token_share`, `mean_turns` and
    `mean_long_tokens` (tokens by the long thinker); other metrics do not.
    """
    per_level = metrics.get("per_level") or {}
    entry = {
        "name": name,
        "accuracy": metrics["accuracy"],
        "accuracy_ci": list(metrics["accuracy_ci"]) if metrics.get("accuracy_ci") else None,
        "mean_tokens": metrics["mean_tokens"],
        "per_level": {str(k): {"accuracy": v["accuracy"], "mean_tokens": v["mean_tokens"]}
                      for k, v in per_level.items()},
        "thinking_ratio": metrics.get("thinking_ratio"),
    }
    if any("style_share" in v for v in per_level.values()):
        entry["long_style_share"] = {str(k): float((v.get("style_share") or {}).get("long", 0.0))
                                     for k, v in per_level.items() if "style_share" in v}
    for key in ("short_thinker_token_share", "mean_turns", "mean_long_tokens"):
        if metrics.get(key) is not None:
            entry[key] = float(metrics[key])
    return entry


def update_summary(path: str | os.PathLike, entry: dict) -> list[dict]:
    """Replace the row named `entry["name"]` in the summary.json list at `path`, or append it."""
    path = Path(path)
    if not entry.get("name"):
        raise HybridcotError(f"{path}: summary entry needs a 'name'")
    rows: list[dict] = []
    if path.exists():
        rows = read_json(path)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HybridcotError(f"{path}: expected a JSON list of systems")
    for i, r in enumerate(rows):
        if r.get("name") == entry["name"]:
            rows[i] = entry
            break
    else:
        rows.append(entry)
    write_json(path, rows)
    return rows


def _row(d: dict, where: str) -> dict:
    for k in ("name", "accuracy", "mean_tokens"):
        if d.get(k) is None:
            raise HybridcotError(f"{where}: missing field '{k}'")
    for k in ("accuracy", "mean_tokens"):
        if isinstance(d[k], bool) or not isinstance(d[k], (int, float)):
            raise HybridcotError(f"{where}: field '{k}' must be a number, got {d[k]!r}")
    row = dict(d)
    row["name"] = str(d["name"])
    row["per_level"] = {str(k): v for k, v in (d.get("per_level") or {}).items()}
    row.setdefault("accuracy_ci", None)
    row.setdefault("thinking_ratio", None)
    return row


def load_rows(runs: list[str]) -> list[dict]:
    """One row per system from eval folders, metrics.json files and summary.json lists."""
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for run in runs:
        p = Path(run)
        if p.is_dir():
            p = p / "metrics.json"
            if not p.exists():
                raise HybridcotError(f"{run}: no metrics.json (not an eval output folder)")
        data = read_json(p)
        if isinstance(data, list):
            found = [_row(d if isinstance(d, dict) else {}, f"{p}: system {i}") for i, d in enumerate(data)]
        elif isinstance(data, dict):
            data = dict(data)
            data.setdefault("name", p.parent.name)
            found = [_row(data, str(p))]
        else:
            raise HybridcotError(f"{p}: expected a metrics object or a list of systems")
        for r in found:
            if r["name"] in seen:
                raise HybridcotError(f"{p}: system '{r['name']}' already comes from {seen[r['name']]}")
            seen[r["name"]] = str(p)
            r["source"] = str(p)
            rows.append(r)
    return rows


def add_deltas(rows: list[dict], base: str) -> None:
    """Set delta_accuracy, delta_length and aes on every row, against the row named `base`."""
    if not base:
        return
    b = next((r for r in rows if r["name"] == base), None)
    if b is None:
        raise HybridcotError(f"base system '{base}' is not among {[r['name'] for r in rows]}; "
                             "set base=<name> (or base='' for no comparison)")
    for r in rows:
        dA, dL = relative(r["accuracy"], r["mean_tokens"], b["accuracy"], b["mean_tokens"])
        r["delta_accuracy"], r["delta_length"], r["aes"] = dA, dL, aes(dA, dL)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1%}"


def _levels(rows: list[dict]) -> list[str]:
    return [str(k) for k in sorted({int(k) for r in rows for k in r["per_level"]})]


def table(rows: list[dict], base: str = "") -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the report table."""
    levels = _levels(rows)
    head = ["system", "accuracy [95% CI]", "mean tokens"]
    if base:
        head += ["ΔA", "ΔL", "AES"]
    head += ["thinking"]
    for lv in levels:
        head += [f"L{lv} acc", f"L{lv} tok"]
    body = []
    for r in rows:
        ci = r.get("accuracy_ci")
        acc = f"{r['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        cells = [r["name"] + (" (base)" if base and r["name"] == base else ""), acc, f"{r['mean_tokens']:.1f}"]
        if base:
            a = r.get("aes")
            cells += [_pct(r.get("delta_accuracy")), _pct(r.get("delta_length")), "—" if a is None else f"{a:+.3f}"]
        tr = r.get("thinking_ratio")
        cells.append("—" if tr is None else f"{tr:.0%}")
        for lv in levels:
            d = r["per_level"].get(lv) or {}
            cells += [f"{d['accuracy']:.3f}" if d.get("accuracy") is not None else "—",
                      f"{d['mean_tokens']:.1f}" if d.get("mean_tokens") is not None else "—"]
        body.append(cells)
    return head, body


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _print(head: list[str], body: list[list[str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # logs and pipes: rich would squeeze the wide table to 80 columns
        print(title + "\n" + markdown_table(head, body), end="")
        return
    t = Table(title=title)
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in body:
        t.add_row(*row)
    console.print(t)


def run_report(cfg: ReportConfig) -> dict:
    """Build the table (and plots); returns {"base", "rows", "markdown", "files"}."""
    rows = load_rows(cfg.runs)
    add_deltas(rows, cfg.base)
    head, body = table(rows, cfg.base)
    title = f"{len(rows)} systems" + (f", ΔA / ΔL / AES against '{cfg.base}'" if cfg.base else "")
    legend = (" ΔA = (A − A_base)/A_base; ΔL = (L_base − L)/L_base (a reduction is positive); "
              "AES = ΔL + 3·ΔA if ΔA ≥ 0 else ΔL + 5·ΔA." if cfg.base else "")
    md = f"# Report\n\n{title}.{legend} Length = mean generated tokens.\n\n" + markdown_table(head, body)
    files: list[str] = []
    if cfg.output:
        from hybridcot.io import atomic_write

        out = Path(cfg.output)
        if cfg.plots:
            from hybridcot.evaluation.plots import plot_accuracy_vs_tokens, plot_per_level

            files.append(str(plot_accuracy_vs_tokens(rows, out / "accuracy_vs_tokens.png")))
            if _levels(rows):
                files.append(str(plot_per_level(rows, "accuracy", out / "per_level_accuracy.png")))
                files.append(str(plot_per_level(rows, "mean_tokens", out / "per_level_tokens.png")))
            md += "\n" + "".join(f"![{Path(f).stem}]({Path(f).name})\n" for f in files)
        with atomic_write(out / "report.md") as f:
            f.write(md)
        write_json(out / "report.json", {"base": cfg.base, "rows": rows})
        files += [str(out / "report.md"), str(out / "report.json")]
    if cfg.html:
        from hybridcot.evaluation.html_report import write_html_report

        run, page = html_paths(cfg.html)
        files.append(str(write_html_report(run, page, base=cfg.base)))
    _print(head, body, title)
    if files:
        print(f"report: wrote {', '.join(files)}")
    return {"base": cfg.base, "rows": rows, "markdown": md, "files": files}
