"""AdaR1's report and the summary rows' `long_style_share`: hand-made records with known numbers."""

from __future__ import annotations

import pytest

from hybridcot.evaluation.adar1_report import adar1_table, report_rows, style_table, write_adar1_report
from hybridcot.evaluation.metrics import summarize
from hybridcot.evaluation.report import summary_entry
from hybridcot.io import read_json


def _metrics(spec: dict[int, tuple[int, int, int]]) -> dict:
    """Metrics of records where level -> (problems, correct, long-style) with 100-token long and 10-token short."""
    recs = []
    for level, (n, correct, long_n) in spec.items():
        for i in range(n):
            style = "long" if i < long_n else "short"
            recs.append({"id": f"{level}-{i}", "level": level, "sample": 0, "correct": i < correct,
                         "n_tokens": 100 if style == "long" else 10, "style": style,
                         "thinking": style == "long", "text": "x"})
    return summarize(recs, n_boot=0)


def test_summary_entry_adds_long_style_share_per_level() -> None:
    m = _metrics({1: (4, 4, 1), 5: (4, 2, 4)})
    entry = summary_entry(m, "adar1")
    assert entry["long_style_share"] == {"1": 0.25, "5": 1.0}
    no_long = summary_entry(_metrics({1: (2, 1, 0)}), "short")
    assert no_long["long_style_share"] == {"1": 0.0}  # no long answers at all: the share is 0, not missing


def test_summary_entry_is_unchanged_without_styles() -> None:
    m = _metrics({1: (2, 1, 0)})
    for block in (m, *m["per_level"].values()):
        block.pop("style_share", None)
    entry = summary_entry(m, "old")
    assert "long_style_share" not in entry
    assert set(entry) == {"name", "accuracy", "accuracy_ci", "mean_tokens", "per_level", "thinking_ratio"}


def test_table_has_the_papers_columns_against_long() -> None:
    systems = {"adar1": _metrics({1: (4, 3, 0), 5: (4, 2, 4)}), "long": _metrics({1: (4, 4, 4), 5: (4, 2, 4)})}
    rows = report_rows(systems)
    assert [r["name"] for r in rows] == ["long", "adar1"]  # the paper's order, not the dict's
    from hybridcot.evaluation.report import add_deltas

    add_deltas(rows, "long")
    head, body = adar1_table(rows, "long")
    assert head == ["system", "accuracy [95% CI]", "mean tokens", "ΔA", "ΔL", "AES", "thinking", "Long style"]
    # AdaR1: A = 5/8 vs 6/8 -> ΔA = -1/6; L = 55 vs 100 -> ΔL = +45%; AES = 0.45 + 5·(-1/6)
    assert body[1][:6] == ["AdaR1 (bi-level)", "0.625", "55.0", "-16.7%", "+45.0%", f"{0.45 - 5 / 6:+.3f}"]
    assert body[1][6:] == ["50%", "50%"] and body[0][0] == "Long (base)"
    shead, sbody = style_table(rows)
    assert shead == ["system", "L1", "L5"] and sbody[1] == ["AdaR1 (bi-level)", "0%", "100%"]


def test_write_report_then_skip_when_unchanged(tmp_path) -> None:
    systems = {"long": _metrics({1: (2, 2, 2), 3: (2, 1, 2)}), "merge": _metrics({1: (2, 1, 0), 3: (2, 0, 1)})}
    r = write_adar1_report(systems, tmp_path)
    assert r["status"] == "ran"
    for f in r["files"]:
        assert (tmp_path / f.split("/")[-1]).stat().st_size > 0
    assert "## Long-style share per difficulty level" in (tmp_path / "report.md").read_text()
    saved = read_json(tmp_path / "report.json")
    assert saved["base"] == "long" and saved["rows"][1]["long_style_share"] == {"1": 0.0, "3": 0.5}
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert write_adar1_report(systems, tmp_path)["status"] == "skipped"
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes
    systems["merge"] = _metrics({1: (2, 2, 0), 3: (2, 0, 1)})
    assert write_adar1_report(systems, tmp_path)["status"] == "ran"


def test_report_from_summary_rows_without_a_base(tmp_path) -> None:
    rows = {"adar1": summary_entry(_metrics({2: (2, 1, 1)}), "adar1")}
    r = write_adar1_report(rows, tmp_path, base="long")  # no long row: no deltas, still a table
    assert r["rows"][0]["long_style"] is None and r["rows"][0]["long_style_share"] == {"2": 0.5}
    assert "ΔA" in r["markdown"] and "—" in r["markdown"]


@pytest.mark.parametrize("name", ["long", "merge", "custom"])
def test_unknown_systems_keep_their_names(name: str) -> None:
    rows = report_rows({name: _metrics({1: (1, 1, 1)})})
    assert rows[0]["name"] == name
