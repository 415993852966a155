"""cli.py: `--help` for every stage lists its config keys; user errors are one line and exit 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybridcot import cli
from hybridcot.config import config_fields, field, load_config
from hybridcot.io import HybridcotError

STAGE_NAMES = list(cli.STAGES)


def _run(argv: list[str]) -> int:
    """main(argv) as the console script sees it: a return value or a SystemExit code."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def test_top_level_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hybridcot")
    for name in STAGE_NAMES:
        assert name.split()[0] in out


def test_no_arguments_prints_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "usage: hybridcot" in capsys.readouterr().out


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_row_resolves_to_a_documented_config(name: str) -> None:
    cfg_cls, fn = cli._load(name)
    assert dataclasses.is_dataclass(cfg_cls) and callable(fn)
    undocumented = [k for k, (_, f) in config_fields(cfg_cls).items() if not f.metadata.get("help")]
    assert undocumented == [], f"{cfg_cls.__name__} fields without help text"
    try:  # defaults either validate or fail as a one-line user error ("model is required"), never a TypeError
        load_config(cfg_cls)
    except HybridcotError as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_help_lists_its_config_keys(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hybridcot {name} ")
    assert cli.STAGES[name][3].split()[0] in out  # the one-line description
    assert "config keys:" in out
    cfg_cls, _ = cli._load(name)
    for key, (_, f) in config_fields(cfg_cls).items():
        assert f"\n  {key} (" in out, f"{name} --help does not list {key}"
        # argparse may not rewrap the epilog: each key's help is on its own line, intact
        assert f.metadata.get("help", "") in out


def test_help_via_python_m() -> None:
    r = subprocess.run([sys.executable, "-m", "hybridcot.cli", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: hybridcot") and "eval" in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_unknown_key_is_one_line_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([*name.split(), "no_such_key=1"]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err
    assert cap.err.startswith(f"hybridcot {name}: error: command line: unknown key 'no_such_key'")


@pytest.mark.parametrize("debug_first", [True, False])
def test_debug_lets_the_exception_propagate(debug_first: bool) -> None:
    argv = ["--debug", "report", "no_such_key=1"] if debug_first else ["report", "no_such_key=1", "--debug"]
    with pytest.raises(HybridcotError, match="unknown key 'no_such_key'"):
        cli.main(argv)


def test_missing_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["report", "--config", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.yaml: config file not found" in err


def test_group_without_command_shows_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    groups = {n.split()[0] for n in STAGE_NAMES if " " in n}
    for g in sorted(groups):
        assert _run([g]) == 2
        err = capsys.readouterr().err
        for n in STAGE_NAMES:
            if n.startswith(g + " "):
                assert n.split()[1] in err


def test_unknown_stage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["no-such-stage"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# ---- a toy stage row: the config reaches the function; errors from the function behave the same ----

@dataclass
class ToyConfig:
    n: int = field(1, help="a number")
    fail: str = field("", help="'user' raises HybridcotError, 'bug' raises ValueError")


def _toy(cfg: ToyConfig) -> None:
    _toy.seen = cfg  # type: ignore[attr-defined]
    if cfg.fail == "user":
        raise HybridcotError("data.jsonl:3: field 'answer' missing")
    if cfg.fail == "bug":
        raise ValueError("a bug shows its traceback")


@pytest.fixture
def toy_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("hybridcot_toy_stage")
    mod.ToyConfig, mod.run_toy = ToyConfig, _toy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hybridcot_toy_stage", mod)
    monkeypatch.setitem(cli.STAGES, "toy", ("hybridcot_toy_stage", "ToyConfig", "run_toy", "A toy stage."))


def test_toy_stage_gets_yaml_and_overrides(toy_stage: None, tmp_path: Path) -> None:
    y = tmp_path / "toy.yaml"
    y.write_text("n: 5\n", encoding="utf-8")
    assert cli.main(["toy", "-c", str(y)]) == 0
    assert _toy.seen == ToyConfig(n=5)  # type: ignore[attr-defined]
    assert cli.main(["toy", "--config", str(y), "n=7"]) == 0
    assert _toy.seen == ToyConfig(n=7)  # type: ignore[attr-defined]


def test_toy_stage_errors(toy_stage: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["toy", "fail=user"]) == 2
    assert capsys.readouterr().err == "hybridcot toy: error: data.jsonl:3: field 'answer' missing\n"
    with pytest.raises(HybridcotError):
        cli.main(["toy", "fail=user", "--debug"])
    with pytest.raises(ValueError, match="a bug"):  # not a user error: never swallowed
        cli.main(["toy", "fail=bug"])
    assert cli.main(["toy", "n=x"]) == 2
    assert "n: expected an integer, got 'x'" in capsys.readouterr().err


def test_hybridcot_debug_env(toy_stage: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDCOT_DEBUG", "1")
    with pytest.raises(HybridcotError):
        cli.main(["toy", "fail=user"])


def test_every_stage_ends_with_a_summary_of_time_figures_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    out = tmp_path / "p.jsonl"
    assert cli.main(["world", "problems", f"output={out}", "n=7"]) == 0
    err = capsys.readouterr().err
    assert "hybridcot world problems: done in" in err and "p.jsonl" in err and ("KB" in err or " B)" in err)
    # figures come from a dict result, nested ones prefixed; long strings and lists are left out
    from rich.console import Console

    from hybridcot.ui import stage_summary

    con = Console(record=True, width=100)
    stage_summary("eval", types.SimpleNamespace(output=str(tmp_path)), {"accuracy": 0.4567, "ids": [1, 2],
                  "note": "x" * 200, "summary": {"mean_tokens": 12.5}}, 3.21, console=con)
    text = con.export_text()
    assert "done in 3.2 s" in text and "0.4567" in text and "summary.mean_tokens" in text and "12.5" in text
    assert "ids" not in text and "xxxx" not in text and "p.jsonl" in text
    monkeypatch.setenv("HYBRIDCOT_QUIET", "1")
    assert cli.main(["world", "problems", f"output={tmp_path / 'q.jsonl'}", "n=3"]) == 0
    assert "done in" not in capsys.readouterr().err
