"""`hybridcot longshort` end to end on recipes/tiny/longshort_smoke.yaml: world build, chunk,
importance, dialogues, two SFTs, two collaborative evals, two RL rounds, summary rows and report,
all into a temp folder; then a rerun that skips everything and rewrites nothing, and a changed
recipe that is refused.

    pytest -q -m slow tests/integration/test_longshort_pipeline.py     # about 1.5 min on one CPU thread
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hybridcot import cli
from hybridcot.adar1.steps import read_yaml
from hybridcot.io import HybridcotError, read_json
from hybridcot.longshort.pipeline import SYSTEMS, LongShortConfig, run_longshort
from hybridcot.longshort.protocol import Turn, check_dialogue
from hybridcot.recipes import load_recipe

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "tiny" / "longshort_smoke.yaml"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("longshort_chain")
    overrides = [f"world.output={root / 'world'}", f"output={root / 'ls'}", f"summary={root / 'summary.json'}"]
    result = run_longshort(load_recipe(LongShortConfig, SMOKE, overrides))
    return {"root": root, "out": root / "ls", "overrides": overrides, "result": result}


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_data_stages_chain_up(chain: dict) -> None:
    out = chain["out"]
    chunks = _jsonl(out / "chunks" / "chunks.jsonl")
    assert len(chunks) == 10 and all(c["gold"] for c in chunks)  # the writer's thoughts, with their marks
    imp = _jsonl(out / "importance" / "importance.jsonl")
    assert [r["id"] for r in imp] == [c["id"] for c in chunks]
    for r in imp:
        n = len(r["thoughts"])
        assert len(r["acc"]) == n + 1 and len(r["s"]) == n and r["cost"]["generated_tokens"] > 0
    dialogues = _jsonl(out / "dialogues" / "dialogues.jsonl")
    assert len(dialogues) == 10
    for d in dialogues:
        assert check_dialogue([Turn.from_record(t) for t in d["turns"]]) is None
    for role in ("long", "short"):
        rows = _jsonl(out / "dialogues" / f"sft_{role}.jsonl")
        assert rows and all(r["completion"][0]["role"] == "assistant" for r in rows)
        tag = "<think>" if role == "long" else "<answer>"
        assert all(r["completion"][0]["content"].startswith(tag) for r in rows)  # own turns only


def test_thinkers_and_rl_rounds_are_checkpoints(chain: dict) -> None:
    out = chain["out"]
    for role in ("long", "short"):
        assert (out / "models" / f"{role}_thinker" / "model.safetensors").is_file()
        assert (out / "rl" / role / "model.safetensors").is_file()
    final = read_json(out / "rl" / "final.json")
    assert set(final) >= {"long", "short"}
    logs = [read_json(p / "train_log.json") for p in (out / "rl").glob("round-*") if p.is_dir()]
    assert len(logs) == 2 and all(any("loss" in e for e in lg["log"]) for lg in logs)


def test_collaborative_evals_and_summary_rows(chain: dict) -> None:
    out = chain["out"]
    rows = {r["name"]: r for r in read_json(chain["root"] / "summary.json")}
    assert set(rows) == {"long", "short", *SYSTEMS}
    for name in SYSTEMS:
        m = read_json(out / "eval" / name / "metrics.json")
        assert m["n_problems"] == 20
        recs = _jsonl(out / "eval" / name / "dialogues.jsonl")
        long_t = sum(r["long_tokens"] for r in recs)
        short_t = sum(r["short_tokens"] for r in recs)
        assert m["short_thinker_token_share"] == pytest.approx(short_t / (long_t + short_t))
        assert rows[name]["short_thinker_token_share"] == pytest.approx(m["short_thinker_token_share"])
        assert rows[name]["mean_turns"] == pytest.approx(m["mean_turns"]) and m["mean_turns"] >= 1
    for f in ("report.md", "report.json", "tokens_by_thinker.png", "transcripts.md"):
        assert (out / "report" / f).stat().st_size > 0


def test_rerun_skips_everything_and_rewrites_nothing(chain: dict, capsys: pytest.CaptureFixture[str]) -> None:
    before = _files(chain["root"])
    t0 = time.time()
    assert cli.main(["longshort", "--recipe", str(SMOKE), *chain["overrides"]]) == 0
    assert time.time() - t0 < 30
    assert "steps ran (everything was already done)" in capsys.readouterr().out
    assert _files(chain["root"]) == before


def test_a_changed_recipe_is_refused_not_mixed(chain: dict) -> None:
    before = _files(chain["root"])
    cfg = load_recipe(LongShortConfig, SMOKE, [*chain["overrides"], "importance.delta=0.5"])
    with pytest.raises(HybridcotError) as e:
        run_longshort(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "importance" in msg and "delta" in msg
    assert _files(chain["root"]) == before


def test_importance_from_another_run_skips_chunk_and_scoring(chain: dict) -> None:
    before = _files(chain["out"])
    out = chain["root"] / "tau"
    imp = chain["out"] / "importance"
    args = [f"world.output={chain['root'] / 'world'}", f"output={out}", "summary=", f"importance_from={imp}",
            "dialogues.tau=0.5", "rl=null"]
    cfg = load_recipe(LongShortConfig, SMOKE, [*args, "short_thinker_from={world}/long"])  # both thinkers from Long
    missing = load_recipe(LongShortConfig, SMOKE, [*args, "short_thinker_from={output}/nothing"])
    with pytest.raises(HybridcotError, match=r"^short_thinker_from: .*/nothing: not a model checkpoint folder"):
        run_longshort(missing)  # refused before any step writes
    assert not [p for p in out.rglob("*") if p.is_file()]
    result = run_longshort(cfg)
    ran = [s["step"] for s in result["steps"]]
    assert "chunk" not in ran and "importance" not in ran and "dialogues" in ran
    assert not (out / "chunks").exists() and not (out / "importance").exists()
    stats = read_json(out / "dialogues" / "stats.json")
    assert stats["tau"] == 0.5 and stats["dialogues"] == read_json(imp / "stats.json")["n_cots"]
    assert (out / "models" / "long_thinker" / "config.json").is_file()
    world = chain["root"] / "world"
    assert read_yaml(out / "models" / "short_thinker" / "config.yaml")["model"] == str(world / "long")
    assert read_yaml(out / "models" / "long_thinker" / "config.yaml")["model"] == str(world / "long")
    assert "longshort_sft" in result["metrics"] and "longshort_rl" not in result["metrics"]
    assert _files(chain["out"]) == before  # the run it read from is untouched
    with pytest.raises(HybridcotError, match="importance_from: .* is not a finished importance folder"):
        load_recipe(LongShortConfig, SMOKE, [f"output={out}", f"importance_from={chain['out'] / 'chunks'}"])


def test_short_samples_step_feeds_the_dialogues_skip(chain: dict) -> None:
    out = chain["root"] / "skip"
    args = [f"world.output={chain['root'] / 'world'}", f"output={out}", "summary=", "rl=null",
            f"importance_from={chain['out'] / 'importance'}", "short_samples.k=2", "short_samples.max_tokens=32",
            "short_samples.backend=hf", "dialogues.skip_long_min=0.5"]
    result = run_longshort(load_recipe(LongShortConfig, SMOKE, args))
    assert [s["status"] for s in result["steps"] if s["step"] == "sample short"] == ["ran"]
    samples = _jsonl(out / "samples" / "short" / "samples.jsonl")
    assert len(samples) == 2 * 10  # k per chunked problem (the smoke world's 10 training problems)
    right: dict[str, list[bool]] = {}
    for s in samples:
        right.setdefault(s["id"], []).append(s["correct"])
    dialogues = _jsonl(out / "dialogues" / "dialogues.jsonl")
    want = {i for i, v in right.items() if sum(v) / len(v) >= 0.5}
    assert {d["id"] for d in dialogues if d["skipped_long"]} == want
    for d in dialogues:
        assert (d["turns"][0]["text"] == "") == d["skipped_long"]
        assert check_dialogue([Turn.from_record(t) for t in d["turns"]]) is None
    assert read_json(out / "dialogues" / "stats.json")["skipped_long"] == len(want)
    assert read_yaml(out / "dialogues" / "config.yaml")["short_samples"] == str(out / "samples" / "short" / "samples.jsonl")
    again = run_longshort(load_recipe(LongShortConfig, SMOKE, args))
    assert {s["step"]: s["status"] for s in again["steps"]}["sample short"] == "skipped"
