"""The eval stage for real: a random-weight pico model on world problems, kill-free resume checks,
and (fast) the generate-grade-append loop with a scripted generator."""

from __future__ import annotations

import json

import pytest

from hybridcot.cli import main
from hybridcot.evaluation.stage import EvalConfig, load_done, run_eval, score_samples
from hybridcot.generation import Sample
from hybridcot.io import HybridcotError, read_json, read_jsonl, write_jsonl

METRIC_KEYS = {"name", "model", "problems", "sampling", "accuracy", "accuracy_ci", "mean_tokens", "mean_chars",
               "thinking_ratio", "truncated", "n_problems", "n_samples", "per_level", "timing"}
RECORD_KEYS = {"id", "level", "sample", "text", "n_tokens", "n_chars", "extracted", "correct", "finish_reason",
               "thinking", "model"}


def test_run_eval_pico_and_resume(pico_model_dir, tmp_path):
    out = tmp_path / "eval"
    cfg = EvalConfig(model=str(pico_model_dir), problems="world:test:8:seed=0", output=str(out), backend="hf",
                     max_tokens=16, n_boot=100)
    m = run_eval(cfg)
    assert METRIC_KEYS <= set(m)
    assert m["name"] == pico_model_dir.name
    assert m["n_problems"] == 8 and m["n_samples"] == 8
    assert 0 < m["mean_tokens"] <= 16
    assert m["timing"]["problems_generated"] == 8 and m["timing"]["generated_tokens"] > 0
    assert read_json(out / "metrics.json") == json.loads(json.dumps(m))
    assert (out / "config.yaml").exists()
    samples = out / "samples.jsonl"
    lines = samples.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 8 and len({r["id"] for r in recs}) == 8
    assert RECORD_KEYS <= set(recs[0])
    assert all(1 <= r["n_tokens"] <= 16 and r["n_chars"] == len(r["text"]) for r in recs)
    assert sum(r["finish_reason"] == "length" for r in recs) / 8 == pytest.approx(m["truncated"])

    # A finished run regenerates nothing.
    before = samples.read_bytes()
    m2 = run_eval(cfg)
    assert samples.read_bytes() == before
    assert m2["timing"]["problems_generated"] == 0 and m2["accuracy"] == m["accuracy"]

    # A kill mid-write: last record lost and half a line left behind.
    samples.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    m3 = run_eval(cfg)
    recs3 = read_jsonl(samples)
    assert [r["id"] for r in recs3] == [r["id"] for r in recs]
    assert m3["timing"]["problems_generated"] == 1 and m3["n_problems"] == 8
    # Greedy generation does not depend on the batch, so the redone problem matches.
    assert recs3[-1]["text"] == recs[-1]["text"]


class ScriptedGenerator:
    """Answers problem k with the right boxed answer when k is even, a wrong one when odd."""

    def __init__(self, calls: list):
        self.calls = calls
        self.tokenizer = None

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        out = []
        for msgs in prompts:
            text = msgs[-1]["content"]
            k = int(text.split("#")[1].split()[0])
            ans = k * 10 if k % 2 == 0 else -1
            body = "Wait, let me recheck. " if k == 0 else ""
            out.append([Sample(text=f"{body}So \\boxed{{{ans}}}", token_ids=[1] * (k + 1), n_tokens=k + 1,
                               finish_reason="stop") for _ in range(params.n)])
        return out

    def close(self):
        pass


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    calls: list[int] = []
    monkeypatch.setattr("hybridcot.generation.load_generator", lambda *a, **kw: ScriptedGenerator(calls))
    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, [{"id": f"q{k}", "problem": f"Problem #{k} here.", "answer": str(k * 10),
                            "level": 1 + k % 2} for k in range(5)])
    return problems, calls


