"""A self-contained static HTML page for a run folder (the demo's `runs/demo`).

    hybridcot report html=runs/demo            # writes runs/demo/report.html
    from hybridcot.evaluation.html_report import write_html_report
    write_html_report("runs/demo", "runs/demo/report.html")

One file, no network: plots are base64 PNGs (matplotlib, Agg), CSS and JS are inline, the transcript
data is a JSON block. Shows the results table (accuracy with CI, tokens, ΔA, ΔL, AES against Long;
short-thinker share and turns for Long⊗Short rows), the plots (accuracy vs tokens; Long-style share
per level; tokens per thinker; RL reward curves), the config.yaml of each chain, a transcript browser
(one <select> of test problems: every system's answer, Long⊗Short turns coloured by thinker, answers
labelled by style) and the importance records (each thought with its importance score s).
Every part is optional but the summary: a run with only long/short still gets a page.
Stable ids for tests: results-table, plots (each <img class="plot">), configs, problem-select,
transcripts, importance-select, importance.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from hybridcot.evaluation.report import add_deltas, load_rows
from hybridcot.io import HybridcotError, read_json, read_jsonl

MAX_PROBLEMS = 50
MAX_IMPORTANCE = 30
MAX_TEXT = 6000  # characters kept per answer / turn / thought in the page


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _pct(x, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def _level(v) -> tuple:
    try:
        return (0, int(v), "")
    except (TypeError, ValueError):
        return (1, 0, str(v))


def spread(items: list[dict], n: int, key: str = "level") -> list[dict]:
    """At most `n` items, evenly spaced within each level (items sorted by id), levels interleaved."""
    by: dict = defaultdict(list)
    for it in sorted(items, key=lambda r: str(r.get("id"))):
        by[str(it.get(key))].append(it)
    levels = sorted(by, key=_level)
    if not levels:
        return []
    quota = -(-n // len(levels))
    picked = {lv: [by[lv][int(i * len(by[lv]) / min(quota, len(by[lv])))] for i in range(min(quota, len(by[lv])))]
              for lv in levels}
    out = [picked[lv][i] for i in range(quota) for lv in levels if i < len(picked[lv])]
    return out[:n]


# ---------------------------------------------------------------- data

def _systems(run: Path, names: list[str]) -> dict[str, Path]:
    """system name -> samples.jsonl / dialogues.jsonl; the run's own eval/ first, then each chain's."""
    found: dict[str, Path] = {}
    for d in sorted(run.glob("eval/*")) + sorted(run.glob("*/eval/*")):
        for f in ("dialogues.jsonl", "samples.jsonl"):
            if (d / f).is_file() and d.name not in found:
                found[d.name] = d / f
    order = [n for n in names if n in found] + sorted(n for n in found if n not in names)
    return {n: found[n] for n in order}


def _answer(rec: dict) -> dict:
    a = {"correct": bool(rec.get("correct")), "extracted": rec.get("extracted"), "n_tokens": rec.get("n_tokens")}
    if isinstance(rec.get("turns"), list):
        a["turns"] = [{"role": t.get("role", "?"), "text": str(t.get("text", ""))[:MAX_TEXT],
                       "n_tokens": t.get("n_tokens"), "final": bool(t.get("final"))} for t in rec["turns"]]
    else:
        text = str(rec.get("text", ""))
        style = rec.get("style")
        if style is None:
            from hybridcot.adar1.style import classify_style

            style = classify_style(text)
        a["text"], a["style"] = text[:MAX_TEXT], style
    return a


def transcript_data(run: Path, names: list[str], n: int = MAX_PROBLEMS) -> dict:
    """{"systems": [...], "problems": [{"id", "level", "problem", "gold", "answers": {system: answer}}]}."""
    files = _systems(run, names)
    recs: dict[str, dict[str, dict]] = {}
    for name, f in files.items():
        first: dict[str, dict] = {}
        for r in read_jsonl(f):
            first.setdefault(str(r.get("id")), r)
        recs[name] = first
    ids = set.intersection(*(set(v) for v in recs.values())) if recs else set()
    if not ids:
        ids = set().union(*(set(v) for v in recs.values())) if recs else set()
    meta = []
    for i in ids:
        rs = [recs[s][i] for s in recs if i in recs[s]]
        meta.append({"id": i, "level": rs[0].get("level"), "gold": rs[0].get("gold"),
                     "problem": next((r["problem"] for r in rs if r.get("problem")), "")})
    problems = [dict(m, answers={s: _answer(recs[s][m["id"]]) for s in recs if m["id"] in recs[s]})
                for m in sorted(spread(meta, n), key=lambda m: (_level(m["level"]), m["id"]))]
    return {"systems": list(recs), "problems": problems}


def importance_data(run: Path, n: int = MAX_IMPORTANCE) -> list[dict]:
    out = []
    for f in sorted(run.glob("*/importance/importance.jsonl")) + sorted(run.glob("importance/importance.jsonl")):
        for r in spread(list(read_jsonl(f)), n):
            s = r.get("s") or []
            out.append({"id": str(r.get("id")), "level": r.get("level"), "problem": r.get("problem", ""),
                        "answer": r.get("answer"),
                        "thoughts": [{"text": str(t.get("text", ""))[:MAX_TEXT], "n_tokens": t.get("n_tokens"),
                                      "s": s[i] if i < len(s) else None}
                                     for i, t in enumerate(r.get("thoughts") or [])]})
        break
    return out


def reward_logs(run: Path) -> dict[str, list[dict]]:
    logs = {}
    for f in sorted(run.glob("**/rl/round-*/train_log.json")):
        log = (read_json(f) or {}).get("log") or []
        pts = [e for e in log if isinstance(e, dict) and e.get("reward") is not None]
        if pts:
            logs[f.parent.name] = pts
    return logs


# ---------------------------------------------------------------- plots

def _png(draw, rows) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = draw(rows, Path(tmp) / "plot.png")
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _plot_rewards(logs: dict[str, list[dict]], path: Path) -> Path:
    from hybridcot.evaluation.plots import _figure, _save

    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, pts) in enumerate(logs.items()):
        xs = [e.get("step", j + 1) for j, e in enumerate(pts)]
        ax.plot(xs, [e["reward"] for e in pts], color=f"C{i % 10}", label=f"{name} reward")
        if all(e.get("rewards/correctness/mean") is not None for e in pts):
            ax.plot(xs, [e["rewards/correctness/mean"] for e in pts], color=f"C{i % 10}", ls="--",
                    alpha=0.6, label=f"{name} correctness")
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean reward")
    ax.set_title("RL reward curves")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plots(run: Path, rows: list[dict]) -> list[tuple[str, str]]:
    from hybridcot.evaluation import adar1_report, longshort_report
    from hybridcot.evaluation.plots import plot_accuracy_vs_tokens, plot_per_level

    out = [("accuracy vs tokens per system", _png(plot_accuracy_vs_tokens, rows))]
    if any(r.get("per_level") for r in rows):
        out.append(("accuracy per difficulty level", _png(lambda rs, p: plot_per_level(rs, "accuracy", p), rows)))
    styled = [r for r in rows if r.get("long_style_share")]
    if styled:
        out.append(("Long-style share per level", _png(adar1_report.plot_long_style_share, styled)))
    ls = [r for r in rows if r["name"] in ("long", "short") or r.get("short_thinker_token_share") is not None]
    if any(r.get("short_thinker_token_share") is not None for r in ls):
        ls_rows = longshort_report.report_rows({r["name"]: r for r in ls})
        out.append(("tokens per thinker (Long⊗Short)", _png(longshort_report.plot_tokens_by_thinker, ls_rows)))
    logs = reward_logs(run)
    if logs:
        out.append(("RL reward curves (per round)", _png(_plot_rewards, logs)))
    return out


# ---------------------------------------------------------------- page

def _table(rows: list[dict], base: str) -> str:
    head = ["system", "accuracy [95% CI]", "mean tokens", "ΔA", "ΔL", "AES", "short-thinker share", "turns"]
    body = []
    for r in rows:
        ci = r.get("accuracy_ci")
        acc = f"{r['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        a, sh, t = r.get("aes"), r.get("short_thinker_token_share"), r.get("mean_turns")
        cells = [r["name"] + (" (base)" if base and r["name"] == base else ""), acc, f"{r['mean_tokens']:.1f}",
                 _pct(r.get("delta_accuracy")), _pct(r.get("delta_length")), "—" if a is None else f"{a:+.3f}",
                 _pct(sh, False), "—" if t is None else f"{t:.2f}"]
        body.append(f'<tr data-system="{_esc(r["name"])}">' + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return ('<table id="results-table"><thead><tr>' + "".join(f"<th>{_esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def _configs(run: Path) -> str:
    files = sorted(run.glob("*/config.yaml")) + sorted(run.glob("eval/*/config.yaml"))
    if (run / "config.yaml").is_file():
        files.insert(0, run / "config.yaml")
    return "".join(f'<details class="config"><summary>{_esc(f.relative_to(run))}</summary>'
                   f"<pre>{_esc(f.read_text(errors='replace'))}</pre></details>" for f in files) \
        or "<p>no config.yaml found</p>"


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1300px;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}
.plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}img.plot{max-width:620px;border:1px solid #ddd}
pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;margin:2px 0;font-size:13px}
.answer{border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:8px 0}
.turn{border-left:6px solid;padding-left:6px;margin:4px 0}.long{border-color:#1f77b4;background:#eef5fb}
.short{border-color:#ff7f0e;background:#fff4ea}.tag{display:inline-block;border-radius:4px;padding:0 5px;
font-size:12px;color:#fff;margin-right:4px}.tag.long{background:#1f77b4}.tag.short{background:#ff7f0e}
.ok{color:#2a7d2a}.bad{color:#b22}.thought{display:flex;gap:8px;align-items:flex-start}
.s{min-width:64px;font-family:monospace;text-align:right;padding-top:6px}.s.pos{color:#2a7d2a}.s.neg{color:#b22}"""

