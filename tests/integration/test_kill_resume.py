"""Kill -9 and resume, for real: each long stage runs as `python -m hybridcot.cli ...` in a subprocess
on the pico model, is SIGKILLed part way (once its output holds a few records but is not complete),
then the same command is rerun to completion and compared with an uninterrupted run in another folder.

Checked per stage: the killed run left only whole records (at most a torn last line); a torn tail
(a write cut by the kill, injected after the kill so the repair path always runs) is repaired; the
resumed output holds the same set of records as the uninterrupted run (ids x sample index), none lost,
none duplicated, no unparseable line, no temp file left; greedy / seeded sampling gives the same
content; and a rerun of the finished stage generates (or trains) nothing and leaves the output as is.

The training stage (`sft`, TRL checkpoints every step in `<output>.trl/`) is killed once a few
checkpoints exist; a torn newer checkpoint (weights half written, no trainer_state.json) is added
before resuming, which must continue from the newest complete one and end with the same weights and
the same per-step log as the uninterrupted run.

The references and resumes run in this process through `cli.main`; only the killed runs are
subprocesses (each pays the torch/transformers import, ~10 s on a busy machine).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hybridcot import cli
from hybridcot.data.world import generate_problems, write_long, write_short
from hybridcot.generation import chat_prompt
from hybridcot.io import read_jsonl, write_jsonl

KILL_TIMEOUT_S = 240


# ---------------------------------------------------------------- helpers

def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDCOT_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HYBRIDCOT_BACKEND": "hf"}


def run_and_kill(argv: list[str], ready: Callable[[], bool], log: Path) -> None:
    """Start `hybridcot <argv>` in a subprocess and SIGKILL it as soon as `ready()` holds.

    Fails the test when the process ends on its own first (the stage was too fast to be killed part way).
    """
    with open(log, "wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "hybridcot.cli", *argv], stdout=logf,
                                stderr=subprocess.STDOUT, env=_env())
        deadline = time.monotonic() + KILL_TIMEOUT_S
        try:
            while True:
                if ready():
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=60)
                    break
                if proc.poll() is not None:
                    pytest.fail(f"hybridcot {argv[0]} ended (rc {proc.returncode}) before it could be killed "
                                f"part way:\n{log.read_text(errors='replace')[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"hybridcot {argv[0]}: not ready to kill after {KILL_TIMEOUT_S} s")
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def whole_lines(path: Path) -> int:
    """Newline-terminated lines in `path` (0 when absent)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def assert_killed_state(path: Path, total: int) -> list[dict]:
    """After a kill: fewer than `total` records, every line but a torn last one parses. Returns them."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else the torn last line
    recs = [json.loads(x) for x in lines]  # every whole line is a whole record
    assert 0 < len(recs) < total, f"{path}: {len(recs)} of {total} records after the kill"
    if tail:
        with pytest.raises(ValueError):
            json.loads(tail)
    return recs


def inject_torn_tail(path: Path, ref_lines: list[bytes], key: Callable[[dict], tuple], per_key: int = 1) -> None:
    """Append what a kill in the middle of the next write leaves: the next reference record's line cut in
    half (after the whole first line of a problem when each problem has `per_key` lines, so the file ends
    inside a problem). The reference lines are what the killed run would have written next."""
    data = path.read_bytes()
    if not data.endswith(b"\n"):  # the kill itself tore the last line: that is the case to repair already
        return
    have = {key(json.loads(x)) for x in data.splitlines() if x.strip()}
    i = next(i for i, line in enumerate(ref_lines) if key(json.loads(line)) not in have)
    extra = b""
    if per_key > 1 and json.loads(ref_lines[i]).get("sample") == 0:
        extra, i = ref_lines[i] + b"\n", i + 1
    with open(path, "ab") as f:
        f.write(extra + ref_lines[i][: len(ref_lines[i]) // 2])


def assert_same_records(ref: Path, got: Path, key: Callable[[dict], tuple], same_content: bool = True) -> int:
    """`got` holds exactly `ref`'s records: no unparseable line, none lost, none duplicated. Returns the count."""
    assert got.read_bytes().endswith(b"\n")
    want = read_jsonl(ref)
    have = read_jsonl(got)  # strict: any torn or bad line raises
    keys = [key(r) for r in have]
    assert len(keys) == len(set(keys)), "a record is duplicated"
    assert set(keys) == {key(r) for r in want}, "records lost or foreign ones added"
    if same_content:
        by_key = {key(r): r for r in want}
        diff = [k for k, r in zip(keys, have) if r != by_key[k]]
        assert diff == [], f"resumed records differ from the uninterrupted run: {diff[:3]}"
    leftovers = [p.name for p in got.parent.glob(".*.tmp")]
    assert leftovers == [], f"temp files left: {leftovers}"
    return len(have)


