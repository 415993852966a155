"""The bad-input corpus (tests/data/bad/cases.yaml): every case through the real CLI.

An error case must exit 2 with one last stderr line `hybridcot <stage>: error: ...` holding the
manifest's substrings (file, line, field), no traceback (one with --debug), and leave the files of
an existing partial run byte-identical. An `ok` case (an input a stage should take, e.g. a gold
answer the grader cannot read) must exit 0 and write the records the manifest describes. Most cases
run in-process through `hybridcot.cli.main`; those marked `subprocess` run `python -m hybridcot.cli`
to prove the real exit status. Big or binary inputs and the broken model folders are made here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hybridcot import cli
from hybridcot.io import HybridcotError

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CASES = yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))["cases"]


# ---------------------------------------------------------------- inputs made at runtime


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs not worth committing: a non-UTF-8 byte, a line over the 10 MiB record limit."""
    d = tmp_path_factory.mktemp("bad_gen")
    ok = json.dumps({"id": "p1", "problem": "What is 1+1?", "answer": "2"}).encode()
    (d / "non_utf8.jsonl").write_bytes(ok + b'\n{"id": "p2", "problem": "caf\xe9?", "answer": "4"}\n')
    big = json.dumps({"id": "p2", "problem": "x" * (10 * 2**20 + 16), "answer": "4"}).encode()
    (d / "line_10mb.jsonl").write_bytes(ok + b"\n" + big + b"\n")
    row = json.dumps({"prompt": "What is 1+1?", "completion": "2"}).encode()
    (d / "sft_non_utf8.jsonl").write_bytes(row + b'\n{"prompt": "caf\xe9?", "completion": "4"}\n')
    return d


def save_sharded(src: Path, dst: Path) -> None:
    """A copy of checkpoint `src` with its weights in several safetensors shards."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src)
    model.save_pretrained(dst, max_shard_size="100KB")
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("model") and not (dst / f.name).exists():
            shutil.copy2(f, dst / f.name)
    assert len(list(dst.glob("model-*.safetensors"))) >= 3


def break_model(d: Path, how: str) -> None:
    """Turn checkpoint folder `d` into a pickle-only one, or delete its second shard."""
    if how == "missing_shard":
        shard = sorted(d.glob("model-*.safetensors"))[1]
        shard.unlink()
    elif how == "pickle_only":
        import torch
        from safetensors.torch import load_file

        state: dict = {}
        for f in sorted(d.glob("*.safetensors")):
            state.update(load_file(f))
            f.unlink()
        (d / "model.safetensors.index.json").unlink(missing_ok=True)
        torch.save(state, d / "pytorch_model.bin")
    else:
        raise ValueError(how)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, pico_model_dir: Path) -> Path:
    """Variants of the pico model: pickle_only, missing_shard, other_shapes, other_tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from conftest import world_texts
    from hybridcot.data.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("bad_models")
    shutil.copytree(pico_model_dir, d / "pickle_only")
    break_model(d / "pickle_only", "pickle_only")
    save_sharded(pico_model_dir, d / "missing_shard")
    break_model(d / "missing_shard", "missing_shard")
    model = AutoModelForCausalLM.from_pretrained(pico_model_dir)
    tok = AutoTokenizer.from_pretrained(pico_model_dir)
    torch.manual_seed(1)
    other = Qwen2ForCausalLM(Qwen2Config(**{**model.config.to_dict(), "intermediate_size": 96}))
    other.generation_config = model.generation_config
    other.save_pretrained(d / "other_shapes")
    tok.save_pretrained(d / "other_shapes")
    other_tok = train_tokenizer(world_texts(150, seed=7), vocab_size=len(tok))
    assert len(other_tok) == len(tok) and other_tok.get_vocab() != tok.get_vocab()
    model.save_pretrained(d / "other_tokenizer")
    other_tok.save_pretrained(d / "other_tokenizer")
    return d


@pytest.fixture(scope="session")
def partial_eval(tmp_path_factory: pytest.TempPathFactory, pico_model_dir: Path) -> Path:
    """model/ (a sharded pico copy) and out/ (an eval of it on problems/ok.jsonl, 1 of 2 problems done)."""
    d = tmp_path_factory.mktemp("partial_eval")
    save_sharded(pico_model_dir, d / "model")
    rc = cli.main(["eval", f"model={d / 'model'}", f"problems={BAD / 'problems' / 'ok.jsonl'}",
                   f"output={d / 'out'}", "backend=hf", "max_tokens=4", "limit=1"])
    assert rc == 0
    assert len((d / "out" / "samples.jsonl").read_text().splitlines()) == 1
    return d


# ---------------------------------------------------------------- running a case


