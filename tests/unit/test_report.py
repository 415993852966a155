"""The report stage: table with ΔA/ΔL/AES against a base, summary.json updates, plots."""

from __future__ import annotations

import pytest

from hybridcot.cli import main
from hybridcot.config import load_config
from hybridcot.evaluation.plots import plot_accuracy_vs_tokens, plot_per_level
from hybridcot.evaluation.report import ReportConfig, load_rows, run_report, summary_entry, update_summary
from hybridcot.io import HybridcotError, read_json, write_json


def metrics(name, acc, tokens, levels):
    return {"name": name, "model": f"/m/{name}", "accuracy": acc, "accuracy_ci": [acc - 0.05, acc + 0.05],
            "mean_tokens": tokens, "mean_chars": tokens * 3, "thinking_ratio": 0.5, "truncated": 0.0,
            "n_problems": 10, "n_samples": 10, "samples_per_problem": 1,
            "per_level": {str(k): {"accuracy": a, "mean_tokens": t, "n": 5, "n_samples": 5, "thinking_ratio": 0.5}
                          for k, (a, t) in levels.items()}}


@pytest.fixture
def runs(tmp_path):
    long_dir, short_dir = tmp_path / "eval" / "long", tmp_path / "eval" / "short"
    write_json(long_dir / "metrics.json", metrics("long", 0.8, 1000.0, {1: (0.9, 500.0), 2: (0.7, 1500.0)}))
    write_json(short_dir / "metrics.json", metrics("short", 0.6, 200.0, {1: (0.9, 100.0), 2: (0.3, 300.0)}))
    return [str(long_dir), str(short_dir)]


def test_report_deltas_and_files(runs, tmp_path, capsys):
    out = tmp_path / "report"
    res = run_report(ReportConfig(runs=runs, base="long", output=str(out)))
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["long"]["delta_accuracy"] == 0.0 and rows["long"]["delta_length"] == 0.0
    # short: ΔA = (0.6 - 0.8)/0.8 = -0.25, ΔL = (1000 - 200)/1000 = +0.8 (shorter is positive),
    # AES = 0.8 + 5 * (-0.25) = -0.45.
    assert rows["short"]["delta_accuracy"] == pytest.approx(-0.25)
    assert rows["short"]["delta_length"] == pytest.approx(0.8)
    assert rows["short"]["aes"] == pytest.approx(-0.45)
    md = (out / "report.md").read_text()
    assert "| short | 0.600 [0.550, 0.650] | 200.0 | -25.0% | +80.0% | -0.450 |" in md
    assert "L2 acc" in md and "L1 tok" in md
    saved = read_json(out / "report.json")
    assert saved["base"] == "long" and [r["name"] for r in saved["rows"]] == ["long", "short"]
    for name in ("accuracy_vs_tokens.png", "per_level_accuracy.png", "per_level_tokens.png"):
        assert (out / name).stat().st_size > 1000
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "short" in capsys.readouterr().out


def test_report_without_base_or_output(runs, tmp_path):
    res = run_report(ReportConfig(runs=runs, base="", output=""))
    assert res["files"] == []
    assert "delta_accuracy" not in res["rows"][0]
    assert "ΔA" not in res["markdown"]


def test_report_missing_base_is_one_line_error(runs):
    with pytest.raises(HybridcotError, match="base system 'nope' is not among"):
        run_report(ReportConfig(runs=runs, base="nope", plots=False))


def test_report_reads_summary_list_and_rejects_duplicates(runs, tmp_path):
    summary = tmp_path / "summary.json"
    entry = summary_entry(read_json(runs[0] + "/metrics.json"), "merge")
    update_summary(summary, entry)
    rows = load_rows([runs[0], str(summary)])
    assert [r["name"] for r in rows] == ["long", "merge"]
    with pytest.raises(HybridcotError, match="'long' already comes from"):
        load_rows([runs[0], runs[0]])
    write_json(tmp_path / "bad.json", [{"name": "x", "accuracy": "high", "mean_tokens": 3}])
    with pytest.raises(HybridcotError, match=r"bad.json: system 0: field 'accuracy' must be a number"):
        load_rows([str(tmp_path / "bad.json")])
    with pytest.raises(HybridcotError, match="no metrics.json"):
        load_rows([str(tmp_path)])


