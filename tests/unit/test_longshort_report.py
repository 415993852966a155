"""Long⊗Short's report: the table against Long (with hand-computed ΔA, ΔL, AES), the tokens-by-thinker
and accuracy plots, the transcripts of real collaborate records, skipping, and the summary rows."""

from __future__ import annotations

import pytest

from hybridcot.data.world import PROMPT_SUFFIX
from hybridcot.evaluation.longshort_report import (
    longshort_table,
    pick_transcripts,
    report_rows,
    write_longshort_report,
)
from hybridcot.evaluation.metrics import summarize
from hybridcot.evaluation.report import add_deltas, summary_entry
from hybridcot.generation import Sample
from hybridcot.io import read_json, write_jsonl
from hybridcot.longshort.collaborate import collaborate, summarize_dialogues

THINK = "<think>{}</think>"
RETHINK = "<answer>{}</rethink>"
FINAL = "<answer>{} \\boxed{{7}}</answer>"


class FakeGen:
    """A scripted thinker: `script[problem][k]` is dialogue turn k; every turn costs `tokens` tokens."""

    def __init__(self, script: dict[str, list[str]], tokens: int):
        self.script, self.tokens = script, tokens

    def generate(self, prompts, params):
        out = []
        for msgs in prompts:
            seen = "\n".join(m["content"] for m in msgs)
            k = seen.count("<think>") + seen.count("<answer>")
            problem = msgs[0]["content"].split(" " + PROMPT_SUFFIX)[0]
            out.append([Sample(text=self.script[problem][k], n_tokens=self.tokens, finish_reason="stop")])
        return out

    def close(self):
        pass


def _problems(levels: list[int], answers: list[str]) -> list[dict]:
    return [{"id": f"p{i}", "problem": f"Problem p{i}", "answer": a, "level": lv}
            for i, (lv, a) in enumerate(zip(levels, answers))]


SHORT_SCRIPT = [THINK.format("plan it"), FINAL.format("so")]
LONG_SCRIPT = [THINK.format("plan it"), RETHINK.format("half way"), THINK.format("check it"), FINAL.format("done")]


def _dialogues(answers: list[str]) -> list[dict]:
    """Four problems at levels 1, 2, 3, 3; p0 and p2 take 2 turns, p1 and p3 take 4; long turns cost 10
    tokens, short turns 5: dialogues of 15, 30, 15, 30 tokens (mean 22.5, long 15, short 7.5)."""
    probs = _problems([1, 2, 3, 3], answers)
    script = {p["problem"]: SHORT_SCRIPT if i % 2 == 0 else LONG_SCRIPT for i, p in enumerate(probs)}
    return collaborate(FakeGen(script, 10), FakeGen(script, 5), probs)


def _eval_metrics(correct: list[bool], tokens: int) -> dict:
    recs = [{"id": f"p{i}", "level": lv, "sample": 0, "correct": c, "n_tokens": tokens, "thinking": False,
             "text": "x", "finish_reason": "stop"} for i, (lv, c) in enumerate(zip([1, 2, 3, 3], correct))]
    return summarize(recs, n_boot=0)


@pytest.fixture
def inputs(tmp_path):
    sft = _dialogues(["7", "7", "3", "3"])  # every dialogue answers 7: two of four correct
    rl = _dialogues(["7", "7", "7", "7"])
    paths = {"longshort_sft": tmp_path / "sft.jsonl", "longshort_rl": tmp_path / "rl.jsonl"}
    write_jsonl(paths["longshort_sft"], sft)
    write_jsonl(paths["longshort_rl"], rl)
    systems = {"longshort_rl": summarize_dialogues(rl, n_boot=0), "short": _eval_metrics([1, 1, 0, 0], 20),
               "long": _eval_metrics([1, 1, 1, 0], 100), "longshort_sft": summarize_dialogues(sft, n_boot=0)}
    return systems, paths


def test_table_against_long(inputs) -> None:
    systems, _ = inputs
    rows = report_rows(systems)
    assert [r["name"] for r in rows] == ["long", "short", "longshort_sft", "longshort_rl"]
    add_deltas(rows, "long")
    head, body = longshort_table(rows, "long")
    assert head == ["system", "accuracy [95% CI]", "mean tokens", "long-thinker tokens", "short-thinker share",
                    "turns", "ΔA", "ΔL", "AES"]
    long, short, sft, rl = body
    # single models: all tokens are the long thinker's for Long, none for Short; one turn
    assert long == ["Long (base)", "0.750", "100.0", "100.0", "0.0%", "1.00", "+0.0%", "+0.0%", "+0.000"]
    assert short[:6] == ["Short", "0.500", "20.0", "0.0", "100.0%", "1.00"]
    # SFT pair: A = 0.5 vs 0.75 -> ΔA = -1/3; L = 22.5 vs 100 -> ΔL = 0.775; AES = 0.775 + 5·(-1/3)
    assert sft == ["Long⊗Short (SFT)", "0.500", "22.5", "15.0", "33.3%", "3.00", "-33.3%", "+77.5%",
                   f"{0.775 - 5 / 3:+.3f}"]
    assert rows[2]["aes"] == pytest.approx(0.775 - 5 / 3) and rows[2]["delta_accuracy"] == pytest.approx(-1 / 3)
    # RL pair: A = 1 -> ΔA = +1/3, a gain counts 3x: AES = 0.775 + 1
    assert rl[6:] == ["+33.3%", "+77.5%", "+1.775"]
    assert rows[1]["mean_short_tokens"] == 20.0 and rows[2]["mean_short_tokens"] == 7.5
    assert [r["collaborative"] for r in rows] == [False, False, True, True]


