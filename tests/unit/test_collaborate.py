"""Long⊗Short collaborative inference: the batched turn loop on scripted fake thinkers, the stage's
resume and metrics, and one real run on the random-weight pico Qwen2 through the HF backend."""

from __future__ import annotations

import shutil

import pytest

from hybridcot.data.world import PROMPT_SUFFIX
from hybridcot.generation import Sample, SamplingConfig
from hybridcot.io import HybridcotError, read_json, read_jsonl
from hybridcot.longshort import collaborate as collab
from hybridcot.longshort.collaborate import (
    CollaborateConfig,
    collaborate,
    new_states,
    run_collaborate,
    step_dialogues,
    transcript,
)
from hybridcot.longshort.protocol import LONG, SHORT

THINK = "<think>{}</think>"
RETHINK = "<answer>{}</rethink>"
FINAL = "<answer>{} \\boxed{{7}}</answer>"


class FakeGen:
    """A scripted thinker: `script[problem][k]` is the raw text of dialogue turn k (k counted from the
    tags in the prompt, so one FakeGen can serve both roles). Each turn costs one token per word,
    unless `tokens` overrides; a turn in `capped` ends with finish_reason "length"."""

    def __init__(self, script: dict[str, list[str]], tokens: int | None = None, capped: tuple = (),
                 fail_after: int | None = None):
        self.script, self.tokens, self.capped, self.fail_after = script, tokens, capped, fail_after
        self.calls: list[tuple[int, int]] = []  # (prompts, max_tokens) per generate call
        self.prompts: list[list[dict]] = []
        self.closed = False

    def generate(self, prompts, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        self.calls.append((len(prompts), params.max_tokens))
        out = []
        for msgs in prompts:
            self.prompts.append(msgs)
            seen = "\n".join(m["content"] for m in msgs)
            k = seen.count("<think>") + seen.count("<answer>")
            problem = msgs[0]["content"].split(" " + PROMPT_SUFFIX)[0]
            raw = self.script[problem][k]
            n = self.tokens if self.tokens is not None else len(raw.split())
            out.append([Sample(text=raw, n_tokens=n, finish_reason="length" if k in self.capped else "stop")])
        return out

    def close(self):
        self.closed = True


def problem(pid: str, level: int = 1, answer: str = "7") -> dict:
    return {"id": pid, "problem": f"Problem {pid}", "answer": answer, "level": level}


def endless(pid: str, turns: int = 12) -> list[str]:
    return [THINK.format(f"{pid} think {k}") if k % 2 == 0 else RETHINK.format(f"{pid} step {k}")
            for k in range(turns)]


def test_turns_alternate_and_stop_at_the_first_final_short_turn():
    script = {"Problem a": [THINK.format("plan"), RETHINK.format("2+3=5"), THINK.format("more"),
                            FINAL.format("so"), THINK.format("never"), FINAL.format("never")],
              "Problem b": endless("b")}
    long_gen, short_gen = FakeGen(script), FakeGen(script)
    a, b = collaborate(long_gen, short_gen, [problem("a"), problem("b")], max_turns=5)
    assert [t["role"] for t in a["turns"]] == [LONG, SHORT, LONG, SHORT]
    assert [t["final"] for t in a["turns"]] == [False, False, False, True]
    assert a["finished"] and a["well_formed"] and a["correct"] and a["extracted"] == "7"
    assert a["finish_reason"] == "stop" and a["n_turns"] == 4
    assert a["text"].startswith("<think>plan</think>\n\n<answer>2+3=5</rethink>")
    # max_turns counts both thinkers' turns; a dialogue without a final turn is not well formed
    assert [t["role"] for t in b["turns"]] == [LONG, SHORT, LONG, SHORT, LONG]
    assert not b["finished"] and not b["well_formed"] and not b["correct"] and b["finish_reason"] == "length"
    # each thinker sees its own turns as assistant messages, the partner's as user messages
    last_long_prompt = long_gen.prompts[-1]
    assert [m["role"] for m in last_long_prompt] == ["user", "assistant", "user", "assistant", "user"]


def test_tokens_are_counted_per_model_and_caps_are_per_role():
    script = {"Problem a": [THINK.format("one two three"), RETHINK.format("four"), THINK.format("five six"),
                            FINAL.format("x")]}
    long_gen, short_gen = FakeGen(script, capped=(2,)), FakeGen(script, tokens=4)
    (r,) = collaborate(long_gen, short_gen, [problem("a")], long_max_tokens=100, short_max_tokens=10)
    assert [t["n_tokens"] for t in r["turns"]] == [3, 4, 2, 4]
    assert (r["long_tokens"], r["short_tokens"], r["n_tokens"]) == (5, 8, 13)
    assert [t["finish_reason"] for t in r["turns"]] == ["stop", "stop", "length", "stop"]
    assert {cap for _, cap in long_gen.calls} == {100} and {cap for _, cap in short_gen.calls} == {10}


def test_dialogues_advance_together_and_finish_independently():
    script = {"Problem a": [THINK.format("a"), FINAL.format("a")],
              "Problem b": [THINK.format("b"), RETHINK.format("b"), THINK.format("b"), FINAL.format("b")],
              "Problem c": endless("c")}
    long_gen, short_gen = FakeGen(script), FakeGen(script)
    recs = collaborate(long_gen, short_gen, [problem("a"), problem("b"), problem("c")], max_turns=7)
    assert [r["id"] for r in recs] == ["a", "b", "c"] and [r["n_turns"] for r in recs] == [2, 4, 7]
    # one generate call per turn of the longest dialogue, each batching every dialogue still waiting
    assert len(long_gen.calls) + len(short_gen.calls) == 7
    assert [k for k, _ in long_gen.calls] == [3, 2, 1, 1] and [k for k, _ in short_gen.calls] == [3, 2, 1]


def test_malformed_turns_are_flagged_and_a_boxed_short_turn_still_ends_the_dialogue():
    script = {"Problem a": ["plan without tags", "so it is \\boxed{7}", THINK.format("never")],
              "Problem b": [THINK.format("ok"), "<answer>no box</answer>", THINK.format("never")]}
    a, b = collaborate(FakeGen(script), FakeGen(script), [problem("a"), problem("b", answer="3")])
    assert [t["well_formed"] for t in a["turns"]] == [False, False]
    assert a["n_turns"] == 2 and a["finished"] and not a["well_formed"]
    assert a["correct"] and a["extracted"] == "7" and a["reason"] == "correct"
    # a final turn without a boxed answer ends the dialogue, is malformed, and grades as no answer
    assert b["n_turns"] == 2 and b["finished"] and not b["well_formed"] and b["reason"] == "no_answer"


def test_one_generator_serves_both_roles_and_n_samples():
    script = {"Problem a": [THINK.format("a"), RETHINK.format("a"), THINK.format("a"), FINAL.format("a")]}
    gen = FakeGen(script)
    recs = collaborate(gen, gen, [problem("a")], n=3, temperature=0.7, long_max_tokens=50, short_max_tokens=20)
    assert [r["sample"] for r in recs] == [0, 1, 2] and all(r["correct"] and r["n_turns"] == 4 for r in recs)
    assert gen.calls == [(3, 50), (3, 20), (3, 50), (3, 20)]  # the n dialogues share each call
    gen = FakeGen(script)
    recs = collaborate(gen, gen, [problem("a")], n=2)  # greedy: one dialogue, repeated
    assert [r["sample"] for r in recs] == [0, 1] and [k for k, _ in gen.calls] == [1, 1, 1, 1]
    assert recs[0]["turns"] == recs[1]["turns"] and recs[0]["turns"] is not recs[1]["turns"]


def test_a_trainer_can_write_one_thinkers_turns_and_use_the_engine_for_the_partner():
    script = {"Problem a": [None, RETHINK.format("a"), None, FINAL.format("a")]}
    partner = FakeGen(script)
    states = new_states([problem("a")], n=2, max_turns=8)
    params = SamplingConfig(max_tokens=16)
    assert step_dialogues(states, SHORT, partner, params) == [] and partner.calls == []  # nobody waits on it
    while not all(s.done for s in states):
        for s in states:
            s.add(THINK.format("trainer"), n_tokens=5)  # the trained long thinker's own turn
        assert step_dialogues(states, SHORT, partner, params) == states
    assert [len(s.turns) for s in states] == [4, 4] and states[0].n_tokens == [5, 1, 5, 2]
    with pytest.raises(HybridcotError, match="is over"):
        states[0].add(THINK.format("late"))
    with pytest.raises(ValueError, match="n must be 1"):
        step_dialogues(states, LONG, partner, SamplingConfig(n=2))


def test_transcript_marks_each_thinker():
    script = {"Problem a": [THINK.format("plan"), RETHINK.format("2+5=7"), "x ``` y", FINAL.format("done")]}
    (r,) = collaborate(FakeGen(script), FakeGen(script), [problem("a")])
    plain = transcript(r)
    assert "\n\n[long] plan\n\n[short] 2+5=7\n\n[long, malformed] x ``` y\n\n[short, final] done \\boxed{7}\n" in plain
    assert plain.startswith("problem a (level 1, sample 0): correct") and "Problem: Problem a" in plain
    md = transcript(r, markdown=True)
    assert md.startswith("### problem a") and "**Long thinker** (1 tokens)\n\n```\nplan\n```" in md
    assert "````\nx ``` y\n````" in md and "**Short thinker** (2 tokens, final)" in md


# ---------------------------------------------------------------- the stage

def _generic_script() -> dict:
    class AnyProblem(dict):
        def __missing__(self, key):
            return [THINK.format("plan"), FINAL.format("so")]
    return AnyProblem()


def test_stage_resumes_by_problem_id_and_refuses_a_changed_config(tmp_path, monkeypatch):
    loaded: list[FakeGen] = []

    def fake_load(model, backend="auto", dtype="float32", fail_after=None, **kw):
        gen = FakeGen(_generic_script(), fail_after=fail_after)
        loaded.append(gen)
        return gen

    out = tmp_path / "run"
    base = dict(long_model=str(tmp_path / "m"), short_model=str(tmp_path / "m"), problems="world:test:4",
                output=str(out), backend="hf", n=2, temperature=0.5, batch_size=2, n_boot=20)
    # first run: killed while the second chunk of two problems is being generated
    monkeypatch.setattr(collab, "load_generator", lambda *a, **kw: fake_load(*a, fail_after=2, **kw))
    with pytest.raises(RuntimeError, match="killed"):
        run_collaborate(CollaborateConfig(**base))
    assert len(loaded) == 1 and loaded[0].closed  # one model for both roles, closed on the way out
    first = read_jsonl(out / "dialogues.jsonl")
    assert len({r["id"] for r in first}) == 2 and len(first) == 4
    # rerun: only the two missing problems are generated
    monkeypatch.setattr(collab, "load_generator", fake_load)
    m = run_collaborate(CollaborateConfig(**base))
    assert [k for k, _ in loaded[1].calls] == [4, 4]  # two problems x n=2 dialogues, one long + one short call
    recs = read_jsonl(out / "dialogues.jsonl")
    assert len(recs) == 8 and len({(r["id"], r["sample"]) for r in recs}) == 8
    assert m["timing"]["problems_resumed"] == 2 and m["n_problems"] == 4 and m["samples_per_problem"] == 2
    # a finished folder regenerates nothing
    run_collaborate(CollaborateConfig(**base))
    assert len(loaded) == 2
    with pytest.raises(HybridcotError, match="max_turns=8"):
        run_collaborate(CollaborateConfig(**{**base, "max_turns": 4}))


def test_config_validation():
    with pytest.raises(ValueError, match="short_model is required"):
        CollaborateConfig(long_model="a", problems="world:test:1", output="o")
    with pytest.raises(ValueError, match="max_turns"):
        CollaborateConfig(long_model="a", short_model="b", problems="p", output="o", max_turns=0)
    assert CollaborateConfig(long_model="x/long", short_model="x/short", problems="p", output="o").name == "long+short"


def test_real_tiny_run_through_the_hf_backend(tmp_path, pico_model_dir):
    short_dir = tmp_path / "short"
    shutil.copytree(pico_model_dir, short_dir)  # a second model: two generators
    out = tmp_path / "run"
    cfg = CollaborateConfig(long_model=str(pico_model_dir), short_model=str(short_dir), problems="world:test:3",
                            output=str(out), backend="hf", max_turns=4, long_max_tokens=8, short_max_tokens=6,
                            n_boot=50, threads=1)
    m = run_collaborate(cfg)
    saved = read_json(out / "metrics.json")
    assert saved["accuracy"] == m["accuracy"] and saved["n_problems"] == 3
    for key in ("accuracy", "mean_tokens", "mean_long_tokens", "mean_short_tokens", "short_thinker_token_share",
                "mean_turns", "finished_share", "well_formed_share", "truncated_turns"):
        assert isinstance(m[key], float) and m[key] >= 0, key
    assert len(m["accuracy_ci"]) == 2 and m["per_level"]
    for block in m["per_level"].values():
        assert {"accuracy", "mean_tokens", "short_thinker_token_share", "mean_turns", "n"} <= set(block)
    recs = read_jsonl(out / "dialogues.jsonl")
    assert len(recs) == 3
    for r in recs:
        assert isinstance(r["correct"], bool) and isinstance(r["well_formed"], bool) and 1 <= r["n_turns"] <= 4
        assert r["n_tokens"] == r["long_tokens"] + r["short_tokens"] == sum(t["n_tokens"] for t in r["turns"])
        assert all(t["n_tokens"] <= (8 if t["role"] == LONG else 6) for t in r["turns"])
        assert [t["role"] for t in r["turns"]] == [LONG, SHORT, LONG, SHORT][:r["n_turns"]]
        assert isinstance(r["text"], str) and isinstance(r["gold"], str)
    assert (out / "config.yaml").exists() and transcript(recs[0]).count("[") >= recs[0]["n_turns"]