def test_summary_entry_shape():
    e = summary_entry(metrics("long", 0.8, 1000.0, {1: (0.9, 500.0)}), "Long")
    assert e == {"name": "Long", "accuracy": 0.8, "accuracy_ci": [pytest.approx(0.75), pytest.approx(0.85)],
                 "mean_tokens": 1000.0, "per_level": {"1": {"accuracy": 0.9, "mean_tokens": 500.0}},
                 "thinking_ratio": 0.5}


def test_update_summary_replaces_by_name(tmp_path):
    path = tmp_path / "demo" / "summary.json"
    update_summary(path, {"name": "long", "accuracy": 0.5, "mean_tokens": 10})
    update_summary(path, {"name": "short", "accuracy": 0.4, "mean_tokens": 2})
    rows = update_summary(path, {"name": "long", "accuracy": 0.9, "mean_tokens": 12})
    assert rows == read_json(path)
    assert [r["name"] for r in rows] == ["long", "short"]
    assert rows[0]["accuracy"] == 0.9
    path.write_text('{"not": "a list"}')
    with pytest.raises(HybridcotError, match="expected a JSON list"):
        update_summary(path, {"name": "x"})


def test_plots_written(tmp_path):
    rows = [{"name": "a", "accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "mean_tokens": 100,
             "per_level": {"1": {"accuracy": 0.7, "mean_tokens": 50}, "3": {"accuracy": 0.3, "mean_tokens": 150}}},
            {"name": "b", "accuracy": 0.45, "accuracy_ci": None, "mean_tokens": 40, "per_level": {}}]
    p = plot_accuracy_vs_tokens(rows, tmp_path / "a.png")
    q = plot_per_level(rows, "mean_tokens", tmp_path / "sub" / "b.png")
    for f in (p, q):
        assert f.exists() and f.stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))


def test_per_level_plot_keeps_systems_with_equal_values_apart(tmp_path, monkeypatch):
    """Three systems with the same Long-style share on every level (stop 21's report drew them as one
    line): each gets its own x positions around the level and its own marker; the ticks stay on levels."""
    import hybridcot.evaluation.plots as plots

    figs = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figs.append(fig), real_save(fig, path))[1])
    share = {str(lv): {"long_style_share": float(lv > 3)} for lv in range(1, 6)}
    rows = [{"name": n, "accuracy": 0.9, "mean_tokens": 100, "per_level": share} for n in ("a", "b", "c")]
    plots.plot_per_level(rows, "long_style_share", tmp_path / "s.png")
    ax = figs[0].axes[0]
    xs = [tuple(line.get_xdata()) for line in ax.get_lines()]
    assert len(set(xs)) == 3  # no two systems share a point
    for line_xs in xs:
        assert all(abs(x - lv) < 0.5 for x, lv in zip(line_xs, range(1, 6)))  # each point stays by its level
    assert len({line.get_marker() for line in ax.get_lines()}) == 3
    assert list(ax.get_xticks()) == [1, 2, 3, 4, 5]
    assert plots.dodge_offsets(1) == [0.0] and plots.dodge_offsets(0) == []
    off = plots.dodge_offsets(4)
    assert off == sorted(off) and sum(off) == pytest.approx(0.0) and max(off) - min(off) == pytest.approx(0.3)


def test_report_config_from_command_line():
    cfg = load_config(ReportConfig, overrides=["runs=a,b", "base=short", "plots=false"])
    assert cfg.runs == ["a", "b"] and cfg.base == "short" and cfg.plots is False
    with pytest.raises(HybridcotError, match="runs is required"):
        load_config(ReportConfig, overrides=[])


def test_report_cli(runs, tmp_path, capsys):
    assert main(["report", f"runs={','.join(runs)}", f"output={tmp_path / 'r'}", "plots=false"]) == 0
    assert (tmp_path / "r" / "report.md").exists()
    assert main(["report", f"runs={runs[0]}", "base=missing"]) == 2
    assert "base system 'missing'" in capsys.readouterr().err


def test_report_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", "--help"])
    assert e.value.code == 0
    assert "base (str" in capsys.readouterr().out
