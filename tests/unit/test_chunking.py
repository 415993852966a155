"""Long⊗Short chunking: steps at blank lines, marker-based thoughts, LLM blocks validated with fallback."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcot.config import load_config
from hybridcot.data import world as W
from hybridcot.io import HybridcotError, read_json, read_jsonl, write_jsonl
from hybridcot.longshort.chunking import (
    ChunkConfig,
    chunk_llm,
    chunk_rules,
    opening_marker,
    parse_blocks,
    run_chunk,
    split_steps,
    validate_blocks,
    world_long_cots,
)


def test_split_steps_at_blank_lines() -> None:
    text = "<think>\nOkay, so.\nStill step one.\n\n  \n\nStep two.\r\n\r\nStep three.\n \t\n</think>\n\nSummary."
    assert split_steps(text) == ["Okay, so.\nStill step one.", "Step two.", "Step three.", "Summary."]
    assert split_steps("  \n\n ") == []
    assert split_steps("one") == ["one"]


def test_markers_open_thoughts_and_other_steps_join() -> None:
    steps = ["Okay, we need x.", "x is 3 plus 4 here.", "wait, that is not right at all.",
             "Butter is not a marker word.", "**Alternatively**, use y instead.", "So the answer is 7 then."]
    th = chunk_rules(steps, min_thought_tokens=0)
    assert [t["steps"] for t in th] == [[0, 2], [2, 4], [4, 5], [5, 6]]
    assert th[0]["text"] == "Okay, we need x.\n\nx is 3 plus 4 here."
    assert [t["type"] for t in th] == [None, "wait", "alternatively", "so the answer"]
    assert opening_marker("LET ME DOUBLE-CHECK this") == "Let me double-check"
    assert opening_marker("Thence we go") is None
    assert chunk_rules(steps, markers=[], min_thought_tokens=0)[0]["steps"] == [0, 6]  # no markers: one thought


def test_short_thoughts_join_the_previous_one_and_the_counter_is_pluggable() -> None:
    steps = ["Hmm.", "Let me set up the sum first.", "Wait.", "Then add the two numbers now.", "Next, done."]
    th = chunk_rules(steps, min_thought_tokens=3)
    # "Wait." joins the thought before it, and so does "Next, done."
    assert [t["steps"] for t in th] == [[0, 3], [3, 5]]
    assert chunk_rules(steps, min_thought_tokens=3, count=lambda s: 100) == chunk_rules(steps, min_thought_tokens=0)
    assert len(chunk_rules(steps, min_thought_tokens=3, count=len)) == 4  # characters: nothing is short
    # A short first thought has no previous one: it joins the next.
    th = chunk_rules(["Hmm.", "Wait, let me set up the sum.", "Then add them now please."], min_thought_tokens=3)
    assert [(t["steps"], t["type"]) for t in th] == [([0, 2], "hmm"), ([2, 3], "then")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Wait,", "Hmm", "But", "Next,", "x", "Then", "so"]),
                          st.integers(0, 6)), min_size=1, max_size=12), st.integers(0, 8))
def test_rule_thoughts_tile_the_steps(spec: list[tuple[str, int]], min_tokens: int) -> None:
    steps = [" ".join([head] + ["w"] * n) for head, n in spec]
    th = chunk_rules(steps, min_thought_tokens=min_tokens)
    assert th[0]["steps"][0] == 0 and th[-1]["steps"][1] == len(steps)
    assert all(a["steps"][1] == b["steps"][0] for a, b in zip(th, th[1:]))
    assert all(t["steps"][0] < t["steps"][1] for t in th)
    assert all(t["text"] == "\n\n".join(steps[slice(*t["steps"])]) for t in th)
    if len(th) > 1:
        assert all(len(t["text"].split()) >= min_tokens for t in th)


@pytest.mark.parametrize("rewrite", [False, True])
def test_world_paragraphs_are_thoughts(rewrite: bool) -> None:
    rng = random.Random(7)
    cfg = W.WriterConfig(p_verify=0.4, p_alternative=0.3, p_wait_step=0.4, rewrite=rewrite)
    for p in W.generate_problems(300, seed=11):
        thoughts = W.write_long(p, rng, cfg)
        got = chunk_rules(split_steps(W.long_text(thoughts)))
        assert [t["text"] for t in got] == [t.text for t in thoughts], p.problem


def test_validate_blocks() -> None:
    ok = [{"start": 1, "end": 2, "type": "compute"}, {"start": 3, "end": 3, "type": "check"}]
    assert validate_blocks(ok, 3) is None
    cases = {
        "uncovered": ([{"start": 1, "end": 1, "type": "a"}, {"start": 3, "end": 3, "type": "b"}], 3),
        "overlapping": ([{"start": 1, "end": 2, "type": "a"}, {"start": 2, "end": 3, "type": "b"}], 3),
        "past the last": ([{"start": 1, "end": 4, "type": "a"}], 3),
        "not covered": ([{"start": 1, "end": 2, "type": "a"}], 3),
        "integer": ([{"start": "1", "end": 3, "type": "a"}], 3),
        "before it starts": ([{"start": 2, "end": 1, "type": "a"}], 3),
        "'type'": ([{"start": 1, "end": 3, "type": ""}], 3),
        "no blocks": ([], 3),
        "not an object": ([[1, 3]], 3),
        "JSON list": ({"start": 1}, 3),
    }
    for words, (blocks, n) in cases.items():
        reason = validate_blocks(blocks, n)
        assert reason is not None and words in reason and "\n" not in reason, (words, reason)
    assert "integer" in validate_blocks([{"start": True, "end": 1, "type": "a"}], 1)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=8), st.data())
def test_any_partition_is_valid_and_any_change_is_not(sizes: list[int], data: st.DataObject) -> None:
    blocks, start = [], 1
    for n in sizes:
        blocks.append({"start": start, "end": start + n - 1, "type": "t"})
        start += n
    total = start - 1
    assert validate_blocks(blocks, total) is None
    i = data.draw(st.integers(0, len(blocks) - 1))
    key = data.draw(st.sampled_from(["start", "end"]))
    delta = data.draw(st.sampled_from([-1, 1]))
    broken = [dict(b) for b in blocks]
    broken[i][key] += delta
    assert validate_blocks(broken, total) is not None
    assert validate_blocks(blocks[:-1] + blocks[-1:] * 2, total) is not None


def test_parse_blocks() -> None:
    blocks, reason = parse_blocks('Sure!\n```json\n[{"start": 1, "end": 2, "type": "x"}]\n```')
    assert reason is None and blocks == [{"start": 1, "end": 2, "type": "x"}]
    assert parse_blocks("no list here")[1] == "no JSON list in the reply"
    assert parse_blocks("[{start: 1}]")[1].startswith("invalid JSON")


STEPS = ["Okay, 2+3 first.", "That is 5 here.", "Wait, check 5 again.", "So the answer is 5 indeed."]


def test_llm_grouping_retries_then_falls_back() -> None:
    good = '[{"start": 1, "end": 2, "type": "compute"}, {"start": 3, "end": 4, "type": "conclude"}]'
    th, method, reason = chunk_llm(STEPS, lambda p: good)
    assert method == "llm" and reason is None
    assert [(t["steps"], t["type"]) for t in th] == [([0, 2], "compute"), ([2, 4], "conclude")]

    prompts: list[str] = []
    replies = iter(['[{"start": 1, "end": 3, "type": "a"}]', good])
    th, method, _ = chunk_llm(STEPS, lambda p: prompts.append(p) or next(replies), retries=2)
    assert method == "llm" and len(prompts) == 2
    assert "invalid: steps 4..4 are not covered" in prompts[1] and "[4] So the answer" in prompts[0]

    calls: list[str] = []
    th, method, reason = chunk_llm(STEPS, lambda p: calls.append(p) or "[]", retries=3)
    assert (method, reason, len(calls)) == ("llm-fallback", "no blocks", 4)
    assert th == chunk_rules(STEPS)


def _world_build(tmp_path: Path, n: int = 40) -> Path:
    rng = random.Random(0)
    probs = W.generate_problems(n, seed=5)
    (tmp_path / "world" / "data").mkdir(parents=True)
    write_jsonl(tmp_path / "world" / "data" / "train.jsonl", (p.to_record() for p in probs))
    write_jsonl(tmp_path / "world" / "data" / "train_long_thoughts.jsonl",
                ({"id": p.id, "thoughts": [t.__dict__ for t in W.write_long(p, rng)]} for p in probs))
    return tmp_path / "world"


def test_world_build_chunks_keep_the_gold_marks(tmp_path: Path) -> None:
    world = _world_build(tmp_path)
    cots = world_long_cots(world / "data" / "train.jsonl", world / "data" / "train_long_thoughts.jsonl")
    assert len(cots) == 40 and all(c["correct"] and c["gold_thoughts"] for c in cots)
    stats = run_chunk(ChunkConfig(input=str(world), output=str(tmp_path / "out")))
    recs = read_jsonl(tmp_path / "out" / "chunks.jsonl")
    assert stats["cots"] == 40 and stats["gold_aligned"] == 40 and stats["fallbacks"] == 0
    for rec, cot in zip(recs, cots):
        assert [t["text"] for t in rec["thoughts"]] == [g["text"] for g in cot["gold_thoughts"]]
        assert rec["gold"] == [{"kind": g["kind"], "redundant": g["redundant"]} for g in cot["gold_thoughts"]]
        assert rec["operands"] == cot["operands"] and rec["n_thoughts"] == len(rec["thoughts"])
    assert read_json(tmp_path / "out" / "stats.json") == stats
    assert (tmp_path / "out" / "config.yaml").exists()
    # Thoughts that differ from the writer's (markers off: one thought) keep no gold marks.
    stats = run_chunk(ChunkConfig(input=str(world), output=str(tmp_path / "one"), markers=["Nope"]))
    assert stats["gold_aligned"] == 0 and stats["thoughts_per_cot"]["max"] == 1


def _samples(tmp_path: Path) -> tuple[Path, Path]:
    probs = [{"id": f"p{i}", "problem": f"What is {i}+1?", "answer": str(i + 1), "level": 1} for i in range(3)]
    write_jsonl(tmp_path / "problems.jsonl", probs)
    text = "Okay, {i}+1.\n\nSo {i}+1={a}.\n\nWait, check: {a}-1={i}.\n\nSo the answer is \\boxed{{{a}}}."
    rows = [{"id": f"p{i}", "sample": j, "level": 1, "text": text.format(i=i, a=i + 1), "n_tokens": 9,
             "gold": str(i + 1), "correct": j != 0} for i in range(3) for j in range(3)]
    write_jsonl(tmp_path / "samples.jsonl", rows)
    return tmp_path / "samples.jsonl", tmp_path / "problems.jsonl"


def test_samples_need_problem_text_and_keep_correct_ones(tmp_path: Path) -> None:
    samples, problems = _samples(tmp_path)
    with pytest.raises(HybridcotError, match=r"samples\.jsonl:1: field 'problem'"):
        run_chunk(ChunkConfig(input=str(samples), output=str(tmp_path / "x")))
    stats = run_chunk(ChunkConfig(input=str(tmp_path), problems=str(problems), output=str(tmp_path / "a")))
    recs = read_jsonl(tmp_path / "a" / "chunks.jsonl")
    assert [(r["id"], r["sample"]) for r in recs] == [("p0", 1), ("p1", 1), ("p2", 1)]  # sample 0 is wrong
    assert recs[1]["problem"] == "What is 1+1?" and recs[1]["answer"] == "2" and recs[1]["gold"] is None
    assert stats["skipped"] == {"incorrect": 3, "over_max_per_problem": 3}
    assert [t["type"] for t in recs[0]["thoughts"]] == [None, "wait", "so the answer"]
    stats = run_chunk(ChunkConfig(input=str(samples), problems=str(problems), output=str(tmp_path / "b"),
                                  only_correct=False, max_per_problem=None))
    assert stats["cots"] == 9


def test_bad_records_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cots.jsonl"
    write_jsonl(path, [{"id": "a", "problem": "q", "answer": 1, "text": "x"},
                       {"id": "b", "problem": "q", "answer": "1", "text": 5}])
    with pytest.raises(HybridcotError, match=r"cots\.jsonl:2: field 'text' must be a string"):
        run_chunk(ChunkConfig(input=str(path), output=str(tmp_path / "o")))
    write_jsonl(path, [{"id": "a", "problem": "q", "answer": "1", "text": "x", "correct": "yes"}])
    with pytest.raises(HybridcotError, match=r"cots\.jsonl:1: field 'correct'"):
        run_chunk(ChunkConfig(input=str(path), output=str(tmp_path / "o")))


def test_llm_stage_appends_and_resumes(tmp_path: Path) -> None:
    world = _world_build(tmp_path, n=6)
    prompts: list[str] = []

    def complete(ps: list[str]) -> list[str]:
        prompts.extend(ps)
        return ["not json"] * len(ps)

    cfg = dict(input=str(world), output=str(tmp_path / "llm"), method="llm", model="fake", llm_retries=1,
               batch_size=4)
    run_chunk(ChunkConfig(**cfg, limit=3), complete=complete)
    assert len(prompts) == 3 * 2
    stats = run_chunk(ChunkConfig(**cfg), complete=complete)
    assert len(prompts) == 6 * 2  # only the three new CoTs were asked
    recs = read_jsonl(tmp_path / "llm" / "chunks.jsonl")
    assert len(recs) == 6 and len({r["id"] for r in recs}) == 6
    assert stats["fallbacks"] == 6 and stats["fallback_reasons"] == {"no JSON list in the reply": 6}
    assert all(r["gold"] is not None for r in recs)  # the fallback rules match the writer


def test_config_validation_and_overrides() -> None:
    cfg = load_config(ChunkConfig, overrides=["input=a", "output=b", "markers=Wait,Hmm", "min_thought_tokens=0"])
    assert cfg.markers == ["Wait", "Hmm"] and cfg.min_thought_tokens == 0
    with pytest.raises(HybridcotError, match="model"):
        load_config(ChunkConfig, overrides=["input=a", "output=b", "method=llm"])
    with pytest.raises(ValueError, match="method"):
        ChunkConfig(input="a", output="b", method="magic")
