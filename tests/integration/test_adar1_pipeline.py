"""`hybridcot adar1` end to end on recipes/tiny/adar1_smoke.yaml: world build, merge, sampling, pairs,
four trainings, seven evals, summary rows and report, all into a temp folder; then a rerun that
skips everything and rewrites nothing, and a changed recipe that is refused.

    pytest -q -m slow tests/integration/test_adar1_pipeline.py     # about 1.5 min on one CPU thread
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from hybridcot import cli
from hybridcot.adar1.pipeline import SYSTEMS, AdaR1Config, run_adar1
from hybridcot.io import HybridcotError, read_json
from hybridcot.recipes import load_recipe

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "tiny" / "adar1_smoke.yaml"
TRAINED = ("adar1", "group_only", "dpo_shortest", "merge_sft", "adar1_r1")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("adar1_chain")
    overrides = [f"world.output={root / 'world'}", f"output={root / 'adar1'}", f"summary={root / 'summary.json'}"]
    t0 = time.time()
    result = run_adar1(load_recipe(AdaR1Config, SMOKE, overrides))
    seconds = time.time() - t0
    print(f"adar1 smoke chain (world build included): {seconds:.0f}s")
    return {"root": root, "out": root / "adar1", "overrides": overrides, "result": result, "seconds": seconds}


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_every_stage_output_exists(chain: dict) -> None:
    out, root = chain["out"], chain["root"]
    assert (root / "world" / "metrics.json").is_file()
    assert (out / "models" / "merge" / "merge.json").is_file()
    assert read_json(out / "models" / "merge" / "merge.json")["alpha"] == 0.8
    for m in ("long", "short"):
        samples = [json.loads(line) for line in (out / "samples" / m / "samples.jsonl").read_text().splitlines()]
        assert samples and {s["sample"] for s in samples} == set(range(6))  # K = 6 in the smoke recipe
        assert all(s["style"] in ("long", "short") for s in samples)
    for name in TRAINED:
        model = out / "models" / name
        meta = read_json(model / "hybridcot.json")
        assert (model / "model.safetensors").is_file() and meta["steps"] == 2
        losses = [e["loss"] for e in read_json(model / "train_log.json")["log"]]
        assert losses and all(math.isfinite(x) for x in losses)  # a loss was logged
    assert read_json(out / "models" / "dpo_shortest" / "hybridcot.json")["base_model"] == str(root / "world" / "long")
    assert read_json(out / "models" / "adar1_r1" / "hybridcot.json")["base_model"] == str(out / "models" / "adar1")
    assert read_json(out / "eval" / "adar1_onpolicy" / "metrics.json")["model"] == str(out / "models" / "adar1_r1")
    for name in ("long", "short", *SYSTEMS):
        m = read_json(out / "eval" / name / "metrics.json")
        assert m["n_problems"] == 20 and m["sampling"]["temperature"] == 0.0
        assert m["sampling"]["max_tokens"] == 256  # the world eval's cap
    for f in ("report.md", "report.json", "long_style_share.png", "accuracy_vs_tokens.png"):
        assert (out / "report" / f).stat().st_size > 0
    assert (out / "config.yaml").is_file() and (out / "chain.json").is_file()


def test_pairs_were_made(chain: dict) -> None:
    out = chain["out"]
    both = read_json(out / "pairs" / "bilevel" / "stats.json")
    assert both["pairs"]["group"] > 0 and both["pairs"]["instance"] > 0
    assert both["pairs"]["total"] == len((out / "pairs" / "bilevel" / "pairs.jsonl").read_text().splitlines())
    group = read_json(out / "pairs" / "group_only" / "stats.json")
    assert group["pairs"]["group"] == both["pairs"]["group"] and group["pairs"]["instance"] == 0
    assert read_json(out / "pairs" / "dpo_shortest" / "stats.json")["pairs"]["instance"] > 0
    rows = [json.loads(line) for line in (out / "pairs" / "merge_sft" / "sft.jsonl").read_text().splitlines()]
    assert rows and all(set(r) >= {"prompt", "completion"} for r in rows)
    # the on-policy round pairs adar1's own samples, each within its problem's preferred style
    preferred = {}
    for line in (out / "pairs" / "bilevel" / "pairs.jsonl").read_text().splitlines():
        r = json.loads(line)
        preferred.setdefault(r["id"], r["preferred"])
    own = {(s["id"], s["sample"]): s for s in map(json.loads, (out / "samples" / "adar1_r1" / "samples.jsonl")
                                                   .read_text().splitlines())}
    rows = [json.loads(line) for line in (out / "pairs" / "onpolicy_r1" / "pairs.jsonl").read_text().splitlines()]
    assert rows and all(r["kind"] == "instance" and r["chosen_correct"] for r in rows)
    for r in rows:
        chosen, rejected = own[(r["id"], r["chosen_sample"])], own[(r["id"], r["rejected_sample"])]
        assert chosen["style"] == rejected["style"] == preferred[r["id"]] == r["preferred"]
        assert chosen["text"] == r["chosen"][0]["content"] and rejected["n_tokens"] >= chosen["n_tokens"]


def test_long_and_short_evals_are_the_world_evals(chain: dict) -> None:
    world_eval = chain["root"] / "world" / "eval"
    for m in ("long", "short"):
        assert (chain["out"] / "eval" / m / "samples.jsonl").read_bytes() == (world_eval / m / "samples.jsonl").read_bytes()
    assert [s["status"] for s in chain["result"]["steps"] if s["step"] in ("eval long", "eval short")] == ["copied"] * 2


def test_summary_rows_carry_long_style_share_per_level(chain: dict) -> None:
    rows = {r["name"]: r for r in read_json(chain["root"] / "summary.json")}
    assert set(rows) == {"long", "short", *SYSTEMS}
    for name in SYSTEMS:
        share = rows[name]["long_style_share"]
        assert set(share) == {"1", "2", "3", "4", "5"} and all(0.0 <= v <= 1.0 for v in share.values())
        per_level = read_json(chain["out"] / "eval" / name / "metrics.json")["per_level"]
        assert share == {lv: b["style_share"].get("long", 0.0) for lv, b in per_level.items()}
    assert rows["long"]["long_style_share"]["5"] > rows["short"]["long_style_share"]["5"]
    report = read_json(chain["out"] / "report" / "report.json")
    assert [r["name"] for r in report["rows"]] == ["long", "short", *SYSTEMS] and report["base"] == "long"


def test_rerun_skips_everything_and_rewrites_nothing(chain: dict, capsys: pytest.CaptureFixture[str]) -> None:
    before = _files(chain["root"])
    t0 = time.time()
    assert cli.main(["adar1", "--recipe", str(SMOKE), *chain["overrides"]]) == 0
    assert time.time() - t0 < 30
    assert "0 of 24 steps ran" in capsys.readouterr().out
    assert _files(chain["root"]) == before


def test_a_changed_recipe_is_refused_not_mixed(chain: dict) -> None:
    before = _files(chain["root"])
    cfg = load_recipe(AdaR1Config, SMOKE, [*chain["overrides"], "dpo.learning_rate=5e-4"])
    with pytest.raises(HybridcotError) as e:
        run_adar1(cfg)
    msg = str(e.value)
    assert "\n" not in msg and str(chain["out"] / "models" / "adar1") in msg and "learning_rate=0.0001" in msg
    assert _files(chain["root"]) == before
