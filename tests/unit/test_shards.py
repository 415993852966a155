"""Sharded stages (`shard=i/n`) and `hybridcot merge-shards`: sharded + merged == unsharded, and the merge
refuses gaps, duplicates, missing shards and differing configs with one line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from hybridcot import cli
from hybridcot.evaluation.stage import EvalConfig, run_eval
from hybridcot.io import HybridcotError, read_json, read_jsonl, write_jsonl
from hybridcot.shards import Shard, in_shard, merge_shards, parse_shard, shard_of

PROBLEMS = "world:test:6:seed=0"


def _run_cli(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def _eval(model: Path, out: Path, **kw) -> dict:
    # batch_size=1: every generate call holds one problem's n rows, sharded or not, so the hf
    # backend's batches (and their float rounding) are the same in both runs
    cfg = {"model": str(model), "problems": PROBLEMS, "output": str(out), "backend": "hf", "n": 2,
           "temperature": 0.8, "top_p": 0.95, "max_tokens": 6, "batch_size": 1, "n_boot": 50, **kw}
    return run_eval(EvalConfig(**cfg))


def _no_timing(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("timing", "shard")}


# ---- the split ----

def test_parse_shard():
    assert parse_shard("1/4") == Shard(1, 4) and str(parse_shard(" 0 / 2 ")) == "0/2"
    assert parse_shard(None) is None and parse_shard("") is None
    for bad in ("4/4", "-1/2", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    with pytest.raises(ValueError, match="shard"):
        EvalConfig(model="m", problems="p", output="o", shard="2/2")


def test_shard_of_is_a_stable_partition():
    ids = [f"world-test-{i}" for i in range(200)]
    # SHA-256, not Python's salted hash(): the same in every process and on every machine
    want = int.from_bytes(hashlib.sha256(b"world-test-7").digest()[:8], "big") % 3
    assert shard_of("world-test-7", 3) == want
    for n in (1, 2, 3, 7):
        owners = [[i for i in range(n) if in_shard(pid, Shard(i, n))] for pid in ids]
        assert all(len(o) == 1 for o in owners)  # every id in exactly one shard
        if n > 1:
            assert len({o[0] for o in owners}) == n  # and no shard left empty on 200 ids


# ---- eval and sample: sharded + merged == unsharded ----

@pytest.fixture(scope="module")
def unsharded_eval(tmp_path_factory, pico_model_dir) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval") / "whole"
    return out, _eval(pico_model_dir, out)


def test_eval_sharded_and_merged_equals_unsharded(tmp_path, pico_model_dir, unsharded_eval):
    whole, m_whole = unsharded_eval
    out = tmp_path / "sharded"
    parts = [_eval(pico_model_dir, out, shard=f"{i}/2") for i in range(2)]
    assert sum(p["n_problems"] for p in parts) == 6 and all(p["n_problems"] > 0 for p in parts)
    for i in range(2):  # each shard is a complete eval folder of its own
        folder = out / f"shard-{i}-of-2"
        assert {"samples.jsonl", "metrics.json", "config.yaml"} <= {p.name for p in folder.iterdir()}
        assert yaml.safe_load((folder / "config.yaml").read_text())["shard"] == f"{i}/2"
        assert all(shard_of(r["id"], 2) == i for r in read_jsonl(folder / "samples.jsonl"))
    merged = merge_shards(out)
    assert merged == out / "samples.jsonl"
    assert read_jsonl(merged) == read_jsonl(whole / "samples.jsonl")  # same records, same order
    assert _no_timing(read_json(out / "metrics.json")) == _no_timing(m_whole)
    assert yaml.safe_load((out / "config.yaml").read_text())["shard"] is None
    assert not list(out.glob(".*.tmp"))  # written through a temp file, renamed
    # merging again is a no-op rewrite; rerunning the merged folder generates nothing
    merge_shards(out)
    assert read_jsonl(merged) == read_jsonl(whole / "samples.jsonl")


def test_sample_stage_via_cli_with_dash_dash_shard(tmp_path, pico_model_dir):
    common = ["sample", f"model={pico_model_dir}", f"problems={PROBLEMS}", "k=2", "max_tokens=5",
              "backend=hf", "batch_size=1"]
    assert _run_cli([*common, f"output={tmp_path / 'whole'}"]) == 0
    # --shard may stand anywhere among the key=value words
    assert _run_cli([*common[:2], "--shard", "0/2", *common[2:], f"output={tmp_path / 'parts'}"]) == 0
    assert _run_cli([*common, f"output={tmp_path / 'parts'}", "shard=1/2"]) == 0
    assert (tmp_path / "parts" / "shard-0-of-2" / "sample_config.yaml").exists()
    assert _run_cli(["merge-shards", f"output={tmp_path / 'parts'}"]) == 0
    assert read_jsonl(tmp_path / "parts" / "samples.jsonl") == read_jsonl(tmp_path / "whole" / "samples.jsonl")
    sc = yaml.safe_load((tmp_path / "parts" / "sample_config.yaml").read_text())
    assert sc["shard"] is None and sc["k"] == 2
    assert read_json(tmp_path / "parts" / "metrics.json")["n_samples"] == 12


# ---- refusals ----

@pytest.fixture
def two_shards(tmp_path, pico_model_dir, unsharded_eval) -> Path:
    """A finished 2-way sharded eval (copied from one made once per module)."""
    src = unsharded_eval[0].parent / "two_shards"
    if not src.exists():
        for i in range(2):
            _eval(pico_model_dir, src, shard=f"{i}/2")
    out = tmp_path / "two"
    shutil.copytree(src, out)
    return out


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_merge_refuses_a_gap(two_shards):
    part = two_shards / "shard-1-of-2" / "samples.jsonl"
    recs = read_jsonl(part)
    last = recs[-1]["id"]
    write_jsonl(part, [r for r in recs if r["id"] != last])  # a problem that never got written
    with pytest.raises(HybridcotError, match="gap") as e:
        merge_shards(two_shards)
    assert repr(last) in _one_line(e) and "shard-1-of-2" in str(e.value)
    assert not (two_shards / "samples.jsonl").exists()  # nothing written
    write_jsonl(part, recs[:-1])  # a kill between two samples of one problem: also a gap
    with pytest.raises(HybridcotError, match="gap: .* has 1 of 2 samples"):
        merge_shards(two_shards)


def test_merge_refuses_a_duplicate(two_shards):
    a, b = (two_shards / f"shard-{i}-of-2" / "samples.jsonl" for i in range(2))
    stray = read_jsonl(a)[0]
    with open(b, "a", encoding="utf-8") as f:  # a problem of shard 0 also in shard 1
        f.write(json.dumps(stray) + "\n")
    with pytest.raises(HybridcotError, match="duplicate: problem .* is in shard-0-of-2 and shard-1-of-2") as e:
        merge_shards(two_shards)
    _one_line(e)
    write_jsonl(b, read_jsonl(b)[:-1])
    with open(a, "a", encoding="utf-8") as f:  # the same sample twice in one shard
        f.write(json.dumps(stray) + "\n")
    with pytest.raises(HybridcotError, match="duplicate: .* appears twice"):
        merge_shards(two_shards)


def test_merge_refuses_differing_configs_and_missing_shards(two_shards):
    cfg_path = two_shards / "shard-1-of-2" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg_path.write_text(yaml.safe_dump({**cfg, "seed": 7}))
    with pytest.raises(HybridcotError, match="shards differ: shard-0-of-2 has seed=0, shard-1-of-2 has seed=7") as e:
        merge_shards(two_shards)
    _one_line(e)
    cfg_path.write_text(yaml.safe_dump({**cfg, "backend": "vllm", "urls": "x:1"}))  # deployment keys may differ
    merge_shards(two_shards)
    shutil.rmtree(two_shards / "shard-1-of-2")
    with pytest.raises(HybridcotError, match="shard 1/2 is missing"):
        merge_shards(two_shards)
    with pytest.raises(HybridcotError, match="no shards found"):
        merge_shards(two_shards / "nowhere")


def test_cli_merge_error_is_one_line(two_shards, capsys):
    shutil.rmtree(two_shards / "shard-0-of-2")
    assert _run_cli(["merge-shards", f"output={two_shards}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hybridcot merge-shards: error:") and "\n" not in err


# ---- generate (one output file), importance and collaborate ----

def test_generate_sharded_with_an_empty_shard(tmp_path, pico_model_dir):
    from hybridcot.generation.stage import GenerateConfig, run_generate

    def run(output, shard=None):
        return run_generate(GenerateConfig(model=str(pico_model_dir), problems="world:test:3:seed=0",
                                           output=str(output), backend="hf", n=2, temperature=0.7,
                                           max_tokens=5, chunk=1, shard=shard))

    whole = run(tmp_path / "whole.jsonl")
    n = 5  # 3 problems in 5 shards: some shards are empty
    paths = [run(tmp_path / "parts.jsonl", f"{i}/{n}") for i in range(n)]
    assert [p.name for p in paths] == [f"parts.jsonl.shard-{i}-of-{n}" for i in range(n)]
    assert any(p.stat().st_size == 0 for p in paths)
    merged = merge_shards(tmp_path / "parts.jsonl")
    assert merged == tmp_path / "parts.jsonl"
    assert read_jsonl(merged) == read_jsonl(whole)
    assert yaml.safe_load((tmp_path / "parts.jsonl.config.yaml").read_text())["shard"] is None


def test_importance_sharded_keeps_a_problems_cots_together(tmp_path):
    from hybridcot.longshort.importance import CallableGenerator, ImportanceConfig, run_importance

    chunks = tmp_path / "chunks.jsonl"
    recs = [{"id": f"p{i}", "sample": j, "problem": f"What is {i}+{j}?", "answer": str(i + j), "level": 1,
             "thoughts": [{"text": f"first {i}"}, {"text": f"then \\boxed{{{i + j}}}"}]}
            for i in range(5) for j in range(2)]
    write_jsonl(chunks, recs)

    def fn(prompts, n):  # deterministic: right when the prompt already holds the answer
        return [[f"so \\boxed{{{len(str(p)) % 3}}}" for _ in range(n)] for p in prompts]

    def run(out, shard=None):
        return run_importance(ImportanceConfig(chunks=str(chunks), model="fake", output=str(out), n=2,
                                               shard=shard), generator=CallableGenerator(fn))

    whole = run(tmp_path / "whole")
    for i in range(3):
        run(tmp_path / "parts", f"{i}/3")
        part = read_jsonl(tmp_path / "parts" / f"shard-{i}-of-3" / "importance.jsonl")
        assert all(shard_of(r["id"], 3) == i for r in part)
    merge_shards(tmp_path / "parts")
    assert read_jsonl(tmp_path / "parts" / "importance.jsonl") == read_jsonl(tmp_path / "whole" / "importance.jsonl")
    assert read_json(tmp_path / "parts" / "stats.json") == whole


def test_collaborate_sharded(tmp_path, monkeypatch):
    import hybridcot.longshort.collaborate as collab
    from hybridcot.longshort.importance import CallableGenerator

    def fn(prompts, n):  # a long turn, then a final short answer
        return [[f"<answer>\\boxed{{{len(str(p)) % 7}}}</answer>" if "short" in str(p).lower()
                 else "thinking about it" for _ in range(n)] for p in prompts]

    gen = CallableGenerator(fn)
    monkeypatch.setattr(collab, "_open_generators", lambda cfg: (gen, gen))

    def run(out, shard=None):
        return collab.run_collaborate(collab.CollaborateConfig(
            long_model="L", short_model="S", problems="world:test:5:seed=1", output=str(out), max_turns=4,
            n=2, temperature=0.5, n_boot=20, shard=shard))

    whole = run(tmp_path / "whole")
    for i in range(2):
        run(tmp_path / "parts", f"{i}/2")
    merge_shards(tmp_path / "parts", stage="collaborate")
    assert read_jsonl(tmp_path / "parts" / "dialogues.jsonl") == read_jsonl(tmp_path / "whole" / "dialogues.jsonl")
    assert _no_timing(read_json(tmp_path / "parts" / "metrics.json")) == _no_timing(whole)