JS = """const D=JSON.parse(document.getElementById('transcript-data').textContent);
function el(t,c,x){const e=document.createElement(t);if(c)e.className=c;if(x!==undefined)e.textContent=x;return e}
function tag(role,label){return el('span','tag '+role,label)}
function showProblem(i){const box=document.getElementById('transcripts');box.innerHTML='';const p=D.problems[i];
 if(!p)return;box.dataset.problem=p.id;
 box.appendChild(el('h3','',p.id+' (level '+p.level+'), gold '+JSON.stringify(p.gold)));
 if(p.problem)box.appendChild(el('p','problem',p.problem));
 for(const s of D.systems){const a=p.answers[s];if(!a)continue;const d=el('div','answer');d.dataset.system=s;
  const h=el('div','head');h.appendChild(el('b','',s+' '));
  if(a.style)h.appendChild(tag(a.style,a.style+' style'));
  h.appendChild(el('span',a.correct?'ok':'bad',(a.correct?'correct':'wrong')+', answer '+JSON.stringify(a.extracted)+', '+a.n_tokens+' tokens'));
  d.appendChild(h);
  if(a.turns){for(const t of a.turns){const w=el('div','turn '+t.role);w.appendChild(tag(t.role,t.role+' thinker'));
    w.appendChild(el('small','',' '+t.n_tokens+' tokens'+(t.final?', final':'')));w.appendChild(el('pre','',t.text));d.appendChild(w)}}
  else{const w=el('div','turn '+a.style);w.appendChild(el('pre','',a.text));d.appendChild(w)}
  box.appendChild(d)}}
function showImportance(i){const box=document.getElementById('importance');if(!box)return;box.innerHTML='';const r=D.importance[i];
 if(!r)return;box.dataset.record=r.id;box.appendChild(el('h3','',r.id+' (level '+r.level+'), answer '+JSON.stringify(r.answer)));
 if(r.problem)box.appendChild(el('p','problem',r.problem));
 for(const t of r.thoughts){const w=el('div','thought');const v=(t.s===null||t.s===undefined)?null:Number(t.s);
  w.appendChild(el('span','s '+(v===null?'':(v>=0?'pos':'neg')),v===null?'s = —':'s = '+v.toFixed(3)));
  w.appendChild(el('pre','',t.text));box.appendChild(w)}}
const ps=document.getElementById('problem-select');if(ps){ps.addEventListener('change',e=>showProblem(+e.target.value));showProblem(0)}
const is=document.getElementById('importance-select');if(is){is.addEventListener('change',e=>showImportance(+e.target.value));showImportance(0)}"""