def test_eval_loop_grades_and_chunks(scripted, tmp_path):
    problems, calls = scripted
    cfg = EvalConfig(model="m/sys", problems=str(problems), output=str(tmp_path / "o"), n=2, batch_size=2, n_boot=50)
    m = run_eval(cfg)
    assert calls == [2, 2, 1]
    assert m["name"] == "sys"
    assert m["accuracy"] == pytest.approx(3 / 5)  # q0, q2, q4 right
    assert m["per_level"]["1"]["accuracy"] == 1.0 and m["per_level"]["2"]["accuracy"] == 0.0
    assert m["thinking_ratio"] == pytest.approx(2 / 10)  # both samples of q0
    assert m["mean_tokens"] == pytest.approx((1 + 2 + 3 + 4 + 5) / 5)
    recs = read_jsonl(tmp_path / "o" / "samples.jsonl")
    assert [(r["id"], r["sample"]) for r in recs[:3]] == [("q0", 0), ("q0", 1), ("q1", 0)]
    assert recs[0]["extracted"] is not None and recs[0]["correct"] is True and recs[2]["correct"] is False


def test_eval_resume_drops_partial_problem(scripted, tmp_path):
    problems, calls = scripted
    out = tmp_path / "o"
    cfg = EvalConfig(model="m/sys", problems=str(problems), output=str(out), n=2, batch_size=8, n_boot=0)
    run_eval(cfg)
    recs = read_jsonl(out / "samples.jsonl")
    # Keep q0..q2 whole and only the first sample of q3: q3 and q4 must be redone, without duplicates.
    write_jsonl(out / "samples.jsonl", recs[:7])
    assert sorted(load_done(out / "samples.jsonl", 2)) == ["q0", "q1", "q2"]
    assert len(read_jsonl(out / "samples.jsonl")) == 6  # the partial problem was cut away
    calls.clear()
    m = run_eval(cfg)
    assert calls == [2]
    recs2 = read_jsonl(out / "samples.jsonl")
    assert len(recs2) == 10 and len({(r["id"], r["sample"]) for r in recs2}) == 10
    assert m["accuracy_ci"] is None and m["timing"]["problems_resumed"] == 3


def test_eval_refuses_to_mix_settings(scripted, tmp_path):
    problems, _ = scripted
    out = str(tmp_path / "o")
    run_eval(EvalConfig(model="m/sys", problems=str(problems), output=out, n_boot=0))
    with pytest.raises(HybridcotError, match="max_tokens=1024"):
        run_eval(EvalConfig(model="m/sys", problems=str(problems), output=out, max_tokens=8))
    # limit and name do not change what the samples are.
    m = run_eval(EvalConfig(model="m/sys", problems=str(problems), output=out, limit=2, name="x", n_boot=0))
    assert m["n_problems"] == 2 and m["timing"]["problems_generated"] == 0


def test_score_samples_accepts_dicts():
    recs = score_samples([{"id": 7, "answer": "4", "level": None}], [[{"text": "\\boxed{4}", "n_tokens": 3}]],
                         extra={"style": "short"})
    assert recs[0]["id"] == "7" and recs[0]["correct"] is True and recs[0]["style"] == "short"
    assert recs[0]["n_tokens"] == 3 and recs[0]["finish_reason"] == "stop"
    with pytest.raises(HybridcotError):
        score_samples([{"id": 1, "answer": "1"}], [])


def test_eval_config_validation():
    with pytest.raises(ValueError, match="model is required"):
        EvalConfig(problems="p", output="o")
    with pytest.raises(ValueError, match="top_p"):
        EvalConfig(model="m", problems="p", output="o", top_p=0)
    with pytest.raises(ValueError, match="backend"):
        EvalConfig(model="m", problems="p", output="o", backend="tgi")


def test_eval_cli_help_and_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    assert "max_tokens (int" in capsys.readouterr().out
    assert main(["eval", "model=m", "problems=p", f"output={tmp_path}", "n=0"]) == 2
    assert "n must be >= 1" in capsys.readouterr().err
