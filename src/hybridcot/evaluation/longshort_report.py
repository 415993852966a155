"""Long⊗Short's report (METHODS.md, Long⊗Short step 7): Long alone, Short alone, the SFT pair and the
RL pair, with accuracy, total tokens, tokens by the long thinker, the short thinker's token share,
turns, and ΔA, ΔL, AES against Long; plus a transcript view of a few dialogues per pair.

    from hybridcot.evaluation.longshort_report import write_longshort_report
    write_longshort_report({"long": m_long, "short": m_short, "longshort_sft": m_sft}, "runs/ls/report",
                           dialogues={"longshort_sft": "runs/ls/eval/longshort_sft/dialogues.jsonl"})

`hybridcot longshort` calls it at the end of the chain. Inputs are metrics dicts (an eval's or
collaborate's metrics.json) or summary rows (`summary_entry`). A system without per-thinker numbers
is a single model: "short" counts as the short thinker alone, any other as the long thinker alone,
in one turn. Writes `report.md`, `report.json`, `tokens_by_thinker.png`, `accuracy_vs_tokens.png`
and, given dialogues, `transcripts.md`; when report.json already holds the same rows (and the same
picked dialogues) nothing is rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from hybridcot.evaluation.report import _print, add_deltas, markdown_table, summary_entry
from hybridcot.io import HybridcotError, atomic_write, read_json, read_jsonl, write_json

ORDER = ("long", "short", "longshort_sft", "longshort_rl")
LABELS = {"long": "Long", "short": "Short", "longshort_sft": "Long⊗Short (SFT)", "longshort_rl": "Long⊗Short (RL)"}
SHORT_ALONE = ("short",)  # single-model systems whose tokens are all the short thinker's
FILES = ("report.md", "report.json", "tokens_by_thinker.png", "accuracy_vs_tokens.png")
EXTRA = ("finished_share", "well_formed_share")  # collaborate fields kept in report.json (not in the table)


def _label(name: str) -> str:
    return LABELS.get(name, name)


def report_rows(systems: Mapping[str, dict]) -> list[dict]:
    """One row per system (known systems in the order Long, Short, SFT pair, RL pair first), each with
    mean_long_tokens, mean_short_tokens, short_thinker_token_share, mean_turns and `collaborative`."""
    rows = []
    names = [n for n in ORDER if n in systems] + [n for n in systems if n not in ORDER]
    for name in names:
        m = systems[name]
        row = summary_entry(m, name) if "per_level" in m and "n_problems" in m else dict(m, name=name)
        total = float(row["mean_tokens"])
        row["collaborative"] = m.get("mean_long_tokens") is not None
        if row["collaborative"]:
            long_tok = float(m["mean_long_tokens"])
            short_tok = float(m["mean_short_tokens"]) if m.get("mean_short_tokens") is not None else total - long_tok
            share = m.get("short_thinker_token_share")
            row["short_thinker_token_share"] = float(share) if share is not None else (
                short_tok / (long_tok + short_tok) if long_tok + short_tok else 0.0)
            row["mean_turns"] = float(m["mean_turns"]) if m.get("mean_turns") is not None else None
            row.update({k: float(m[k]) for k in EXTRA if m.get(k) is not None})
        else:  # one model alone, one turn
            alone_short = name in SHORT_ALONE
            long_tok, short_tok = (0.0, total) if alone_short else (total, 0.0)
            row["short_thinker_token_share"] = 1.0 if alone_short and total else 0.0
            row["mean_turns"] = 1.0
        row["mean_long_tokens"], row["mean_short_tokens"] = long_tok, short_tok
        rows.append(json.loads(json.dumps(row)))
    return rows


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def longshort_table(rows: list[dict], base: str) -> tuple[list[str], list[list[str]]]:
    """The table: accuracy, total tokens, long-thinker tokens, short share, turns, ΔA, ΔL, AES vs `base`."""
    head = ["system", "accuracy [95% CI]", "mean tokens", "long-thinker tokens", "short-thinker share",
            "turns", "ΔA", "ΔL", "AES"]
    body = []
    for r in rows:
        ci = r.get("accuracy_ci")
        acc = f"{r['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        a, turns = r.get("aes"), r.get("mean_turns")
        body.append([_label(r["name"]) + (" (base)" if base and r["name"] == base else ""), acc,
                     f"{r['mean_tokens']:.1f}", f"{r['mean_long_tokens']:.1f}",
                     _pct(r["short_thinker_token_share"], False), "—" if turns is None else f"{turns:.2f}",
                     _pct(r.get("delta_accuracy")), _pct(r.get("delta_length")), "—" if a is None else f"{a:+.3f}"])
    return head, body


def plot_tokens_by_thinker(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Stacked bars per system: mean tokens by the long thinker (below) and the short thinker (above)."""
    from hybridcot.evaluation.plots import _figure, _save

    fig = _figure(max(6.4, 1.4 * len(rows) + 2.0))
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(rows)))
    long_tok = [float(r["mean_long_tokens"]) for r in rows]
    short_tok = [float(r["mean_short_tokens"]) for r in rows]
    ax.bar(xs, long_tok, color="C0", label="long thinker")
    ax.bar(xs, short_tok, bottom=long_tok, color="C1", label="short thinker")
    for x, lt, st, r in zip(xs, long_tok, short_tok, rows):
        ax.annotate(f"{lt + st:.1f} ({r['short_thinker_token_share']:.0%} short)", (x, lt + st),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(xs)
    ax.set_xticklabels([_label(r["name"]) for r in rows], fontsize=8)
    ax.set_ylabel("mean generated tokens per problem")
    ax.set_title("tokens by thinker")
    ax.set_ylim(0, 1.15 * max([lt + st for lt, st in zip(long_tok, short_tok)] + [0.0]) or 1.0)
    ax.grid(True, axis="y", alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _level_key(level) -> tuple:
    try:
        return (level is None, float(level), "")
    except (TypeError, ValueError):
        return (level is None, 0.0, str(level))


def pick_transcripts(records: Sequence[dict], n: int) -> list[dict]:
    """Up to `n` dialogues spread over difficulty levels, deterministically: the first sample of each
    problem; levels evenly spaced from easiest to hardest (all of them when n allows), taken in turn,
    problems in file order within a level."""
    firsts = [r for r in records if int(r.get("sample") or 0) == 0] or list(records)
    by_level: dict = {}
    for r in firsts:
        by_level.setdefault(r.get("level"), []).append(r)
    levels = sorted(by_level, key=_level_key)
    if 0 < n < len(levels):
        levels = [levels[round(i * (len(levels) - 1) / max(n - 1, 1))] for i in range(n)]
    picked: list[dict] = []
    depth = 0
    while len(picked) < n and any(depth < len(by_level[lv]) for lv in levels):
        picked += [by_level[lv][depth] for lv in levels if depth < len(by_level[lv])][:n - len(picked)]
        depth += 1
    return picked


def _transcript_block(i: int, r: dict) -> str:
    from hybridcot.longshort.collaborate import transcript

    verdict = "correct ✓" if r.get("correct") else "wrong ✗"
    head = (f"### {i}. Problem {r.get('id')} (level {r.get('level')}): {verdict}, gold answer "
            f"`{r.get('gold')}`, answered `{r.get('extracted')}`")
    first, _, rest = transcript(r, markdown=True).partition("\n")
    return f"{head}\n\n{first.removeprefix('### ')}\n{rest}"


def transcripts_markdown(dialogues: Mapping[str, str | os.PathLike], n: int) -> tuple[str, dict]:
    """transcripts.md's text and, per system, the dialogues it shows ({"dialogues", "picked": [[id, sample]]})."""
    parts = ["# Long⊗Short transcripts\n\nA few dialogues per pair, spread over difficulty levels (the first "
             "sample of each problem, easiest level first). Each turn is marked with its thinker, its tokens "
             "(counted by the model that wrote it), and whether it was final, malformed or hit its cap.\n"]
    shown: dict = {}
    names = [k for k in ORDER if k in dialogues] + [k for k in dialogues if k not in ORDER]
    for name in names:
        path = Path(dialogues[name])
        if not path.is_file():
            parts.append(f"## {_label(name)}\n\nNo dialogues: `{path}` is missing.\n")
            shown[name] = {"dialogues": str(path), "picked": None}
            continue
        records = read_jsonl(path, allow_torn_tail=True)
        picked = pick_transcripts(records, n)
        shown[name] = {"dialogues": str(path), "picked": [[r.get("id"), r.get("sample", 0)] for r in picked]}
        parts.append(f"## {_label(name)}: {len(picked)} of {len(records)} dialogues\n\nFrom `{path}`.\n")
        parts += [_transcript_block(i, r) for i, r in enumerate(picked, 1)]
    return "\n".join(parts), shown


def write_longshort_report(systems: Mapping[str, dict], out_dir: str | os.PathLike, base: str = "long",
                           dialogues: Mapping[str, str | os.PathLike] | None = None,
                           n_transcripts: int = 4) -> dict:
    """Table, plots and transcripts into `out_dir` (skipped when report.json already holds these rows
    and the same picked dialogues).

    Returns {"status": "ran" | "skipped", "rows", "markdown", "files", "transcripts"}.
    """
    from hybridcot.evaluation.plots import plot_accuracy_vs_tokens

    if n_transcripts < 0:
        raise ValueError(f"n_transcripts must be >= 0, got {n_transcripts}")
    out = Path(out_dir)
    rows = report_rows(systems)
    if base and any(r["name"] == base for r in rows):
        add_deltas(rows, base)
    else:
        base = ""
    rows = json.loads(json.dumps(rows))
    head, body = longshort_table(rows, base)
    title = f"Long⊗Short: {len(rows)} systems" + (f", ΔA / ΔL / AES against {_label(base)}" if base else "")
    tmd, shown = transcripts_markdown(dialogues, n_transcripts) if dialogues else ("", {})
    md = (f"# {title}\n\nΔA = (A − A_base)/A_base; ΔL = (L_base − L)/L_base (a reduction is positive); "
          "AES = ΔL + 3·ΔA if ΔA ≥ 0 else ΔL + 5·ΔA. Tokens = mean generated tokens per problem, both "
          "thinkers together (each counted with its own tokenizer); long-thinker tokens = those the long "
          "thinker wrote; short-thinker share = the short thinker's share of all tokens; turns = mean "
          "turns per dialogue (1 for a model alone).\n\n" + markdown_table(head, body)
          + "\n![tokens_by_thinker](tokens_by_thinker.png)\n![accuracy_vs_tokens](accuracy_vs_tokens.png)\n"
          + ("\nTranscripts of a few dialogues: [transcripts.md](transcripts.md)\n" if tmd else ""))
    payload = json.loads(json.dumps({"base": base, "rows": rows, "transcripts": shown}))
    files = [str(out / f) for f in FILES + (("transcripts.md",) if tmd else ())]
    result = {"rows": rows, "markdown": md, "files": files, "transcripts": shown}
    if all(Path(f).is_file() for f in files):
        try:
            if read_json(out / "report.json") == payload:
                return {"status": "skipped", **result}
        except HybridcotError:
            pass  # unreadable: write it again
    plot_tokens_by_thinker(rows, out / "tokens_by_thinker.png")
    plot_accuracy_vs_tokens([dict(r, name=_label(r["name"])) for r in rows], out / "accuracy_vs_tokens.png")
    if tmd:
        with atomic_write(out / "transcripts.md") as f:
            f.write(tmd)
    with atomic_write(out / "report.md") as f:
        f.write(md)
    write_json(out / "report.json", payload)
    _print(head, body, title)
    print(f"longshort report: wrote {', '.join(files)}")
    return {"status": "ran", **result}
