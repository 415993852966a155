"""AdaR1's bi-level preference pairs on hand-made sample sets whose correct pairs are known (K = 4)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcot.adar1.pairs import (
    PairsConfig,
    Response,
    build_pairs,
    decide_preference,
    group_chosen_sft_rows,
    instance_pairs,
    load_samples,
    onpolicy_instance_pairs,
    own_styles,
    preferred_styles,
    run_pairs,
    shortest_vs_longest_pairs,
)
from hybridcot.cli import main
from hybridcot.config import load_config
from hybridcot.data.problems import Problem
from hybridcot.io import HybridcotError, read_json, read_jsonl, write_jsonl

SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."

# (text, n_tokens, correct) per sample index, K = 4 everywhere.
LONG = {
    # Long 3/4 vs Short 1/4: Long preferred. Long correct = {0, 1, 3}, Short wrong = {1, 2, 3}.
    "p1": [("long right a", 40, True), ("long right b", 30, True), ("long wrong", 50, False),
           ("long right c", 60, True)],
    # Long 2/4 vs Short 1/4: p_L - p_S = 1/4, exactly ε when ε = 0.25.
    "p2": [("l2 ok a", 20, True), ("l2 ok b", 25, True), ("l2 bad a", 30, False), ("l2 bad b", 35, False)],
    "p3": [("l3 bad", 10, False)] * 2 + [("l3 bad b", 11, False)] * 2,  # both zero
    # Long 1/4, Short 0/4: Long preferred at the default ε; Short preferred (with no correct) at ε = 0.5.
    "p4": [("l4 ok", 12, True), ("l4 bad a", 14, False), ("l4 bad b", 16, False), ("l4 bad c", 18, False)],
    # Long 2/4 with identical correct texts, Short 0/4 with two texts: a 2-pair product (< M1).
    "p5": [("A", 5, True), ("A", 5, True), ("D", 20, False), ("D", 20, False)],
    # All correct everywhere: Short preferred; its texts equal one of Long's.
    "p6": [("S", 7, True), ("S", 7, True), ("L", 30, True), ("L", 30, True)],
}
SHORT = {
    "p1": [("short right", 10, True), ("short wrong a", 12, False), ("short wrong b", 8, False),
           ("short wrong c", 9, False)],
    "p2": [("s2 ok", 5, True), ("s2 bad a", 6, False), ("s2 bad b", 7, False), ("s2 bad c", 8, False)],
    "p3": [("s3 bad", 3, False)] * 4,
    "p4": [("s4 bad a", 4, False), ("s4 bad b", 5, False), ("s4 bad c", 6, False), ("s4 bad d", 7, False)],
    "p5": [("B", 3, False), ("B", 3, False), ("C", 4, False), ("C", 4, False)],
    "p6": [("S", 7, True)] * 4,
}
LEVELS = {"p1": 5, "p2": 1, "p3": 2, "p4": 3, "p5": 3, "p6": 1}
PROBLEMS = [Problem(id=pid, problem=f"Problem {pid}?", answer="42", level=LEVELS[pid]) for pid in LONG]


def responses(spec: dict) -> dict[str, list[Response]]:
    return {pid: [Response(sample=j, text=t, n_tokens=n, correct=c) for j, (t, n, c) in enumerate(rs)]
            for pid, rs in spec.items()}


def pairs_of(rows: list[dict], pid: str, kind: str) -> list[tuple[int, int]]:
    return [(r["chosen_sample"], r["rejected_sample"]) for r in rows if r["id"] == pid and r["kind"] == kind]


@pytest.fixture
def built() -> tuple[list[dict], dict]:
    return build_pairs(responses(LONG), responses(SHORT), PROBLEMS)


def test_long_preferred_group_pairs_are_a_subset_of_the_right_product(built) -> None:
    rows, _ = built
    group = [r for r in rows if r["id"] == "p1" and r["kind"] == "group"]
    got = [(r["chosen_sample"], r["rejected_sample"]) for r in group]
    assert len(got) == 4 and len(set(got)) == 4
    assert set(got) <= {(c, r) for c in (0, 1, 3) for r in (1, 2, 3)}
    assert all(r["preferred"] == "long" and r["chosen_style"] == "long" and r["rejected_style"] == "short"
               and r["chosen_correct"] and not r["rejected_correct"] for r in group)
    assert group[0]["p_long"] == 0.75 and group[0]["p_short"] == 0.25 and group[0]["level"] == 5
    # The documented draw: random.Random(f"{seed}:{id}:group").sample(product in sample order, M1).
    product = [(c, r) for c in (0, 1, 3) for r in (1, 2, 3)]
    assert got == random.Random("0:p1:group").sample(product, 4)
    # Texts and prompt in TRL's conversational format.
    row = group[0]
    assert row["prompt"] == [{"role": "user", "content": f"Problem p1? {SUFFIX}"}]
    assert row["chosen"] == [{"role": "assistant", "content": LONG["p1"][row["chosen_sample"]][0]}]
    assert row["rejected"] == [{"role": "assistant", "content": SHORT["p1"][row["rejected_sample"]][0]}]
    assert row["chosen_tokens"] == LONG["p1"][row["chosen_sample"]][1]


def test_group_draw_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    def draw(seed: int) -> list[tuple[int, int]]:
        return pairs_of(build_pairs(responses(LONG), responses(SHORT), PROBLEMS, seed=seed)[0], "p1", "group")

    assert draw(0) == draw(0)
    assert any(draw(s) != draw(0) for s in range(1, 6))


def test_preference_threshold() -> None:
    # Default ε = 1/(2K): Long iff it has strictly more correct answers.
    assert decide_preference(3, 1, 4) == "long"
    assert decide_preference(1, 0, 4) == "long"
    assert decide_preference(2, 2, 4) == "short"
    assert decide_preference(1, 2, 4) == "short"
    assert decide_preference(0, 0, 4) is None
    # Exactly ε -> Short; just over -> Long; an ε typed as a rounded float still counts as exact.
    assert decide_preference(2, 1, 4, epsilon=0.25) == "short"
    assert decide_preference(2, 1, 4, epsilon=0.24) == "long"
    assert decide_preference(2, 1, 3, epsilon=0.3333333333333333) == "short"


def test_short_preferred_at_exactly_epsilon_and_both_zero_skipped() -> None:
    rows, stats = build_pairs(responses(LONG), responses(SHORT), PROBLEMS, epsilon=0.25)
    p2 = [r for r in rows if r["id"] == "p2"]
    assert p2 and all(r["preferred"] == "short" for r in p2)
    # Short's one correct answer (sample 0) vs Long's wrong ones (2, 3).
    assert sorted(pairs_of(rows, "p2", "group")) == [(0, 2), (0, 3)]
    assert not [r for r in rows if r["id"] == "p3"]
    assert stats["skipped"]["problem"] == {"both_zero": 1}


def test_instance_pairs_shortest_correct_vs_two_longest_others(built) -> None:
    rows, _ = built
    # p1, Long group: shortest correct = sample 1 (30 tokens); longest others = 3 (60), 2 (50).
    assert pairs_of(rows, "p1", "instance") == [(1, 3), (1, 2)]
    inst = [r for r in rows if r["id"] == "p1" and r["kind"] == "instance"]
    assert all(r["chosen_style"] == r["rejected_style"] == "long" for r in inst)
    # p5: chosen = sample 0 ("A"); sample 3 repeats sample 2's text and sample 1 the chosen text.
    assert pairs_of(rows, "p5", "instance") == [(0, 2)]


def test_instance_ties_use_the_lowest_sample_index() -> None:
    group = [Response(0, "x", 9, False), Response(1, "y", 5, True), Response(2, "z", 5, True),
             Response(3, "w", 9, False)]
    pairs, reason = instance_pairs(group, 2)
    assert reason is None
    assert [(c.sample, r.sample) for c, r in pairs] == [(1, 0), (1, 3)]
    # A same-length correct response carries no preference; a shorter one never is rejected.
    pairs, reason = instance_pairs([Response(0, "a", 5, True), Response(1, "b", 5, True),
                                    Response(2, "c", 3, False)], 2)
    assert pairs == [] and reason == "no_longer_in_group"


def test_no_correct_in_preferred_group_skips_instance_level() -> None:
    rows, stats = build_pairs(responses(LONG), responses(SHORT), PROBLEMS, epsilon=0.5)
    p4 = [r for r in rows if r["id"] == "p4"]
    assert p4 and all(r["kind"] == "group" and r["preferred"] == "short" for r in p4)
    # Short has no correct answer: chosen from all of Short; rejected = Long's wrong ones (1, 2, 3).
    assert {rej for _, rej in pairs_of(rows, "p4", "group")} <= {1, 2, 3}
    assert stats["skipped"]["instance"]["no_correct_in_group"] >= 1


def test_small_product_gives_fewer_pairs_without_duplicates_or_identical_texts(built) -> None:
    rows, stats = built
    p5 = [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows
          if r["id"] == "p5" and r["kind"] == "group"]
    assert sorted(p5) == [("A", "B"), ("A", "C")]
    # p6: Short preferred (all correct); rejected falls back to all of Long, never the identical "S".
    p6 = [r for r in rows if r["id"] == "p6"]
    assert [(r["kind"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in p6] == \
        [("group", "S", "L")]
    assert stats["skipped"]["instance"] == {"no_longer_in_group": 1}
    assert all(r["chosen"][0]["content"] != r["rejected"][0]["content"] for r in rows)


def test_include_filter_and_stats_match_the_rows(built) -> None:
    rows, stats = built
    group_only, gstats = build_pairs(responses(LONG), responses(SHORT), PROBLEMS, include="group")
    assert group_only and all(r["kind"] == "group" for r in group_only)
    assert group_only == [r for r in rows if r["kind"] == "group"]
    assert gstats["pairs"]["instance"] == 0
    inst_only, _ = build_pairs(responses(LONG), responses(SHORT), PROBLEMS, include="instance")
    assert inst_only == [r for r in rows if r["kind"] == "instance"]
    # p1, p2, p4, p5 prefer Long; p6 Short; p3 skipped.
    assert stats["preferred"] == {"long": 4, "short": 1}
    assert stats["preferred_by_level"]["1"] == {"long": 1, "short": 1, "long_share": 0.5}
    assert stats["preferred_by_level"]["3"] == {"long": 2, "short": 0, "long_share": 1.0}
    # group: p1, p2, p4 draw 4 each, p5 has 2 distinct, p6 1; instance: p1, p2, p4 2 each, p5 1.
    assert stats["pairs"] == {"group": 15, "instance": 7, "total": 22}
    group = [r for r in rows if r["kind"] == "group"]
    assert stats["mean_tokens"]["group"]["chosen"] == pytest.approx(sum(r["chosen_tokens"] for r in group) / 15)


def write_eval_samples(path: Path, spec: dict, model: str) -> None:
    write_jsonl(path, ({"id": pid, "level": LEVELS[pid], "sample": j, "text": t, "n_tokens": n, "n_chars": len(t),
                        "extracted": None, "gold": "42", "correct": c, "reason": "", "finish_reason": "stop",
                        "model": model} for pid, rs in spec.items() for j, (t, n, c) in enumerate(rs)))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    write_eval_samples(tmp_path / "long" / "samples.jsonl", LONG, "long")
    write_eval_samples(tmp_path / "short.jsonl", SHORT, "short")
    write_jsonl(tmp_path / "problems.jsonl", (p.to_record() for p in PROBLEMS))
    return {"long_samples": str(tmp_path / "long"), "short_samples": str(tmp_path / "short.jsonl"),
            "problems": str(tmp_path / "problems.jsonl"), "output": str(tmp_path / "out")}


def test_stage_writes_a_trl_dataset_and_matching_stats(files, tmp_path, capsys) -> None:
    import datasets

    stats = run_pairs(PairsConfig(**files))
    out = Path(files["output"])
    assert read_json(out / "stats.json") == json.loads(json.dumps(stats))
    assert (out / "config.yaml").exists()
    ds = datasets.load_dataset("json", data_files=str(out / "pairs.jsonl"), split="train",
                               cache_dir=str(tmp_path / "hf_cache"))
    assert {"prompt", "chosen", "rejected", "id", "level", "kind", "preferred", "p_long"} <= set(ds.column_names)
    assert len(ds) == stats["pairs"]["total"] == 22
    assert sum(k == "group" for k in ds["kind"]) == stats["pairs"]["group"]
    assert sum(k == "instance" for k in ds["kind"]) == stats["pairs"]["instance"]
    assert ds[0]["prompt"][0]["role"] == "user" and ds[0]["chosen"][0]["role"] == "assistant"
    assert ds[0]["rejected"][0]["role"] == "assistant"
    # TRL's conversational check (trl.data_utils.is_conversational, not imported: it takes ~10 s).
    for col in ("prompt", "chosen", "rejected"):
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in ds[0][col])
    printed = capsys.readouterr().out
    assert "preferred style" in printed and "both_zero=1" in printed
    assert stats["skipped_by_level"] == {"2": 1}


def test_cli_help_and_run(files) -> None:
    with pytest.raises(SystemExit) as e:
        main(["pairs", "--help"])
    assert e.value.code == 0
    args = [f"{k}={v}" for k, v in files.items()]
    assert main(["pairs", *args, "include=group", "m1=2"]) == 0
    rows = read_jsonl(Path(files["output"]) / "pairs.jsonl")
    assert rows and all(r["kind"] == "group" for r in rows)
    assert max(sum(r["id"] == pid for r in rows) for pid in LONG) == 2
    assert main(["pairs", *args, "include=pairs"]) == 2


@pytest.mark.parametrize("override, message", [
    ("epsilon=1.5", "epsilon must be in"), ("m1=0", "m1 must be >= 1"), ("m2=0", "m2 must be >= 1"),
    ("include=all", "include must be one of"), ("output=", "output is required")])
def test_config_validation(files, override, message) -> None:
    with pytest.raises(HybridcotError, match=message):
        load_config(PairsConfig, None, [f"{k}={v}" for k, v in files.items()] + [override])


def test_missing_ids_use_the_intersection(files) -> None:
    path = Path(files["short_samples"])
    write_jsonl(path, [r for r in read_jsonl(path) if r["id"] != "p1"])
    lp = Path(files["long_samples"]) / "samples.jsonl"
    write_jsonl(lp, [r for r in read_jsonl(lp) if r["id"] != "p2"])
    stats = run_pairs(PairsConfig(**files))
    assert stats["skipped"]["problem"] == {"both_zero": 1, "missing_in_long": 1, "missing_in_short": 1}
    assert not {r["id"] for r in read_jsonl(Path(files["output"]) / "pairs.jsonl")} & {"p1", "p2"}


def test_bad_input_is_one_line_naming_file_and_line(files) -> None:
    path = Path(files["short_samples"])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["{not json"] + lines[2:]) + "\n")
    with pytest.raises(HybridcotError, match=rf"{path}:3: invalid JSON"):
        run_pairs(PairsConfig(**files))
    rec = json.loads(lines[0])
    rec["n_tokens"] = "many"
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(HybridcotError, match=rf"{path}:1: field 'n_tokens'"):
        load_samples(path)
    path.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(HybridcotError, match=rf"{path}:2: sample 0 of problem 'p1' appears twice"):
        load_samples(path)
    with pytest.raises(HybridcotError, match="file not found"):
        run_pairs(PairsConfig(**{**files, "long_samples": files["long_samples"] + "/nope.jsonl"}))


def test_k_mismatch_names_the_problem(files) -> None:
    path = Path(files["short_samples"])
    write_jsonl(path, [r for r in read_jsonl(path) if not (r["id"] == "p4" and r["sample"] == 3)])
    with pytest.raises(HybridcotError, match=r"problem 'p4': 4 Long samples but 3 Short samples"):
        run_pairs(PairsConfig(**files))


def test_unknown_problem_id_is_an_error() -> None:
    with pytest.raises(HybridcotError, match="'p1' is in the sample files but not in the problem set"):
        build_pairs(responses(LONG), responses(SHORT), PROBLEMS[1:])


def test_generate_records_are_graded_against_the_problem_set(tmp_path: Path) -> None:
    path = tmp_path / "gen.jsonl"
    write_jsonl(path, [{"id": "p1", "model": "m", "samples": [
        {"text": "so \\boxed{42}", "n_tokens": 4, "finish_reason": "stop"},
        {"text": "so \\boxed{41}", "n_tokens": 5, "finish_reason": "length"}]}])
    got = load_samples(path, {"p1": "42"})
    assert [(r.sample, r.correct, r.n_tokens) for r in got["p1"]] == [(0, True, 4), (1, False, 5)]
    with pytest.raises(HybridcotError, match=rf"{path}:1: samples\[0\]: field 'correct' is missing"):
        load_samples(path)


def test_shortest_vs_longest_on_the_long_samples() -> None:
    rows, stats = shortest_vs_longest_pairs(responses(LONG), PROBLEMS)
    got = {pid: pairs_of(rows, pid, "instance") for pid in LONG}
    # p1: 1 (30) vs 3 (60), 2 (50); p2: 0 (20) vs 3, 2; p4: 0 vs 3, 2; p5: 0 vs 2; p6: 0 vs 2.
    assert got == {"p1": [(1, 3), (1, 2)], "p2": [(0, 3), (0, 2)], "p3": [], "p4": [(0, 3), (0, 2)],
                   "p5": [(0, 2)], "p6": [(0, 2)]}
    assert all(r["chosen_style"] == r["rejected_style"] == "long" and r["p_short"] is None for r in rows)
    assert stats["skipped"]["instance"] == {"no_correct_in_group": 1}
    assert stats["pairs"]["instance"] == len(rows) == 8


def test_group_chosen_sft_rows_are_the_distinct_group_chosen_responses(built) -> None:
    rows, _ = built
    sft = group_chosen_sft_rows(responses(LONG), responses(SHORT), PROBLEMS)
    expected = {(r["id"], r["chosen"][0]["content"]) for r in rows if r["kind"] == "group"}
    assert len(sft) == len(expected)
    assert {(r["id"], r["completion"][0]["content"]) for r in sft} == expected
    p5 = [r for r in sft if r["id"] == "p5"]
    assert [r["completion"] for r in p5] == [[{"role": "assistant", "content": "A"}]]
    assert all(r["prompt"][0]["role"] == "user" and r["style"] in ("long", "short") for r in sft)
    assert {r["style"] for r in sft if r["id"] == "p6"} == {"short"}


sample_st = st.tuples(st.sampled_from(["a", "b", "c", "a ", "b\n"]), st.integers(0, 6), st.booleans())


@st.composite
def sample_sets(draw):
    k = draw(st.integers(1, 4))
    n = draw(st.integers(1, 3))
    group = st.lists(sample_st, min_size=k, max_size=k)
    return ({f"q{i}": draw(group) for i in range(n)}, {f"q{i}": draw(group) for i in range(n)},
            draw(st.sampled_from([None, 0.0, 0.3])), draw(st.integers(0, 3)))


@settings(max_examples=150, deadline=None)
@given(sample_sets())
def test_pair_invariants(data) -> None:
    long_spec, short_spec, epsilon, seed = data
    problems = [Problem(id=pid, problem="?", answer="1") for pid in long_spec]
    rows, stats = build_pairs(responses(long_spec), responses(short_spec), problems, epsilon=epsilon, seed=seed)
    specs = {"long": long_spec, "short": short_spec}
    for r in rows:
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert chosen.strip() != rejected.strip()
        # Each side is the response it names, from the group it names.
        assert specs[r["chosen_style"]][r["id"]][r["chosen_sample"]] == (chosen, r["chosen_tokens"], r["chosen_correct"])
        assert specs[r["rejected_style"]][r["id"]][r["rejected_sample"]][0] == rejected
        assert r["chosen_style"] == r["preferred"]
        if r["kind"] == "group":
            assert r["rejected_style"] != r["preferred"]
        else:
            assert r["chosen_correct"] and r["chosen_tokens"] <= r["rejected_tokens"]
    keys = [(r["id"], r["kind"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert stats["pairs"]["total"] == len(rows)
    assert all(sum(r["id"] == pid and r["kind"] == "group" for r in rows) <= 4 for pid in long_spec)


# ---------------------------------------------------------------- on-policy instance rounds

# The trained model's own samples; a text starting with "L" is Long's style, anything else Short's.
OWN = {
    # Long preferred: Long-style correct 40, 30 and 60 tokens, Long-style wrong 50, a Short-style correct 10.
    "q1": [("L a", 40, True), ("L b", 30, True), ("L c", 50, False), ("s", 10, True), ("L d", 60, True)],
    # Short preferred: Short-style correct 12 and 9, a Short-style wrong 20, a Long-style wrong 80.
    "q2": [("s a", 12, True), ("s b", 9, True), ("s c", 20, False), ("L", 80, False)],
    "q3": [("L only", 50, True), ("L two", 60, False)],          # Short preferred, no Short-style sample
    "q4": [("L x", 30, True), ("L y", 40, True)],                # no preference (round one skipped it)
}
OWN_PREF = {"q1": "long", "q2": "short", "q3": "short"}
OWN_PROBLEMS = [Problem(id=q, problem=f"Problem {q}?", answer="42", level=i + 1) for i, q in enumerate(OWN)]


def _style(text: str) -> str:
    return "long" if text.startswith("L") else "short"


def test_onpolicy_pairs_stay_in_the_preferred_style_shortest_correct_vs_longest() -> None:
    rows, stats = onpolicy_instance_pairs(responses(OWN), OWN_PROBLEMS, OWN_PREF, m2=2, classify=_style)
    assert pairs_of(rows, "q1", "instance") == [(1, 4), (1, 2)]  # 30-token correct vs 60 and 50; "s" never used
    assert pairs_of(rows, "q2", "instance") == [(1, 2), (1, 0)]  # 9 vs 20 and 12; the Long-style 80 left out
    assert pairs_of(rows, "q3", "instance") == [] and pairs_of(rows, "q4", "instance") == []
    assert all(r["chosen_style"] == r["rejected_style"] == r["preferred"] == OWN_PREF[r["id"]] for r in rows)
    assert stats["skipped"] == {"problem": {"no_preference": 1}, "instance": {"no_sample_in_preferred_style": 1}}
    assert stats["pairs"] == {"group": 0, "instance": 4, "total": 4}
    assert stats["in_preferred_style"] == 7 / 13  # q1 4/5, q2 3/4, q3 0/2, q4 none (no preference)
    assert [r["p_long"] for r in rows if r["id"] == "q1"] == [0.75, 0.75]
    assert [r["p_short"] for r in rows if r["id"] == "q2"] == [2 / 3, 2 / 3]


def test_own_styles_take_the_majority_of_the_models_samples_ties_to_the_preference() -> None:
    own = {**OWN, "q5": [("L a", 30, True), ("s", 9, True)], "q6": [("s a", 9, True), ("L b", 30, True)]}
    got = own_styles(responses(own), {**OWN_PREF, "q6": "short"}, classify=_style)
    # q1 4 of 5 Long-style, q2 3 of 4 Short-style, q3/q4 all Long-style; q5 a tie, no preference -> long;
    # q6 a tie -> its preference
    assert got == {"q1": "long", "q2": "short", "q3": "long", "q4": "long", "q5": "long", "q6": "short"}
    rows, stats = onpolicy_instance_pairs(responses(OWN), OWN_PROBLEMS, own_styles(responses(OWN), OWN_PREF,
                                                                                   classify=_style),
                                          m2=2, classify=_style)
    # within the model's own style: q3 (Short preferred, the model writes Long) and q4 (no preference) pair too
    assert pairs_of(rows, "q3", "instance") == [(0, 1)] and pairs_of(rows, "q4", "instance") == [(0, 1)]
    assert pairs_of(rows, "q1", "instance") == [(1, 4), (1, 2)] and pairs_of(rows, "q2", "instance") == [(1, 2), (1, 0)]
    assert all(r["chosen_style"] == r["rejected_style"] == r["preferred"] for r in rows)
    assert stats["skipped"] == {"problem": {}, "instance": {}} and stats["pairs"]["instance"] == 6


def test_preferred_styles_reads_the_bilevel_pairs_and_names_a_bad_line(tmp_path: Path, built) -> None:
    rows, _ = built
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, rows)
    want = {}
    for r in rows:
        want.setdefault(r["id"], r["preferred"])
    assert preferred_styles(path) == want and want["p1"] == "long" and want["p6"] == "short"
    write_jsonl(path, [*rows[:2], {**rows[2], "preferred": "medium"}])
    with pytest.raises(HybridcotError, match=rf"^{path}:3: field 'preferred' must be 'long' or 'short'"):
        preferred_styles(path)


def test_onpolicy_step_pairs_within_the_models_own_style_and_refuses_a_changed_style(tmp_path: Path) -> None:
    """The chain's step (`rounds_style`): "own" pairs in the style the model mostly writes, "preferred" in the
    bi-level pairs' style; a folder made with one refuses the other in one line, and stop 23's folders
    (no style recorded) count as "preferred"."""
    from hybridcot.adar1.steps import onpolicy_pairs_step
    from hybridcot.data import world as W

    p = W.generate_problems(1, seed=3, levels=(4,))[0]
    longs = sorted({W.long_text(W.write_long(p, random.Random(k))) for k in range(40)}, key=len)
    assert len(longs) >= 3
    short = W.write_short(p, stepwise=True)
    recs = [{"id": p.id, "sample": 0, "text": longs[0], "correct": True},
            {"id": p.id, "sample": 1, "text": longs[-1], "correct": True},
            {"id": p.id, "sample": 2, "text": longs[1], "correct": False},
            {"id": p.id, "sample": 3, "text": short, "correct": True}]
    write_jsonl(tmp_path / "samples.jsonl", [{**r, "n_tokens": len(r["text"])} for r in recs])
    write_jsonl(tmp_path / "problems.jsonl", [{"id": p.id, "problem": p.problem, "answer": str(p.answer), "level": 1}])
    write_jsonl(tmp_path / "bilevel.jsonl", [{"id": p.id, "preferred": "short"}])
    args = (str(tmp_path / "samples.jsonl"), str(tmp_path / "bilevel.jsonl"), str(tmp_path / "problems.jsonl"))

    own = tmp_path / "own"
    assert onpolicy_pairs_step(*args, own, 2, "own") == "ran"
    rows = read_jsonl(own / "pairs.jsonl")
    assert [(r["chosen_sample"], r["rejected_sample"]) for r in rows] == [(0, 1), (0, 2)]  # Long-style only
    assert all(r["preferred"] == "long" for r in rows)
    stats = read_json(own / "stats.json")
    assert stats["style"] == "own" and stats["own_differs_from_preferred"] == 1
    assert onpolicy_pairs_step(*args, own, 2, "own") == "skipped"
    with pytest.raises(HybridcotError, match="style"):
        onpolicy_pairs_step(*args, own, 2, "preferred")

    pref = tmp_path / "pref"  # Short preferred: one Short-style sample, nothing to pair
    with pytest.raises(HybridcotError, match="no on-policy pairs"):
        onpolicy_pairs_step(*args, pref, 2, "preferred")
    with pytest.raises(HybridcotError, match="style must be one of"):
        onpolicy_pairs_step(*args, pref, 2, "mine")

    old = tmp_path / "stop23"  # a folder from before rounds_style: its source.json has no style
    assert onpolicy_pairs_step(*args, old, 2, "own") == "ran"
    src = read_json(old / "source.json")
    src.pop("style")
    (old / "source.json").write_text(json.dumps(src))
    with pytest.raises(HybridcotError, match="style"):
        onpolicy_pairs_step(*args, old, 2, "own")
    assert onpolicy_pairs_step(*args, old, 2, "preferred") == "skipped"
