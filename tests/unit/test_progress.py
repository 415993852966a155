"""Progress bars: one rule (`hybridcot.ui.progress_enabled`: stderr is a terminal and HYBRIDCOT_QUIET is
not 1), one bar per stage over its own unit (count, rate, time left; resumed work as `initial`), no bar
per generate call under it, and nothing at all when stderr is not a terminal.

"Terminal" is faked by patching `hybridcot.ui._is_terminal` (what `progress_enabled` asks about
sys.stderr); pytest's captured stderr is a real non-terminal. One test checks the real check on a pty.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from hybridcot import ui
from hybridcot.io import read_jsonl, write_jsonl

# tqdm's counter and rate: "... 3/3 [00:00<00:00, 12.3cot/s]" (or "?cot/s" before the first update)
BAR_TAIL = re.compile(r"(\d+)/(\d+) \[[\d:]+<[\d:?]+, +(?:[\d.]+|\?)(\w+)/s")
ANY_BAR = re.compile(r"\r|%\||\d+/\d+ \[|it/s|\w/s\]")


def bars(err: str, desc: str) -> list[tuple[int, int, str]]:
    """(n, total, unit) of every refresh of the bar called `desc` in captured stderr."""
    out = []
    for piece in re.split(r"[\r\n]", err):
        if piece.lstrip().startswith(desc + ":"):
            m = BAR_TAIL.search(piece)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


def assert_bar(err: str, desc: str, unit: str, total: int, first: int | None = None) -> None:
    """The bar `desc` showed with `unit`/s, a time left and ended at total/total (started at `first`)."""
    seen = bars(err, desc)
    assert seen, f"no {desc!r} bar in stderr: {err!r}"
    assert all(u == unit for _, _, u in seen), seen
    assert seen[-1][:2] == (total, total), seen
    assert re.search(rf"{re.escape(desc)}:.*<[\d:]+, +[\d.]+{unit}/s", err), "no measured rate in the final bar"
    if first is not None:
        assert seen[0][0] == first, seen


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr counts as a terminal (bars on)."""
    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    monkeypatch.setattr(ui, "_is_terminal", lambda stream: True)
    assert ui.progress_enabled()


@pytest.fixture
def notty(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr is pytest's capture, not a terminal (bars off)."""
    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    assert not ui.progress_enabled()


# ---------------------------------------------------------------- the rule


def test_rule_terminal_quiet_and_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=True) as term:
            monkeypatch.setattr(sys, "stderr", term)
            assert ui.progress_enabled()  # a real terminal
            monkeypatch.setenv("HYBRIDCOT_QUIET", "1")
            assert not ui.progress_enabled()  # quiet wins
            monkeypatch.setenv("HYBRIDCOT_QUIET", "0")
            assert ui.progress_enabled()
            monkeypatch.setattr(sys, "stderr", io.StringIO())
            assert not ui.progress_enabled()  # a pipe / a log
    finally:
        os.close(master)