def main_ok(argv: list[str]) -> None:
    assert cli.main(argv) == 0, f"hybridcot {' '.join(argv)} failed"


def id_sample(r: dict) -> tuple:
    return str(r["id"]), r.get("sample")


def _kill_resume_jsonl(tmp_path: Path, stage: str, args: Callable[[Path], list[str]], out_file: str, total: int,
                       per_key: int, ready_at: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Reference run, killed run, torn tail, resume, compare, finished rerun. Returns the record count."""
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    main_ok([stage, *args(ref_dir)])
    ref = ref_dir / out_file
    assert len(read_jsonl(ref)) == total
    path = run_dir / out_file

    def ready() -> bool:
        return ready_at <= whole_lines(path) < total

    run_and_kill([stage, *args(run_dir)], ready, tmp_path / f"{stage}.log")
    killed = assert_killed_state(path, total)
    torn = not path.read_bytes().endswith(b"\n")
    inject_torn_tail(path, ref.read_bytes().splitlines(), id_sample, per_key)
    print(f"{stage}: killed at {len(killed)}/{total} records, torn tail {'left by the kill' if torn else 'injected'}")
    main_ok([stage, *args(run_dir)])  # the same command, to completion
    n = assert_same_records(ref, path, id_sample)

    # a finished stage rerun does no new work and leaves its records as they are
    before = path.read_bytes()
    from hybridcot.generation.base import Generator
    from hybridcot.generation.hf import HFGenerator

    def refuse(*a, **kw):
        raise AssertionError(f"finished {stage} was rerun and generated again")

    with monkeypatch.context() as m:
        m.setattr(Generator, "generate", refuse)
        m.setattr(HFGenerator, "__init__", refuse)
        main_ok([stage, *args(run_dir)])
    assert path.read_bytes() == before
    return n


# ---------------------------------------------------------------- generation stages

def test_sample_kill_and_resume(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hybridcot sample`: K = 3 seeded samples (temperature 0.6) per problem, one problem per generate call."""
    def args(out: Path) -> list[str]:
        return [f"model={pico_model_dir}", "problems=world:train:40:seed=1", f"output={out}", "k=3",
                "max_tokens=24", "batch_size=1", "seed=7", "backend=hf"]

    n = _kill_resume_jsonl(tmp_path, "sample", args, "samples.jsonl", total=120, per_key=3, ready_at=6,
                           monkeypatch=monkeypatch)
    assert n == 120
    assert (tmp_path / "killed" / "metrics.json").is_file() and (tmp_path / "killed" / "sample_config.yaml").is_file()


def test_eval_kill_and_resume(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hybridcot eval`: greedy, n = 2 per problem (so a kill can land inside a problem)."""
    def args(out: Path) -> list[str]:
        return [f"model={pico_model_dir}", "problems=world:test:60:seed=0", f"output={out}", "n=2",
                "max_tokens=24", "batch_size=1", "n_boot=0", "backend=hf"]

    n = _kill_resume_jsonl(tmp_path, "eval", args, "samples.jsonl", total=120, per_key=2, ready_at=4,
                           monkeypatch=monkeypatch)
    assert n == 120
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert {k: v for k, v in got.items() if k != "timing"} == {k: v for k, v in ref.items() if k != "timing"}


def _chunks_file(path: Path, n: int) -> Path:
    rng = random.Random(0)
    recs = []
    for p in generate_problems(n, seed=5, levels=(1, 2)):
        th = write_long(p, rng)
        recs.append({"id": p.id, "problem": p.problem, "answer": p.answer, "level": p.level,
                     "thoughts": [{"text": t.text, "steps": [k, k + 1]} for k, t in enumerate(th)],
                     "gold": [{"kind": t.kind, "redundant": t.redundant} for t in th]})
    write_jsonl(path, recs)
    return path


def test_importance_kill_and_resume(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hybridcot importance`: seeded rollouts (temperature 1), one CoT per generate call and append."""
    chunks = _chunks_file(tmp_path / "chunks.jsonl", 30)

    def args(out: Path) -> list[str]:
        return [f"chunks={chunks}", f"model={pico_model_dir}", f"output={out}", "n=2", "temperature=1.0",
                "max_tokens=12", "chunk=1", "seed=3", "threads=1", "backend=hf"]

    n = _kill_resume_jsonl(tmp_path, "importance", args, "importance.jsonl", total=30, per_key=1, ready_at=3,
                           monkeypatch=monkeypatch)
    assert n == 30
    assert (json.loads((tmp_path / "killed" / "stats.json").read_text())
            == json.loads((tmp_path / "ref" / "stats.json").read_text()))


def test_collaborate_kill_and_resume(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hybridcot collaborate`: seeded dialogues (temperature 0.8), one problem's dialogues per chunk."""
    def args(out: Path) -> list[str]:
        return [f"long_model={pico_model_dir}", f"short_model={pico_model_dir}", "problems=world:test:40:seed=0",
                f"output={out}", "max_turns=4", "long_max_tokens=12", "short_max_tokens=8", "temperature=0.8",
                "seed=5", "batch_size=1", "n_boot=0", "threads=1", "backend=hf"]

    n = _kill_resume_jsonl(tmp_path, "collaborate", args, "dialogues.jsonl", total=40, per_key=1, ready_at=3,
                           monkeypatch=monkeypatch)
    assert n == 40
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert {k: v for k, v in got.items() if k != "timing"} == {k: v for k, v in ref.items() if k != "timing"}


# ---------------------------------------------------------------- a training stage (TRL checkpoints)

def _complete_checkpoints(trl: Path) -> list[int]:
    """Steps of the checkpoint folders TRL finished writing (trainer_state.json is written last). The
    state must parse, as `training.last_trl_checkpoint` requires: a kill while it is being written
    leaves the file there but torn (seen under load: the resume then rightly took the one before)."""
    import json

    def parses(p: Path) -> bool:
        try:
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return True

    if not trl.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in trl.glob("checkpoint-*") if parses(p))


def test_sft_kill_and_resume_from_trl_checkpoint(tmp_path: Path, pico_model_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from safetensors.torch import load_file

    from hybridcot.training import trl_dir

    rows = [{"prompt": chat_prompt(p.problem), "completion": [{"role": "assistant", "content": write_short(p)}]}
            for p in generate_problems(16, seed=3, levels=(1, 2))]
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, rows)
    steps = 24

    def args(out: Path) -> list[str]:
        return [f"model={pico_model_dir}", f"data={data}", f"output={out}", "learning_rate=1e-3",
                f"max_steps={steps}", "per_device_train_batch_size=2", "gradient_accumulation_steps=1",
                "warmup_ratio=0.0", "lr_scheduler_type=constant", "logging_steps=1", "save_steps=1",
                "save_total_limit=2", "max_length=256", "use_cpu=true", "seed=0"]

    ref, out = tmp_path / "ref" / "sft", tmp_path / "killed" / "sft"
    main_ok(["sft", *args(ref)])
    trl = trl_dir(out)

    def ready() -> bool:
        done = _complete_checkpoints(trl)
        return bool(done) and done[-1] >= 3 and not out.exists()

    run_and_kill(["sft", *args(out)], ready, tmp_path / "sft.log")
    assert not out.exists(), "the output must appear only when training is finished"
    done = _complete_checkpoints(trl)
    assert done and done[-1] < steps
    last = done[-1]
    with capsys.disabled():
        print(f"sft: killed after checkpoint-{last} of {steps} steps, torn checkpoint-{last + 1} "
              f"{'left by the kill' if (trl / f'checkpoint-{last + 1}').exists() else 'injected'}")
    # a kill while TRL writes the next checkpoint: weights half written, no optimizer or trainer state
    torn = trl / f"checkpoint-{last + 1}"
    if not torn.exists():
        torn.mkdir()
        weights = (trl / f"checkpoint-{last}" / "model.safetensors").read_bytes()
        (torn / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    capsys.readouterr()
    main_ok(["sft", *args(out)])
    assert f"resuming from {trl / f'checkpoint-{last}'}" in capsys.readouterr().out
    assert not trl.exists()  # dropped once the model is saved

    want, got = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), "resumed weights differ from the uninterrupted run"
    log_ref = json.loads((ref / "train_log.json").read_text())
    log_got = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log_got["log"]] == list(range(1, steps + 1))  # every step logged once
    assert [e["loss"] for e in log_got["log"]] == [e["loss"] for e in log_ref["log"]]
    assert json.loads((out / "hybridcot.json").read_text())["steps"] == steps

    # a finished output is skipped: nothing is trained or rewritten
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    main_ok(["sft", *args(out)])
    assert "finished run; skipping" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    # ... only for the config that made it: a changed training key is refused in one line, untouched
    assert cli.main(["sft", *args(out), "learning_rate=5e-4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "learning_rate=0.001" in err[0] and "force=true" in err[0], err
    main_ok(["sft", *args(out), "logging_steps=3"])  # logging keys do not change the model
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
