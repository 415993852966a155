"""What a stage shows on the terminal: progress bars while it runs, a one-screen summary at the end.

Progress (`progress_enabled`, `progress`): the one rule for every bar, tqdm's and TRL's alike: bars
only when stderr is a terminal and `HYBRIDCOT_QUIET` is not "1", so logs, pipes and CI output stay
clean. A stage shows one bar over its own unit of work (problem, CoT, dialogue, shard, bytes, ...)
with `total` known and resumed work as `initial`; the generators it calls inside are opened with
`progress=False`, so there is no bar per generate call under it.

Summary (`stage_summary`): what ran, how long, what it wrote, its headline numbers. Printed with
`rich` to stderr (stdout stays for what a stage prints as data). The figures come from the stage's
return value when it is a dict (its scalar entries, then the scalar entries of nested dicts such as
`summary`), the files from the config's `output`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

QUIET_ENV = "HYBRIDCOT_QUIET"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_enabled() -> bool:
    """Whether progress bars show: stderr is a terminal and $HYBRIDCOT_QUIET is not "1".

    The one rule for every bar (stage bars, the generation backends' own bars, TRL's `disable_tqdm`).
    """
    if os.environ.get(QUIET_ENV) == "1":
        return False
    return _is_terminal(sys.stderr)


# The libraries' own switches for their bars (transformers' "Loading weights", datasets' "Map", hub
# downloads), which they otherwise draw on any stderr, a log file included. Read at import time, and
# inherited by subprocesses (accelerate's workers).
LIBRARY_ENV = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


def sync_library_progress() -> bool:
    """Apply `progress_enabled()` to the bars of transformers, datasets and huggingface_hub: where it
    is false, set their environment switches (unless the user set them) and turn off the bars of those
    already imported. Where it is true they are left as they are. Returns `progress_enabled()`."""
    enabled = progress_enabled()
    if enabled:
        return True
    for key in LIBRARY_ENV:
        os.environ.setdefault(key, "1")
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1":
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    if os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS") == "1" and "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()
    return False


@contextlib.contextmanager
def library_bars_follow_rule():
    """Within the block, transformers' own bars ("Loading weights", "Writing model shards") are off
    unless `progress_enabled()`, then restored: a stage called from Python (not the CLI, which runs
    `sync_library_progress` once) loads models quietly into a log too."""
    from transformers.utils import logging as hf_logging

    turn_off = hf_logging.is_progress_bar_enabled() and not progress_enabled()
    if turn_off:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if turn_off:
            hf_logging.enable_progress_bar()


def progress(iterable: Any = None, *, total: float | None = None, initial: float = 0, desc: str | None = None,
             unit: str = "it", **kw: Any):
    """A tqdm bar on stderr (count, rate and time left) that is off unless `progress_enabled()`.

    Use it as a context manager (`with progress(total=n, initial=done, desc=..., unit="problem") as bar:
    ... bar.update(k)`) or around an iterable. A disabled bar prints nothing, not even at close.
    """
    from tqdm.auto import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    enabled = progress_enabled()
    width = {"dynamic_ncols": True} if not enabled or _columns(sys.stderr) else {"ncols": 100, "nrows": 24}
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, **width, **kw)


def _columns(stream: Any) -> int:
    """The terminal's width, 0 where it reports none (a pty nobody sized: tqdm would draw an empty line)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 80  # not a real file: let tqdm decide


def progress_write(line: str, file: Any = None) -> None:
    """Print one line (stdout by default) without tearing a progress bar that is showing."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout if file is None else file)

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
