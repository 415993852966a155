"""The one-screen summary every CLI stage ends with: what ran, how long, what it wrote, its headline numbers.

Printed with `rich` to stderr (stdout stays for what a stage prints as data). The figures come
from the stage's return value when it is a dict (its scalar entries, then the scalar entries of
nested dicts such as `summary`), the files from the config's `output`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MAX_ROWS = 14  # one screen: the table plus its title and the output listing
MAX_FILES = 8


def _scalars(result: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if not isinstance(result, dict) or depth > 1:
        return []
    rows: list[tuple[str, Any]] = []
    nested = []
    for k, v in result.items():
        if isinstance(v, bool) or isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 60):
            rows.append((f"{prefix}{k}", v))
        elif isinstance(v, dict):
            nested.append((k, v))
    for k, v in nested:
        rows += _scalars(v, f"{prefix}{k}.", depth + 1)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def output_files(output: str | os.PathLike | None) -> list[tuple[str, int]]:
    """(name, bytes) of what a stage wrote: the files of its output folder (top level, plus the
    total of each sub-folder), or the output file itself."""
    if not output:
        return []
    p = Path(output)
    if p.is_file():
        return [(p.name, p.stat().st_size)]
    if not p.is_dir():
        return []
    out = []
    for c in sorted(p.iterdir()):
        if c.name.startswith("."):
            continue
        if c.is_dir():
            out.append((c.name + "/", sum(f.stat().st_size for f in c.rglob("*") if f.is_file())))
        else:
            out.append((c.name, c.stat().st_size))
    return out


def stage_summary(stage: str, cfg: Any, result: Any, seconds: float, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    output = getattr(cfg, "output", None)
    if isinstance(result, (str, os.PathLike)) and not output:
        output = result
    table = Table(title=f"hybridcot {stage}: done in {seconds:.1f} s", title_justify="left", show_header=False,
                  min_width=min(console.width, 72))
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = _scalars(result)
    for k, v in rows[:MAX_ROWS]:
        table.add_row(k, _fmt(v))
    if len(rows) > MAX_ROWS:
        table.add_row("…", f"{len(rows) - MAX_ROWS} more in the output's JSON")
    files = output_files(output)
    if output:
        table.add_row("output", str(output))
    for name, size in files[:MAX_FILES]:
        table.add_row("", f"{name}  ({_size(size)})")
    if len(files) > MAX_FILES:
        table.add_row("", f"… {len(files) - MAX_FILES} more")
    console.print(table)