def test_write_report_then_skip_when_unchanged(inputs, tmp_path) -> None:
    systems, paths = inputs
    out = tmp_path / "report"
    r = write_longshort_report(systems, out, base="long", dialogues=paths, n_transcripts=2)
    assert r["status"] == "ran"
    names = {f.split("/")[-1] for f in r["files"]}
    assert names == {"report.md", "report.json", "tokens_by_thinker.png", "accuracy_vs_tokens.png", "transcripts.md"}
    for name in names:
        assert (out / name).stat().st_size > 0
    from PIL import Image

    for png in ("tokens_by_thinker.png", "accuracy_vs_tokens.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out / png) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] > 100
    md = (out / "report.md").read_text()
    assert "| Long⊗Short (SFT) | 0.500 | 22.5 | 15.0 | 33.3% | 3.00 |" in md
    saved = read_json(out / "report.json")
    assert saved["base"] == "long" and saved["rows"] == r["rows"]
    # two transcripts per pair, spread over levels: the easiest and the hardest
    assert saved["transcripts"]["longshort_sft"]["picked"] == [["p0", 0], ["p2", 0]]
    tr = (out / "transcripts.md").read_text()
    assert "## Long⊗Short (SFT): 2 of 4 dialogues" in tr and "## Long⊗Short (RL): 2 of 4 dialogues" in tr
    assert "### 1. Problem p0 (level 1): correct ✓, gold answer `7`" in tr
    assert "### 2. Problem p2 (level 3): wrong ✗, gold answer `3`" in tr
    assert "**Problem.** Problem p2" in tr
    assert "**Long thinker** (10 tokens)\n\n```\nplan it\n```" in tr
    assert "**Short thinker** (5 tokens, final)\n\n```\nso \\boxed{7}\n```" in tr

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = write_longshort_report(systems, out, base="long", dialogues=paths, n_transcripts=2)
    assert again["status"] == "skipped" and again["rows"] == r["rows"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    # other picks rewrite the report, and so do other numbers
    assert write_longshort_report(systems, out, dialogues=paths, n_transcripts=3)["status"] == "ran"
    systems["long"] = _eval_metrics([1, 1, 1, 1], 100)
    assert write_longshort_report(systems, out, dialogues=paths, n_transcripts=3)["status"] == "ran"


def test_pick_transcripts_spreads_over_levels() -> None:
    recs = [{"id": f"{lv}-{i}", "level": lv, "sample": s} for lv in (5, 1, 3) for i in range(2) for s in (0, 1)]
    assert [r["id"] for r in pick_transcripts(recs, 2)] == ["1-0", "5-0"]
    assert [r["id"] for r in pick_transcripts(recs, 4)] == ["1-0", "3-0", "5-0", "1-1"]
    assert len(pick_transcripts(recs, 10)) == 6 and pick_transcripts(recs, 0) == []
    assert [r["id"] for r in pick_transcripts([{"id": "a", "level": None}, {"id": "b", "level": 2}], 1)] == ["b"]


def test_without_long_or_dialogues(inputs, tmp_path) -> None:
    systems, _ = inputs
    r = write_longshort_report({"longshort_sft": systems["longshort_sft"]}, tmp_path, base="long")
    assert r["status"] == "ran" and r["transcripts"] == {}
    assert not (tmp_path / "transcripts.md").exists() and "transcripts.md" not in r["markdown"]
    assert r["rows"][0].get("aes") is None and "—" in r["markdown"]


def test_summary_entry_carries_the_thinker_fields_for_collaborate_metrics_only(inputs) -> None:
    systems, _ = inputs
    entry = summary_entry(systems["longshort_sft"], "longshort_sft")
    assert entry["short_thinker_token_share"] == pytest.approx(1 / 3)
    assert entry["mean_turns"] == 3.0 and entry["mean_long_tokens"] == 15.0
    plain = summary_entry(systems["long"], "long")
    assert not {"short_thinker_token_share", "mean_turns", "mean_long_tokens"} & set(plain)
    # summary rows are report inputs too, with the same numbers
    rows = report_rows({"long": summary_entry(systems["long"], "long"), "longshort_sft": entry})
    assert rows[1]["mean_long_tokens"] == 15.0 and rows[1]["mean_short_tokens"] == 7.5
    assert rows[0]["mean_long_tokens"] == 100.0 and rows[0]["mean_turns"] == 1.0
