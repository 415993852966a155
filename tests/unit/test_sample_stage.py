"""`hybridcot sample`: K graded responses per problem with style, through the eval stage; resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import hybridcot.generation as generation
from hybridcot.adar1.pairs import load_samples
from hybridcot.adar1.sample import SampleConfig, run_sample
from hybridcot.io import read_jsonl, write_jsonl

FIELDS = {"id", "level", "sample", "text", "n_tokens", "n_chars", "extracted", "gold", "correct", "reason",
          "finish_reason", "thinking", "style", "model"}


def _cfg(model: Path, out: Path, **kw) -> SampleConfig:
    return SampleConfig(model=str(model), problems="world:test:4:seed=0", output=str(out), k=3, max_tokens=8,
                        backend="hf", **kw)


def test_paper_defaults() -> None:
    cfg = SampleConfig(model="m", problems="p", output="o")
    assert (cfg.k, cfg.temperature, cfg.top_p) == (12, 0.6, 0.95)
    e = cfg.eval_config()
    assert (e.n, e.temperature, e.top_p, e.name) == (12, 0.6, 0.95, "m")
    with pytest.raises(ValueError, match="k must be >= 1"):
        SampleConfig(model="m", problems="p", output="o", k=0)
    with pytest.raises(ValueError, match="top_p"):  # checked by the eval config it builds
        SampleConfig(model="m", problems="p", output="o", top_p=0)


def test_sample_records_and_resume(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "long"
    metrics = run_sample(_cfg(pico_model_dir, out, name="long"))
    recs = read_jsonl(out / "samples.jsonl")
    assert len(recs) == 12
    assert all(FIELDS <= set(r) for r in recs)
    assert [(r["sample"]) for r in recs] == [0, 1, 2] * 4
    assert len({r["id"] for r in recs}) == 4
    assert all(r["style"] in ("long", "short") and r["model"] == "long" for r in recs)
    assert all(isinstance(r["correct"], bool) and 0 < r["n_tokens"] <= 8 for r in recs)
    assert len({r["text"] for r in recs}) > 1  # sampled at temperature 0.6, not 12 copies of one answer
    assert metrics["samples_per_problem"] == 3 and metrics["n_samples"] == 12
    assert sum(metrics["style_share"].values()) == pytest.approx(1.0)
    assert all("style_share" in b for b in metrics["per_level"].values())
    assert json.loads((out / "metrics.json").read_text())["timing"]["problems_generated"] == 4
    assert yaml.safe_load((out / "sample_config.yaml").read_text())["k"] == 3
    assert yaml.safe_load((out / "config.yaml").read_text())["n"] == 3
    # the pairs stage reads it as is: 4 problems x 3 graded responses
    assert {pid: len(rs) for pid, rs in load_samples(out).items()} == {r["id"]: 3 for r in recs}

    # resume: a finished folder generates nothing (a generator would fail here) ...
    def no_generator(*a, **kw):
        raise AssertionError("regenerated a finished run")

    monkeypatch.setattr(generation, "load_generator", no_generator)
    again = run_sample(_cfg(pico_model_dir, out, name="long"))
    assert again["timing"]["problems_generated"] == 0 and again["accuracy"] == metrics["accuracy"]
    assert read_jsonl(out / "samples.jsonl") == recs
    monkeypatch.undo()

    # ... and a run killed inside the last problem redoes only that problem, drawing the same samples
    write_jsonl(out / "samples.jsonl", recs[:10])
    resumed = run_sample(_cfg(pico_model_dir, out, name="long"))
    assert resumed["timing"]["problems_generated"] == 1
    assert read_jsonl(out / "samples.jsonl") == recs


def test_sample_refuses_to_resume_with_other_settings(tmp_path: Path, pico_model_dir: Path) -> None:
    from hybridcot.io import HybridcotError

    out = tmp_path / "s"
    run_sample(_cfg(pico_model_dir, out, limit=1))
    with pytest.raises(HybridcotError, match="temperature=0.6"):
        run_sample(_cfg(pico_model_dir, out, limit=1, temperature=1.0))
