"""The chains' chain.json: a step skipped as done keeps the seconds it took when it last ran, so a
finished folder's record tells what it cost (bench/*_quality.py reports it per seed)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.adar1.steps import ChainLog, chain_seconds, last_ran_seconds


@dataclass
class _Cfg:
    recipe: str = "recipes/tiny/x.yaml"
    output: str = ""


def _run(out: Path, todo: dict[str, bool], pause: float = 0.0) -> list[dict]:
    """One chain run: each step runs (sleeping `pause`) when todo[step] else is skipped."""
    log = ChainLog("test", out)

    def step(ran: bool) -> str:
        if ran:
            time.sleep(pause)
        return "ran" if ran else "skipped"

    for name, ran in todo.items():
        log.step(name, step, ran)
    return log.finish(_Cfg(output=str(out)))


def _steps(out: Path) -> dict[str, dict]:
    return {s["step"]: s for s in json.loads((out / "chain.json").read_text())["steps"]}


def test_skipped_steps_keep_their_last_run_time(tmp_path: Path) -> None:
    out = tmp_path / "chain"
    _run(out, {"world": False, "merge": True, "sample": True, "eval": False}, pause=0.05)
    first = _steps(out)
    assert first["merge"]["status"] == "ran" and first["merge"]["seconds"] >= 0.05
    assert "last_ran_s" not in first["eval"]  # never ran: nothing to keep

    _run(out, {"world": False, "merge": False, "sample": False, "eval": True})
    second = _steps(out)
    assert second["merge"]["status"] == "skipped" and second["merge"]["seconds"] < 0.05
    assert second["merge"]["last_ran_s"] == first["merge"]["seconds"]
    assert second["sample"]["last_ran_s"] == first["sample"]["seconds"]
    assert "last_ran_s" not in second["eval"] and "last_ran_s" not in second["world"]

    # a third run carries the time over a record in which the step was already skipped
    _run(out, {"world": False, "merge": False, "sample": False, "eval": False, "report": True})
    third = _steps(out)
    assert third["merge"]["last_ran_s"] == first["merge"]["seconds"]
    assert third["eval"]["last_ran_s"] == second["eval"]["seconds"]
    assert last_ran_seconds(third["report"]) == third["report"]["seconds"]

    cost = chain_seconds(out)
    want = first["merge"]["seconds"] + first["sample"]["seconds"] + second["eval"]["seconds"] + \
        third["report"]["seconds"]
    assert abs(cost["total_s"] - round(want, 1)) < 0.11 and cost["untimed"] == []


def test_a_run_where_nothing_ran_leaves_the_record(tmp_path: Path) -> None:
    out = tmp_path / "chain"
    _run(out, {"merge": True, "eval": True}, pause=0.02)
    before = (out / "chain.json").read_text()
    _run(out, {"merge": False, "eval": False})
    assert (out / "chain.json").read_text() == before


def test_untimed_steps_and_an_unreadable_record(tmp_path: Path) -> None:
    out = tmp_path / "chain"
    out.mkdir()
    (out / "chain.json").write_text("{not json")
    _run(out, {"merge": False, "sample": True})  # the bad record is replaced, not fatal
    cost = chain_seconds(out)
    assert cost["untimed"] == ["merge"] and cost["total_s"] == round(_steps(out)["sample"]["seconds"], 1)
    assert chain_seconds(tmp_path / "nowhere") == {"total_s": 0.0, "untimed": []}
