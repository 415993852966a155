"""Long⊗Short cold-start dialogues: important thoughts to Long verbatim, the rest to Short concisely."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcot.config import load_config
from hybridcot.data import world as W
from hybridcot.grading import grade
from hybridcot.io import HybridcotError, read_json, read_jsonl, write_jsonl
from hybridcot.longshort.chunking import token_counter
from hybridcot.longshort.dialogues import (
    DialoguesConfig,
    build_dialogue,
    chain_text,
    is_world_thought,
    model_writer,
    read_importance,
    run_dialogues,
    sft_rows,
    world_ops,
    world_writer,
)
from hybridcot.longshort.protocol import LONG, SHORT, Turn, check_dialogue, dialogue_text, messages_for, parse, render

_STEP = re.compile(r"(?<![\d=])(\d+)([+-])(\d+)=(\d+)")


def _world(n: int = 30, seed: int = 4) -> list[tuple[W.WorldProblem, list[W.Thought]]]:
    rng = random.Random(seed)
    cfg = W.WriterConfig(p_verify=0.4, p_alternative=0.3, p_wait_step=0.3)
    return [(p, W.write_long(p, rng, cfg)) for p in W.generate_problems(n, seed=seed)]


def _problem_ops(p: W.WorldProblem) -> Counter:
    totals = W.partial_totals(p.operands, p.ops)
    return Counter((totals[k], op, x, totals[k + 1]) for k, (op, x) in enumerate(zip(p.ops, p.operands[1:])))


def _turn_ops(turns: list[Turn]) -> Counter:
    """Operations done in the dialogue: "so a+b=c." in Long turns, running totals "a+b=c, c-d=e." in Short turns."""
    ops: Counter = Counter()
    for t in turns:
        if t.role == LONG:
            ops.update(world_ops(t.text))
            continue
        for a, op, b, c in _STEP.findall(t.text):
            a, b, c = int(a), int(b), int(c)
            assert c == (a + b if op == "+" else a - b), t.text
            ops[(a, op, b, c)] += 1
    return ops


def _check(p: W.WorldProblem, thoughts: list[W.Thought], s: list[float]) -> tuple[list[Turn], dict]:
    texts = [t.text for t in thoughts]
    turns, info = build_dialogue(texts, s, p.to_record(), world_writer)
    assert check_dialogue(turns) is None
    assert _turn_ops(turns) == _problem_ops(p)  # every operation exactly once
    assert grade(dialogue_text(turns), str(p.answer)).correct
    assert grade(turns[-1].text, str(p.answer)).correct
    important = [texts[0]] + [t for t, x in zip(texts[1:], s[1:]) if x > 0]
    assert "\n\n".join(t.text for t in turns if t.role == LONG) == "\n\n".join(important)
    assert info["forced_first"] == (s[0] <= 0) and info["long_thoughts"] == [texts.index(t) for t in important]
    for t in turns:  # the tags survive a round trip
        assert parse(t.role, render(t)) == t
    return turns, info


def test_redundant_thoughts_go_to_short_and_drop_out() -> None:
    for p, thoughts in _world():
        s = [0.5 if t.kind in ("step", "plan") else -0.2 for t in thoughts]
        turns, _ = _check(p, thoughts, s)
        long_text = "\n\n".join(t.text for t in turns if t.role == LONG)
        assert not any(t.text in long_text for t in thoughts if t.redundant)
        assert not any(t.text in long_text for t in thoughts if t.kind == "final")
        assert turns[-1].text == f"The answer is \\boxed{{{p.answer}}}."


def test_short_turns_carry_the_unimportant_operations() -> None:
    p = W.WorldProblem("x", 3, [8, 6, 9, 5], ["-", "+", "+"])
    thoughts = W.write_long(p, random.Random(0), W.WriterConfig(p_verify=0, p_alternative=0, p_wait_step=0))
    assert [t.kind for t in thoughts] == ["plan", "step", "step", "step", "final"]
    turns, info = _check(p, thoughts, [1.0, 1.0, -1.0, -1.0, -1.0])
    assert [(t.role, t.final) for t in turns] == [(LONG, False), (SHORT, True)]
    assert turns[1].text == "2+9=11, 11+5=16. The answer is \\boxed{16}."
    assert turns[1].text.startswith(W.write_short_span(p, 1, 3))
    assert not info["forced_first"] and not info["final_appended"]
    turns, info = _check(p, thoughts, [-1.0, -1.0, 1.0, -1.0, 1.0])  # plan forced; last thought Long
    assert [t.role for t in turns] == [LONG, SHORT, LONG, SHORT, LONG, SHORT]
    assert turns[1].text == "8-6=2." and turns[3].text == "11+5=16."
    assert not turns[3].final and turns[5].final and turns[5].text == "The answer is \\boxed{16}."
    assert info["forced_first"] and info["final_appended"]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_any_importance_gives_a_valid_dialogue(seed: int, data: st.DataObject) -> None:
    rng = random.Random(seed)
    p = W.make_problem(rng, rng.randint(1, 5), "h")
    thoughts = W.write_long(p, rng, W.WriterConfig(p_verify=0.4, p_alternative=0.3, p_wait_step=0.3,
                                                   rewrite=rng.random() < 0.3))
    s = data.draw(st.lists(st.sampled_from([-1.0, -0.01, 0.0, 0.01, 0.7]), min_size=len(thoughts),
                           max_size=len(thoughts)))
    turns, _ = _check(p, thoughts, s)
    assert all(t.role == (LONG if i % 2 == 0 else SHORT) for i, t in enumerate(turns))
    assert all(t.text for t in turns)


def test_tau_moves_the_threshold() -> None:
    p, thoughts = _world(1)[0]
    s = [0.3] * len(thoughts)
    turns, _ = build_dialogue([t.text for t in thoughts], s, p.to_record(), world_writer, tau=0.0)
    assert len(turns) == 2  # everything Long, then the appended final answer
    turns, info = build_dialogue([t.text for t in thoughts], s, p.to_record(), world_writer, tau=0.5)
    assert info["long_thoughts"] == [0] and turns[0].text == thoughts[0].text
    with pytest.raises(ValueError, match="importance"):
        build_dialogue(["a"], [1.0, 2.0], {}, world_writer)


def test_world_helpers() -> None:
    assert world_ops("Next, 12-3: 2-3 borrow 9, 1-0-1=0, so 12-3=9. Now we have 9+4.") == [(12, "-", 3, 9)]
    assert chain_text([(12, "-", 3, 9), (9, "+", 4, 13), (7, "+", 1, 8)]) == "12-3=9, 9+4=13. 7+1=8."
    assert world_writer(["Let me double-check 5+2: 5+2=7. Yes, 7."], {"answer": "9"}, False) == ""
    assert world_writer([], {"answer": "9"}, True) == "The answer is \\boxed{9}."
    assert not is_world_thought("Let us factor the polynomial.")
    assert all(is_world_thought(t.text) for _, th in _world(10) for t in th)


def test_world_writer_names_the_terms_a_short_turn_did() -> None:
    steps = ["First, B +7. 5+7: 5+7=12, carry 1, so 5+7=12.",
             "Let me double-check 5+7: 5+7=12. Yes, 12.",
             "Next, C +4. 12+4: 2+4=6, 1+0+0=1, so 12+4=16.\n\nWait, we still need D -2. 16-2: 6-2=4, "
             "1-0-0=1, so 16-2=14."]
    assert world_writer(steps, {"answer": "14"}, False) == "5+7=12, 12+4=16, 16-2=14."
    assert world_writer(steps, {"answer": "14"}, False, letters=True) == "B 5+7=12, C 12+4=16, D 16-2=14."
    assert world_writer(steps, {"answer": "14"}, True, letters=True) == \
        "B 5+7=12, C 12+4=16, D 16-2=14. The answer is \\boxed{14}."
    # untagged steps (worlds built with tags=false) keep the plain totals
    assert world_writer(["Next, 12-3: 2-3 borrow 9, 1-0-1=0, so 12-3=9."], {}, False, letters=True) == "12-3=9."
    assert chain_text([(1, "+", 2, 3), (7, "-", 1, 6)], ["B", None]) == "B 1+2=3. 7-1=6."
    # every generated step gets the letter its own text names
    rng = random.Random(4)
    for _ in range(50):
        p = W.make_problem(rng, rng.randint(2, 5), "h")
        th = [t.text for t in W.write_long(p, rng, W.WriterConfig(tags=True)) if t.kind == "step"]
        text = world_writer(th, p.to_record(), False, letters=True)
        assert re.findall(r"\b([A-F]) -?\d", text) == [re.search(r"\b([A-F]) [+-]\d\.", t).group(1) for t in th]


def test_model_writer_for_other_cots() -> None:
    prompts: list[str] = []

    def llm(prompt: str) -> str:
        prompts.append(prompt)
        return "" if "checks" in prompt.split("Steps:")[1] else "<answer>x is 4.</answer>"

    rec = {"id": "q", "problem": "Solve 2x=8.", "answer": "4"}
    thoughts = ["We have 2x=8.", "Divide by 2.", "Hmm, maybe checks help.", "So x=4 indeed."]
    turns, info = build_dialogue(thoughts, [1.0, -1.0, 1.0, -1.0], rec, model_writer(llm))
    assert [t.role for t in turns] == [LONG, SHORT, LONG, SHORT] and info["dropped_short_runs"] == 0
    assert turns[1].text == "x is 4." and turns[3].final  # tags in the model's reply are removed
    assert turns[3].text == "x is 4. The answer is \\boxed{4}."  # a final turn always has the answer
    assert "Solve 2x=8." in prompts[0] and "Divide by 2." in prompts[0] and "\\boxed{}" in prompts[-1]
    turns, info = build_dialogue(thoughts, [1.0, 1.0, -1.0, 1.0], rec, model_writer(llm))
    assert info["final_appended"]
    assert info["dropped_short_runs"] == 1 and [t.role for t in turns] == [LONG, SHORT]  # empty run dropped
    assert turns[0].text == "\n\n".join([thoughts[0], thoughts[1], thoughts[3]])


def test_sft_rows_hold_each_thinkers_own_turns() -> None:
    p = W.WorldProblem("x", 3, [8, 6, 9, 5], ["-", "+", "+"])
    thoughts = W.write_long(p, random.Random(0), W.WriterConfig(p_verify=0, p_alternative=0, p_wait_step=0))
    turns, _ = build_dialogue([t.text for t in thoughts], [1, -1, 1, -1, 1], p.to_record(), world_writer)
    rows = sft_rows(p.to_record(), turns)
    assert [r["turn"] for r in rows[LONG]] == [0, 2, 4] and [r["turn"] for r in rows[SHORT]] == [1, 3, 5]
    for role, rs in rows.items():
        for r in rs:
            t = turns[r["turn"]]
            assert t.role == role and r["completion"] == [{"role": "assistant", "content": render(t)}]
            assert r["prompt"] == messages_for(role, p.problem, turns[:r["turn"]])
            assert r["prompt"][-1]["role"] == "user"  # the completion answers the partner (or the problem)
            assert all(m["content"].startswith("<think>" if role == LONG else "<answer>")
                       for m in r["prompt"] if m["role"] == "assistant")


def _importance(tmp_path: Path, n: int = 12) -> tuple[Path, list]:
    world = _world(n, seed=9)
    rows = [{"id": p.id, "sample": 0, "problem": p.problem, "answer": str(p.answer), "level": p.level,
             "thoughts": [{"text": t.text, "steps": [i, i + 1]} for i, t in enumerate(th)],
             "s": [0.2 if t.kind == "step" else -0.1 for t in th], "acc": [1.0] * (len(th) + 1),
             "gold": [{"kind": t.kind, "redundant": t.redundant} for t in th]} for p, th in world]
    write_jsonl(tmp_path / "imp" / "importance.jsonl", rows)
    return tmp_path / "imp", world


def test_stage_writes_dialogues_and_both_sft_sets(tmp_path: Path) -> None:
    imp, world = _importance(tmp_path)
    stats = run_dialogues(DialoguesConfig(input=str(imp), output=str(tmp_path / "d")))
    out = tmp_path / "d"
    ds = read_jsonl(out / "dialogues.jsonl")
    assert len(ds) == 12 and all(d["correct"] and d["writer"] == "world" for d in ds)
    assert all(check_dialogue([Turn.from_record(t) for t in d["turns"]]) is None for d in ds)
    n_turns = Counter(t["role"] for d in ds for t in d["turns"])
    long_rows, short_rows = read_jsonl(out / "sft_long.jsonl"), read_jsonl(out / "sft_short.jsonl")
    assert (len(long_rows), len(short_rows)) == (n_turns[LONG], n_turns[SHORT])
    assert all(r["completion"][0]["content"].startswith("<think>") for r in long_rows)
    assert all(r["completion"][0]["content"].startswith("<answer>") for r in short_rows)
    assert stats == read_json(out / "stats.json") and (out / "config.yaml").exists()
    assert stats["dialogues"] == 12 and stats["forced_first"] == 12 and stats["correct"] == 12
    n_steps = sum(t.kind == "step" for _, th in world for t in th)
    assert stats["long_thought_share"] == pytest.approx((n_steps + 12) / sum(len(th) for _, th in world))
    n_red = sum(t.redundant for _, th in world for t in th)
    assert stats["gold_redundant"] == {"thoughts": n_red, "to_long": 0} and n_red > 0
    assert 0 < stats["long_char_share"] < 1 and stats["sft_rows"] == {"long": len(long_rows), "short": len(short_rows)}


def test_tau_sweep_reports_sizes_down_to_the_protocols_floor(tmp_path: Path, world_tokenizer_dir: Path) -> None:
    imp, world = _importance(tmp_path)  # steps s=0.2, all else -0.1
    cfg = load_config(DialoguesConfig, overrides=[f"input={imp}", f"output={tmp_path / 'd'}",
                                                  f"tokenizer={world_tokenizer_dir}", "tau_sweep=-1,0,0.5,inf"])
    assert cfg.tau_sweep == [-1.0, 0.0, 0.5, math.inf]
    stats = run_dialogues(cfg)
    sweep = {row["tau"]: row for row in stats["tau_sweep"]}
    assert list(sweep) == [-1.0, 0.0, 0.5, "inf"]
    n_thoughts = sum(len(th) for _, th in world)
    # the stage's own tau (0) appears in the sweep with the stage's own numbers
    assert (sweep[0.0]["long_tokens"], sweep[0.0]["short_tokens"]) == (stats["long_tokens"], stats["short_tokens"])
    assert sweep[0.0]["tokens_vs_cot"] == pytest.approx(stats["tokens_vs_cot"])
    # tau -1: every thought Long (the CoT verbatim in one turn, plus the appended final Short turn)
    assert sweep[-1.0]["long_thought_share"] == 1.0 and sweep[-1.0]["tokens_vs_cot"] > 1.0
    # above every s only the forced first thought stays Long: 0.5 and inf give the same floor
    assert sweep[0.5] == {**sweep["inf"], "tau": 0.5}
    assert sweep["inf"]["long_thought_share"] == pytest.approx(len(world) / n_thoughts)
    shares = [sweep[t]["short_token_share"] for t in (-1.0, 0.0, "inf")]
    sizes = [sweep[t]["tokens_vs_cot"] for t in (-1.0, 0.0, "inf")]
    assert shares == sorted(shares) and sizes == sorted(sizes, reverse=True) and sizes[-1] < 1.0
    count = token_counter(str(world_tokenizer_dir))
    cot = sum(count("\n\n".join(t.text for t in th)) for _, th in world)
    assert stats["cot_tokens"] == cot
    assert sweep["inf"]["long_tokens"] == sum(count(f"<think>{th[0].text}</think>") for _, th in world)
    with pytest.raises(ValueError, match="tau_sweep must not hold nan"):
        DialoguesConfig(input="i", output="o", tau_sweep=[float("nan")])
    no_tok = run_dialogues(DialoguesConfig(input=str(imp), output=str(tmp_path / "e")))
    assert "tau_sweep" not in no_tok and "cot_tokens" not in no_tok


def test_non_world_thoughts_need_a_model(tmp_path: Path) -> None:
    rec = {"id": "q", "problem": "Solve 2x=8.", "answer": 4, "thoughts": ["We have 2x=8.", "Hmm, x=4."], "s": [1, -1]}
    write_jsonl(tmp_path / "i.jsonl", [rec])
    with pytest.raises(HybridcotError, match="record 'q'.*model="):
        run_dialogues(DialoguesConfig(input=str(tmp_path / "i.jsonl"), output=str(tmp_path / "o")))
    stats = run_dialogues(DialoguesConfig(input=str(tmp_path / "i.jsonl"), output=str(tmp_path / "o")),
                          llm=lambda prompt: "So x=4.")
    d = read_jsonl(tmp_path / "o" / "dialogues.jsonl")[0]
    assert stats["writers"] == {"model": 1} and d["turns"][1]["text"] == "So x=4. The answer is \\boxed{4}."


def test_bad_importance_records_name_line_and_field(tmp_path: Path) -> None:
    good = {"id": "a", "problem": "q", "answer": "1", "thoughts": [{"text": "t"}], "s": [0.1]}
    for bad, msg in [({"s": [0.1, 0.2]}, "field 's' has 2 values for 1 thoughts"),
                     ({"s": [float("nan")]}, "field 's' must be a list of finite numbers"),
                     ({"thoughts": [{"txt": "t"}]}, "field 'thoughts'"), ({"problem": None}, "field 'problem'")]:
        write_jsonl(tmp_path / "i.jsonl", [good, {**good, **bad}])
        with pytest.raises(HybridcotError, match=re.escape(f"i.jsonl:2: {msg}")):
            read_importance(tmp_path / "i.jsonl")
    write_jsonl(tmp_path / "i.jsonl", [good])
    assert read_importance(tmp_path / "i.jsonl")[0]["thoughts"] == ["t"]


def test_skip_long_gives_the_whole_cot_to_one_final_short_turn() -> None:
    for p, thoughts in _world(12, seed=5):
        texts = [t.text for t in thoughts]
        s = [0.5] * len(texts)  # every thought important: skipping overrides importance
        turns, info = build_dialogue(texts, s, p.to_record(), world_writer, skip_long=True)
        assert check_dialogue(turns) is None and [t.role for t in turns] == [LONG, SHORT]
        assert turns[0].text == "" and render(turns[0]) == "<think></think>" and turns[1].final
        assert _turn_ops(turns) == _problem_ops(p)  # every operation once, all in the short turn
        assert grade(dialogue_text(turns), str(p.answer)).correct
        assert info == {"forced_first": False, "final_appended": False, "dropped_short_runs": 0,
                        "long_thoughts": [], "skipped_long": True}
        assert parse(LONG, render(turns[0])) == turns[0]
        _, kept = build_dialogue(texts, s, p.to_record(), world_writer)
        assert kept["skipped_long"] is False and kept["long_thoughts"] == list(range(len(texts)))


def test_short_samples_skip_the_long_thinker_where_short_solves_alone(tmp_path: Path) -> None:
    imp, world = _importance(tmp_path)
    ids = [p.id for p, _ in world]
    # problem 0..3: 4/4 right; 4..7: 3/4; 8..10: 0/4; 11: no samples at all
    samples = [{"id": pid, "k": j, "correct": (i < 4) or (i < 8 and j > 0)}
               for i, pid in enumerate(ids[:11]) for j in range(4)]
    write_jsonl(tmp_path / "short" / "samples.jsonl", samples)
    for at, want in [(1.0, set(ids[:4])), (0.75, set(ids[:8]))]:
        out = tmp_path / f"d{at}"
        stats = run_dialogues(DialoguesConfig(input=str(imp), output=str(out), short_samples=str(tmp_path / "short"),
                                              skip_long_min=at))
        ds = read_jsonl(out / "dialogues.jsonl")
        assert {d["id"] for d in ds if d["skipped_long"]} == want and stats["skipped_long"] == len(want)
        assert all(d["correct"] and check_dialogue([Turn.from_record(t) for t in d["turns"]]) is None for d in ds)
        for d in ds:
            assert (d["turns"][0]["text"] == "") == d["skipped_long"]
            assert len(d["turns"]) == 2 if d["skipped_long"] else d["n_long_thoughts"] > 1
        long_rows = read_jsonl(out / "sft_long.jsonl")
        empty = [r for r in long_rows if r["completion"][0]["content"] == "<think></think>"]
        assert {r["id"] for r in empty} == want and len(empty) == len(want)
        short_rows = [r for r in read_jsonl(out / "sft_short.jsonl") if r["id"] in want]
        assert all(r["prompt"][-1]["content"].endswith("<think></think>") for r in short_rows)
    plain = run_dialogues(DialoguesConfig(input=str(imp), output=str(tmp_path / "plain")))
    assert plain["skipped_long"] == 0


def test_bad_short_samples_name_file_line_and_field(tmp_path: Path) -> None:
    imp, world = _importance(tmp_path, n=3)
    path = tmp_path / "s.jsonl"
    for bad, msg in [({"correct": 1}, "s.jsonl:2: field 'correct' must be true or false"),
                     ({"id": ""}, "s.jsonl:2: field 'id' must be a non-empty string")]:
        write_jsonl(path, [{"id": world[0][0].id, "correct": True}, {"id": world[1][0].id, "correct": True, **bad}])
        with pytest.raises(HybridcotError, match=re.escape(msg)):
            run_dialogues(DialoguesConfig(input=str(imp), output=str(tmp_path / "o"), short_samples=str(path)))
    write_jsonl(path, [{"id": "elsewhere", "correct": True}])
    with pytest.raises(HybridcotError, match="no sample of any of the 3 problems"):
        run_dialogues(DialoguesConfig(input=str(imp), output=str(tmp_path / "o"), short_samples=str(path)))
    assert not (tmp_path / "o").exists()  # refused before anything was written
    for at in (0.0, 1.5):
        with pytest.raises(ValueError, match="skip_long_min must be in"):
            DialoguesConfig(input="i", output="o", skip_long_min=at)