def _select(sel_id: str, items: list[dict]) -> str:
    opts = "".join(f'<option value="{i}">{_esc(it["id"])} (level {_esc(it.get("level"))})</option>'
                   for i, it in enumerate(items))
    return f'<select id="{sel_id}">{opts}</select>'


def render(run: str | os.PathLike, base: str = "long", max_problems: int = MAX_PROBLEMS) -> str:
    """The page's HTML for a run folder holding summary.json (and optionally evals, chains, RL logs)."""
    run = Path(run)
    summary = run / "summary.json"
    if not summary.is_file():
        raise HybridcotError(f"{run}: no summary.json (not a run folder)")
    rows = load_rows([str(summary)])
    if base and any(r["name"] == base for r in rows):
        add_deltas(rows, base)
    else:
        base = ""
    figs = "".join(f'<figure><img class="plot" alt="{_esc(t)}" src="data:image/png;base64,{b}">'
                   f"<figcaption>{_esc(t)}</figcaption></figure>" for t, b in plots(run, rows))
    data = transcript_data(run, [r["name"] for r in rows], max_problems)
    data["importance"] = importance_data(run)
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    legend = ("ΔA = (A − A_base)/A_base; ΔL = (L_base − L)/L_base (a reduction is positive); "
              "AES = ΔL + 3·ΔA if ΔA ≥ 0 else ΔL + 5·ΔA; against " + _esc(base)) if base else "no base system"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>hybridcot report: {_esc(run.name)}"
             f"</title><style>{CSS}</style></head><body><h1>hybridcot report: {_esc(run)}</h1>",
             f'<h2>Results</h2><p>{legend}. Tokens = mean generated tokens.</p>{_table(rows, base)}',
             f'<h2>Plots</h2><div id="plots" class="plots">{figs}</div>',
             '<h2>Transcripts</h2>']
    if data["problems"]:
        parts.append(f'<p>{len(data["problems"])} test problems, spread over levels; Long⊗Short turns: '
                     '<span class="tag long">long thinker</span><span class="tag short">short thinker</span>; '
                     f'single answers labelled by style.</p>{_select("problem-select", data["problems"])}'
                     '<div id="transcripts"></div>')
    else:
        parts.append('<p id="transcripts">no samples.jsonl / dialogues.jsonl found</p>')
    if data["importance"]:
        parts.append('<h2>Importance of thoughts (training CoTs)</h2><p>s = importance score of each thought '
                     f'(accuracy gain minus length cost).</p>{_select("importance-select", data["importance"])}'
                     '<div id="importance"></div>')
    parts += [f'<h2>Configs</h2><div id="configs">{_configs(run)}</div>',
              f'<script type="application/json" id="transcript-data">{blob}</script>',
              f"<script>{JS}</script></body></html>\n"]
    return "\n".join(parts)


def write_html_report(run: str | os.PathLike, output: str | os.PathLike | None = None, base: str = "long",
                      max_problems: int = MAX_PROBLEMS) -> Path:
    """Write the page (default `<run>/report.html`) and return its path."""
    from hybridcot.io import atomic_write

    out = Path(output) if output else Path(run) / "report.html"
    page = render(run, base, max_problems)
    with atomic_write(out) as f:
        f.write(page)
    return out