class ScriptedGenerator:
    """Canned responses in place of a model: problem i gets responses[i % len] (each of its n samples)."""

    backend = "scripted"

    def __init__(self, responses: list[str]):
        self.responses = responses
        self.calls = 0

    def generate(self, prompts, params):
        from hybridcot.generation import Sample

        out = []
        for _ in prompts:
            text = self.responses[self.calls % len(self.responses)]
            self.calls += 1
            out.append([Sample(text=text, n_tokens=len(text.split()), finish_reason="stop")] * params.n)
        return out

    def close(self) -> None:
        pass


def fill(arg: str, where: dict[str, Path]) -> str:
    for key, path in where.items():
        arg = arg.replace("{" + key + "}", str(path))
    assert "{" not in arg or "\\" in arg, f"unfilled placeholder in {arg!r}"
    return arg


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def run_subprocess(argv: list[str]) -> tuple[int, str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDCOT_THREADS": "1"}
    env.pop("HYBRIDCOT_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "hybridcot.cli", *argv], capture_output=True, text=True,
                       timeout=300, env=env)
    return r.returncode, r.stdout, r.stderr


def snapshot(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in names}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(case: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   request: pytest.FixtureRequest) -> None:
    monkeypatch.delenv("HYBRIDCOT_DEBUG", raising=False)
    where = {"case": BAD, "tmp": tmp_path}
    text = " ".join(case["args"])
    if "{pico}" in text:
        where["pico"] = request.getfixturevalue("pico_model_dir")
    if "{models}" in text:
        where["models"] = request.getfixturevalue("models_dir")
    if "{gen}" in text:
        where["gen"] = request.getfixturevalue("gen_dir")
    kept: dict[str, bytes] = {}
    if case.get("existing") == "eval":
        src = request.getfixturevalue("partial_eval")
        shutil.copytree(src / "model", tmp_path / "model")
        shutil.copytree(src / "out", tmp_path / "out")
        cfg = tmp_path / "out" / "config.yaml"  # the run was made with this case's model folder
        cfg.write_text(cfg.read_text(encoding="utf-8").replace(str(src), str(tmp_path)), encoding="utf-8")
        if case.get("break_model"):
            break_model(tmp_path / "model", case["break_model"])
        kept = snapshot(tmp_path / "out", case["keep"])
    if case.get("generator") == "scripted":
        import hybridcot.generation as generation

        monkeypatch.setattr(generation, "load_generator", lambda *a, **kw: ScriptedGenerator(case["responses"]))
    argv = [fill(a, where) for a in case["args"]]
    stage = argv[0]

    t0 = time.time()
    rc, out, err = run_subprocess(argv) if case.get("subprocess") else run_in_process(argv, capsys)
    seconds = time.time() - t0

    assert "Traceback" not in out + err, err[-3000:]
    if "ok" in case:
        assert rc == 0, err[-3000:]
        check = case["ok"]
        if "max_seconds" in check:
            assert seconds < check["max_seconds"], f"took {seconds:.1f}s"
        spec = check.get("records")
        if spec:
            lines = (tmp_path / spec["file"]).read_text(encoding="utf-8").splitlines()
            records = [json.loads(x) for x in lines if x.strip()]
            assert len(records) == spec["count"]
            for r in records:
                for key, allowed in spec.get("fields", {}).items():
                    assert r[key] in allowed, f"{key}={r[key]!r} not in {allowed}"
        return

    assert rc == 2, (rc, err[-3000:])
    last = err.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert last.startswith(f"hybridcot {stage}: error: "), err[-3000:]
    for s in case["error"]:
        assert fill(s, where) in last, f"{s!r} not in: {last}"
    assert len(last) < 600, "an error line should be one readable line"
    if kept:
        assert snapshot(tmp_path / "out", case["keep"]) == kept, "the existing run's files changed"

    # --debug: the same error, now with its traceback
    if case.get("subprocess"):
        rc, out, err = run_subprocess([*argv, "--debug"])
        assert rc != 0 and "Traceback" in err and "HybridcotError" in err
    else:
        with pytest.raises(HybridcotError) as e:
            cli.main([*argv, "--debug"])
        assert all(fill(s, where) in str(e.value) for s in case["error"])
        assert e.value.__traceback__ is not None
        capsys.readouterr()
    if kept:
        assert snapshot(tmp_path / "out", case["keep"]) == kept, "the existing run's files changed (--debug)"


def test_manifest_is_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for c in CASES:
        assert c["args"][0] in {n.split()[0] for n in cli.STAGES}, c["id"]
        assert ("error" in c) != ("ok" in c), f"{c['id']}: give exactly one of error / ok"
        if c.get("existing"):
            assert c.get("keep"), f"{c['id']}: an existing run needs `keep`"
        for a in c["args"]:
            for name in ("{case}/",):
                if name in a:
                    path = a.split("=", 1)[-1].replace("{case}", str(BAD))
                    assert Path(path).exists() or "no_such" in path, f"{c['id']}: {path} missing"