def test_helper_bar_and_silence(tty, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with ui.progress(total=4, initial=1, desc="things", unit="thing") as bar:
        bar.update(3)
    assert_bar(capsys.readouterr().err, "things", "thing", 4, first=1)
    monkeypatch.setenv("HYBRIDCOT_QUIET", "1")
    for _ in ui.progress(range(3), desc="things", unit="thing"):
        pass
    ui.progress_write("a line")
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == "a line\n"


def test_a_terminal_that_reports_no_width_still_gets_a_bar(tty, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A pty nobody sized (0 columns, 0 rows) makes tqdm draw empty lines; the helper gives it a size."""
    monkeypatch.setattr(ui, "_columns", lambda stream: 0)
    with ui.progress(total=2, desc="sized", unit="thing") as bar:
        assert bar.ncols == 100
        bar.update(2)
    assert_bar(capsys.readouterr().err, "sized", "thing", 2)


def test_trainers_follow_the_rule(tty, monkeypatch: pytest.MonkeyPatch) -> None:
    """sft and dpo (trainer_args) and rl hand TRL `disable_tqdm` from the same rule."""
    from hybridcot.adar1.dpo import trainer_args
    from hybridcot.adar1.sft import SFTStageConfig

    cfg = SFTStageConfig(model="m", data="d", output="o")
    assert trainer_args(cfg, Path("o.trl"))["disable_tqdm"] is False
    monkeypatch.setenv("HYBRIDCOT_QUIET", "1")
    assert trainer_args(cfg, Path("o.trl"))["disable_tqdm"] is True
    monkeypatch.delenv("HYBRIDCOT_QUIET")
    monkeypatch.setattr(ui, "_is_terminal", lambda stream: False)
    assert trainer_args(cfg, Path("o.trl"))["disable_tqdm"] is True


def test_libraries_bars_follow_the_rule_off_a_terminal(notty, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers / datasets / hub bars ("Loading weights", "Map") are switched off with their own switches
    (environment too, for subprocesses); a user's own setting is kept."""
    import datasets
    from transformers.utils import logging as hf_logging

    env = {k: v for k, v in os.environ.items() if k not in ui.LIBRARY_ENV}
    monkeypatch.setattr(os, "environ", env)
    try:
        assert ui.sync_library_progress() is False
        assert all(env[k] == "1" for k in ui.LIBRARY_ENV)
        assert not hf_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
        datasets.enable_progress_bars()
    env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "0"
    ui.sync_library_progress()
    assert env["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "0"  # the user's own setting is kept
    import importlib

    datasets_tqdm = importlib.import_module("datasets.utils.tqdm")

    # datasets reads its switch once, at import: where an earlier in-process CLI run (another test)
    # had set it to 1 by then, nothing can turn its bars back on in this process
    if not datasets_tqdm.HF_DATASETS_DISABLE_PROGRESS_BARS:
        assert datasets.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    with ui.library_bars_follow_rule():  # a stage called from Python: off for the load, then restored
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()


def test_backends_default_to_the_rule(pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.generation.hf import HFGenerator

    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    monkeypatch.setattr(ui, "_is_terminal", lambda stream: True)
    assert HFGenerator(pico_model_dir).progress is True
    assert HFGenerator(pico_model_dir, progress=False).progress is False
    monkeypatch.setattr(ui, "_is_terminal", lambda stream: False)
    assert HFGenerator(pico_model_dir).progress is False


# ---------------------------------------------------------------- stages on fakes (no model)


def _chunks(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "chunks.jsonl"
    write_jsonl(path, [{"id": f"p{k}", "problem": f"What is 40+{k}?", "answer": str(40 + k), "level": 1,
                        "thoughts": [{"text": "first step"}, {"text": "second step here"}]} for k in range(n)])
    return path


def _rollouts(prompts, n):
    return [["so \\boxed{40}"] * n for _ in prompts]


def _importance(tmp_path: Path, **kw):
    from hybridcot.longshort.importance import CallableGenerator, ImportanceConfig, run_importance

    cfg = ImportanceConfig(chunks=str(_chunks(tmp_path)), model="fake", output=str(tmp_path / "imp"), n=2, chunk=1,
                           **kw)
    return run_importance(cfg, generator=CallableGenerator(_rollouts))


def test_importance_bar_per_cot_resumed_as_initial(tty, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _importance(tmp_path, limit=1)
    assert_bar(capsys.readouterr().err, "importance", "cot", 1, first=0)
    _importance(tmp_path)  # resumes: the first CoT is done
    err = capsys.readouterr().err
    assert_bar(err, "importance", "cot", 3, first=1)
    assert "rollouts=12" in err  # 2 more CoTs x 3 prefixes x n=2


def test_importance_silent_off_a_terminal(notty, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _importance(tmp_path)
    assert not ANY_BAR.search(capsys.readouterr().err)


def test_importance_opens_its_model_without_a_bar(tty, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.generation import base
    from hybridcot.longshort.importance import CallableGenerator, ImportanceConfig, run_importance

    seen = {}

    def fake_load(model, **kw):
        seen.update(kw)
        return CallableGenerator(_rollouts)

    monkeypatch.setattr(base, "load_generator", fake_load)
    monkeypatch.setattr("hybridcot.generation.load_generator", fake_load)
    run_importance(ImportanceConfig(chunks=str(_chunks(tmp_path)), model="fake", output=str(tmp_path / "i"), n=1))
    assert seen["progress"] is False


def _cots(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "cots.jsonl"
    write_jsonl(path, [{"id": f"p{k}", "problem": "q", "answer": "1", "text": "First, a.\n\nWait, b.\n\nSo c."}
                       for k in range(n)])
    return path


@pytest.mark.parametrize("terminal", [True, False])
def test_chunk_rules_and_llm_bars(terminal: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.longshort.chunking import ChunkConfig, run_chunk

    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    monkeypatch.setattr(ui, "_is_terminal", lambda stream: terminal)
    cots = _cots(tmp_path)
    run_chunk(ChunkConfig(input=str(cots), output=str(tmp_path / "rules"), max_per_problem=None))
    err = capsys.readouterr().err
    if terminal:
        assert_bar(err, "chunk", "cot", 5)
    else:
        assert not ANY_BAR.search(err)
    cfg = dict(input=str(cots), output=str(tmp_path / "llm"), method="llm", model="fake", llm_retries=1, batch_size=2)
    complete = lambda ps: ["not json"] * len(ps)  # noqa: E731  (every CoT falls back to the rules)
    run_chunk(ChunkConfig(**cfg, limit=2), complete=complete)
    run_chunk(ChunkConfig(**cfg), complete=complete)  # resumes after 2
    err = capsys.readouterr().err
    if terminal:
        assert_bar(err, "chunk (llm)", "cot", 5)
        seen = bars(err, "chunk (llm)")
        assert seen[0][:2] == (0, 2) and (2, 5, "cot") in seen  # the second run starts at the 2 done CoTs
    else:
        assert not ANY_BAR.search(err)


def test_dialogues_bar_per_dialogue(tty, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybridcot.longshort.dialogues import DialoguesConfig, run_dialogues

    recs = [{"id": f"q{k}", "problem": "Solve 2x=8.", "answer": 4, "thoughts": ["We have 2x=8.", "Hmm, x=4."],
             "s": [1, -1]} for k in range(3)]
    write_jsonl(tmp_path / "i.jsonl", recs)
    run_dialogues(DialoguesConfig(input=str(tmp_path / "i.jsonl"), output=str(tmp_path / "o")),
                  llm=lambda prompt: "So x=4.")
    assert_bar(capsys.readouterr().err, "dialogues", "dialogue", 3)


def test_collaborate_one_bar_and_quiet_generators(tty, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.generation import Sample
    from hybridcot.longshort import collaborate as collab

    class Final:
        """Both thinkers at once: a think turn, then a final short turn."""

        def generate(self, prompts, params):
            turn = lambda m: sum(x["content"].count("<think>") + x["content"].count("<answer>") for x in m)  # noqa
            return [[Sample("<think>plan</think>" if turn(m) == 0 else "<answer>so \\boxed{7}</answer>", n_tokens=2)]
                    for m in prompts]

        def close(self):
            pass

    opened = []
    monkeypatch.setattr(collab, "load_generator", lambda *a, **kw: opened.append(kw) or Final())
    base = dict(long_model=str(tmp_path / "m"), short_model=str(tmp_path / "m"), problems="world:test:4",
                output=str(tmp_path / "run"), backend="hf", batch_size=2, n_boot=10)
    collab.run_collaborate(collab.CollaborateConfig(**base, limit=1))
    collab.run_collaborate(collab.CollaborateConfig(**base))
    err = capsys.readouterr().err
    assert_bar(err, "collaborate m+m", "problem", 4)
    assert bars(err, "collaborate m+m")[0][:2] == (0, 1) and (1, 4, "problem") in bars(err, "collaborate m+m")
    assert opened and all(kw["progress"] is False for kw in opened)  # no bar per turn's generate call


def test_merge_shards_bar_per_shard(tty, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybridcot.shards import merge_shards

    for i in range(2):
        _importance(tmp_path, shard=f"{i}/2")
    capsys.readouterr()
    merge_shards(tmp_path / "imp")
    err = capsys.readouterr().err
    assert_bar(err, "merge-shards importance", "shard", 2)
    assert len(read_jsonl(tmp_path / "imp" / "importance.jsonl")) == 3


def test_pairs_grading_bar(tty, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.adar1 import pairs

    monkeypatch.setattr(pairs, "GRADE_CHUNK", 4)
    path = tmp_path / "long" / "samples.jsonl"
    path.parent.mkdir()
    write_jsonl(path, [{"id": f"p{k}", "samples": [{"text": f"\\boxed{{{k + j}}}", "n_tokens": 3} for j in range(3)]}
                       for k in range(3)])  # generate's shape: no `correct`, graded here
    got = pairs.load_samples(path, {f"p{k}": str(k) for k in range(3)})
    assert [r.correct for r in got["p1"]] == [True, False, False]
    assert_bar(capsys.readouterr().err, "grade long/samples.jsonl", "sample", 9)


# ---------------------------------------------------------------- stages on the pico model


@pytest.mark.parametrize("terminal", [True, False])
def test_sample_one_bar_per_problem_and_none_per_batch(terminal: bool, tmp_path: Path, pico_model_dir: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.adar1.sample import SampleConfig, run_sample

    monkeypatch.delenv("HYBRIDCOT_QUIET", raising=False)
    monkeypatch.setattr(ui, "_is_terminal", lambda stream: terminal)
    cfg = dict(model=str(pico_model_dir), problems="world:test:3", output=str(tmp_path / "s"), name="pico", k=2,
               max_tokens=4, backend="hf", batch_size=1)
    run_sample(SampleConfig(**cfg, limit=1))
    run_sample(SampleConfig(**cfg))
    err = capsys.readouterr().err
    if terminal:
        assert_bar(err, "eval pico", "problem", 3)
        assert (1, 3, "problem") in bars(err, "eval pico")  # the resumed problem counts from the start
        assert "generate (hf)" not in err  # no inner bar per generate call
    else:
        assert not ANY_BAR.search(err) and "Loading weights" not in err


def test_generate_bar_per_problem(tty, tmp_path: Path, pico_model_dir: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from hybridcot.generation.stage import GenerateConfig, run_generate

    cfg = dict(model=str(pico_model_dir), problems="world:test:3", output=str(tmp_path / "g.jsonl"), max_tokens=4,
               backend="hf", chunk=1)
    run_generate(GenerateConfig(**cfg, limit=1))
    run_generate(GenerateConfig(**cfg))
    err = capsys.readouterr().err
    assert_bar(err, "generate", "problem", 3)
    assert (1, 3, "problem") in bars(err, "generate") and "generate (hf)" not in err


def test_merge_alpha_sweep_and_streaming_bars(tty, tmp_path: Path, pico_model_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from hybridcot.merging import MergeConfig, run_merge

    short = shutil.copytree(pico_model_dir, tmp_path / "short")
    cfg = MergeConfig(long=str(pico_model_dir), short=str(short), output=str(tmp_path / "merged"),
                      alpha_sweep=[0.0, 1.0], sweep_problems="world:test:2", max_tokens=4, batch_size=1)
    run_merge(cfg)
    cap = capsys.readouterr()
    assert_bar(cap.err, "alpha sweep", "problem", 4)  # 2 alphas x 2 problems
    assert "α=1" in cap.err and "generate (hf)" not in cap.err
    assert re.search(r"merge: 100%.*B/s\]", cap.err)  # the streamed weights, in bytes
    assert re.search(r"^  1\.00 ", cap.out, re.M)  # the sweep's table rows still go to stdout


def test_merge_silent_off_a_terminal(notty, tmp_path: Path, pico_model_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from hybridcot.merging import MergeConfig, run_merge

    short = shutil.copytree(pico_model_dir, tmp_path / "short")
    run_merge(MergeConfig(long=str(pico_model_dir), short=str(short), output=str(tmp_path / "merged"),
                          alpha_sweep=[0.5], sweep_problems="world:test:2", max_tokens=4))
    err = capsys.readouterr().err
    assert not ANY_BAR.search(err) and "Loading weights" not in err
