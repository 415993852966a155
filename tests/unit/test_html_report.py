"""The static HTML report: one self-contained file with the table, embedded plots and transcripts."""

from __future__ import annotations

import base64
import json
import re

import pytest

from hybridcot.cli import main
from hybridcot.evaluation.html_report import render, spread, write_html_report
from hybridcot.io import HybridcotError, write_json

PNG = b"\x89PNG\r\n\x1a\n"


def row(name, acc, tokens, **extra):
    return {"name": name, "accuracy": acc, "accuracy_ci": [acc - 0.05, acc + 0.05], "mean_tokens": tokens,
            "per_level": {"1": {"accuracy": acc + 0.1, "mean_tokens": tokens * 0.8},
                          "2": {"accuracy": acc - 0.1, "mean_tokens": tokens * 1.2}},
            "thinking_ratio": 0.2, "long_style_share": {"1": 0.5, "2": 1.0}, **extra}


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def fake_run(root, longshort=True):
    """summary.json, long/short samples and (optionally) a Long⊗Short chain with dialogues, importance, RL."""
    rows = [row("long", 0.8, 120.0), row("short", 0.6, 40.0)]
    if longshort:
        rows.append(row("longshort_sft", 0.7, 80.0, short_thinker_token_share=0.4, mean_turns=3.0,
                        mean_long_tokens=48.0))
    write_json(root / "summary.json", rows)
    ids = [(f"p{i}", str(1 + i % 2)) for i in range(6)]
    for name, style in (("long", "long"), ("short", "short")):
        write_jsonl(root / "eval" / name / "samples.jsonl",
                    [{"id": i, "level": lv, "sample": 0, "text": f"{name} answer to {i} </script>", "n_tokens": 10,
                      "extracted": "4", "gold": "4", "correct": True, "style": style} for i, lv in ids])
    (root / "eval" / "long" / "config.yaml").write_text("model: long\n")
    if longshort:
        ls = root / "longshort"
        (ls / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
        (ls / "config.yaml").write_text("output: runs/x/longshort\nrl:\n  rounds: 2\n")
        write_jsonl(ls / "eval" / "longshort_sft" / "dialogues.jsonl",
                    [{"id": i, "level": lv, "problem": f"Problem {i}?", "n_tokens": 30, "extracted": "4",
                      "gold": "4", "correct": False,
                      "turns": [{"role": "long", "text": f"LONGTURN {i}", "n_tokens": 20, "final": False},
                                {"role": "short", "text": f"SHORTTURN {i}", "n_tokens": 10, "final": True}]}
                     for i, lv in ids])
        write_jsonl(ls / "importance" / "importance.jsonl",
                    [{"id": f"t{i}", "level": "1", "problem": "What?", "answer": "9",
                      "thoughts": [{"text": "THOUGHT A", "n_tokens": 3}, {"text": "THOUGHT B", "n_tokens": 4}],
                      "s": [0.25, -0.125]} for i in range(3)])
        write_json(ls / "rl" / "round-1-long" / "train_log.json",
                   {"log": [{"step": s, "reward": 0.1 * s, "rewards/correctness/mean": 0.05 * s} for s in range(1, 6)]})
    return root


def plot_srcs(page):
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert imgs and all('class="plot"' in i for i in imgs)
    return [re.search(r'src="([^"]*)"', i).group(1) for i in imgs]


def check_self_contained(page):
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page.lower()
    for src in plot_srcs(page):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)


def test_page_is_written_and_self_contained(tmp_path):
    run = fake_run(tmp_path / "run")
    out = write_html_report(run)
    assert out == run / "report.html"
    page = out.read_text()
    check_self_contained(page)
    assert 'id="results-table"' in page and 'id="problem-select"' in page and 'id="transcripts"' in page
    for name in ("long", "short", "longshort_sft"):
        assert f'<tr data-system="{name}">' in page
    assert "long (base)" in page and "40.0%" in page and "3.00" in page  # short share and turns of the pair
    assert len(plot_srcs(page)) == 5  # acc vs tokens, per level, style share, tokens per thinker, rewards
    assert 'id="importance-select"' in page and "THOUGHT A" in page
    assert "LONGTURN p0" in page and "output: runs/x/longshort" in page  # transcripts and the chain config
    assert "</script> " not in page.split('id="transcript-data">', 1)[1].split("</script>", 1)[0]
    data = json.loads(page.split('id="transcript-data">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    assert data["systems"] == ["long", "short", "longshort_sft"] and len(data["problems"]) == 6
    p = data["problems"][0]
    assert p["answers"]["long"]["style"] == "long" and p["answers"]["short"]["style"] == "short"
    assert [t["role"] for t in p["answers"]["longshort_sft"]["turns"]] == ["long", "short"]
    assert data["importance"][0]["thoughts"][1]["s"] == -0.125


def test_only_long_and_short(tmp_path):
    run = fake_run(tmp_path / "run", longshort=False)
    page = render(run)
    check_self_contained(page)
    assert len(plot_srcs(page)) == 3 and 'id="importance-select"' not in page
    (tmp_path / "bare").mkdir()
    write_json(tmp_path / "bare" / "summary.json", [row("a", 0.5, 10.0)])  # no samples, no base
    page = render(tmp_path / "bare")
    check_self_contained(page)
    assert 'id="transcripts"' in page and "no base system" in page
    with pytest.raises(HybridcotError):
        render(tmp_path / "missing")


def test_spread_is_deterministic_and_covers_levels():
    items = [{"id": f"x{i:03d}", "level": str(1 + i % 5)} for i in range(500)]
    a, b = spread(items, 50), spread(list(reversed(items)), 50)
    assert a == b and len(a) == 50 and len({x["id"] for x in a}) == 50
    assert {x["level"] for x in a} == {"1", "2", "3", "4", "5"}
    assert spread(items[:3], 50) == sorted(items[:3], key=lambda x: x["level"])


def test_cli_html_option(tmp_path, capsys):
    run = fake_run(tmp_path / "run", longshort=False)
    assert main(["report", f"html={run}"]) == 0
    assert (run / "report.html").is_file()
    (run / "report.html").unlink()
    assert main(["report", "--html", str(run / "page.html"), f"runs={run / 'summary.json'}"]) == 0
    assert (run / "page.html").is_file() and "page.html" in capsys.readouterr().out
