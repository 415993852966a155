"""`hybridcot importance`: the rollout math against hand values, adaptive mode, resume, a real pico run,
and the HF backend's prefix sharing (same samples, fewer prefill tokens)."""

from __future__ import annotations

import math
import random

import pytest

from hybridcot.data.world import EMPTY_PARTIAL, FINISH_SUFFIX, generate_problems, write_long
from hybridcot.generation import SamplingConfig, chat_prompt
from hybridcot.io import HybridcotError, read_json, read_jsonl, write_jsonl
from hybridcot.longshort.importance import (
    CallableGenerator,
    ImportanceConfig,
    accuracy_se,
    auroc,
    importance_scores,
    importance_stats,
    run_importance,
)

THOUGHTS = ["alpha one", "beta two two", "gamma three three three"]  # 2, 3 and 4 whitespace tokens
RIGHT = [1, 2, 4, 3]  # right rollouts out of 4 after 0, 1, 2, 3 thoughts
MARKERS = ("alpha", "beta", "gamma")


def _prefix_size(prompt) -> int:
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return sum(m in text for m in MARKERS)


def _fixed(prompts, n):
    """Prefix i: the first RIGHT[i] rollouts answer 42, the others give up."""
    return [["so \\boxed{42}" if j < RIGHT[_prefix_size(p)] else "no idea at all" for j in range(n)] for p in prompts]


def _chunk_record(pid: str = "p0", gold: bool = True) -> dict:
    rec = {"id": pid, "problem": "What is 40+2?", "answer": "42", "level": 1,
           "thoughts": [{"text": t, "steps": [k, k + 1]} for k, t in enumerate(THOUGHTS)]}
    if gold:
        rec["gold"] = [{"kind": "step", "redundant": False}, {"kind": "step", "redundant": False},
                       {"kind": "verify", "redundant": True}]
    return rec


def _cfg(tmp_path, **kw) -> ImportanceConfig:
    chunks = tmp_path / "chunks.jsonl"
    if not chunks.exists():
        write_jsonl(chunks, [_chunk_record()])
    return ImportanceConfig(**{"chunks": str(chunks), "model": "fake", "output": str(tmp_path / "out"), "n": 4, **kw})


# ---- (1) the math ----

def test_scores_match_hand_values(tmp_path):
    stats = run_importance(_cfg(tmp_path), generator=CallableGenerator(_fixed))
    (rec,) = read_jsonl(tmp_path / "out" / "importance.jsonl")
    assert rec["acc"] == [0.25, 0.5, 1.0, 0.75] and rec["n_rollouts"] == [4, 4, 4, 4]
    se = [math.sqrt(1 / 18), 1 / 4, math.sqrt(5) / 12, math.sqrt(1 / 18)]  # p = (r+1)/(N+2): 1/3, 1/2, 5/6, 2/3
    assert rec["se"] == pytest.approx(se, abs=1e-6)
    e = [0.25, 0.5, -0.25]
    c = [0.25 * 2 / 9, 0.25 * 3 / 9, 0.25 * 4 / 9]
    assert rec["e"] == pytest.approx(e, abs=1e-6) and rec["c"] == pytest.approx(c, abs=1e-6)
    assert rec["s"] == pytest.approx([a - b for a, b in zip(e, c)], abs=1e-6)
    assert rec["se_e"] == pytest.approx([math.hypot(se[i], se[i - 1]) for i in (1, 2, 3)], abs=1e-6)
    assert [t["n_tokens"] for t in rec["thoughts"]] == [2, 3, 4] and rec["gold"][2]["redundant"]
    # cost: 16 rollouts; "so \boxed{42}" is 2 tokens, "no idea at all" 4; no sharing in a plain function
    assert rec["cost"]["rollouts"] == 16
    assert rec["cost"]["generated_tokens"] == 2 * sum(RIGHT) + 4 * (16 - sum(RIGHT))
    assert rec["cost"]["prefill_tokens"] == rec["cost"]["naive_prefill_tokens"] > 0
    # stats: 2 of 3 thoughts positive; the redundant one has the lowest s
    assert stats["frac_s_positive"] == pytest.approx(2 / 3)
    assert stats["mean_acc_by_prefix"] == [0.25, 0.5, 1.0, 0.75]
    g = stats["gold"]
    assert (g["n_redundant"], g["n_other"], g["auroc_other_vs_redundant"]) == (1, 2, 1.0)
    assert g["mean_s_redundant"] == pytest.approx(rec["s"][2])
    # "s <= tau" as a redundancy detector: s = 0.19, 0.42, -0.36 (the redundant one)
    assert (g["tau"], g["flagged_s_le_tau"], g["precision_s_le_tau"], g["recall_s_le_tau"]) == (0.0, 1, 1.0, 1.0)
    g3 = importance_stats([rec], tau=0.3)["gold"]
    assert (g3["flagged_s_le_tau"], g3["precision_s_le_tau"], g3["recall_s_le_tau"]) == (2, 0.5, 1.0)
    assert importance_stats([rec], tau=-1.0)["gold"]["precision_s_le_tau"] is None  # nothing flagged
    assert stats["cost"]["prefill_saved"] == 0.0
    assert read_json(tmp_path / "out" / "stats.json") == stats and (tmp_path / "out" / "config.yaml").exists()


def test_finish_and_continue_prompts(tmp_path):
    seen = []

    def record(prompts, n):
        seen.extend(prompts)
        return [[""] * n for _ in prompts]  # an empty rollout: only a prefix can hold the answer

    run_importance(_cfg(tmp_path, n=1), generator=CallableGenerator(record))
    # the empty prefix keeps the finish form, so acc_0 and acc_1 come from one prompt
    assert seen[0] == [{"role": "user", "content": f"What is 40+2?\n\nPartial solution:\n{EMPTY_PARTIAL}\n\n{FINISH_SUFFIX}"}]
    assert chat_prompt("What is 40+2?")[0]["content"] not in seen[0][0]["content"]
    assert seen[2][0]["content"].startswith("What is 40+2?\n\nPartial solution:\nalpha one\n\nbeta two two")
    assert seen[2][0]["content"].endswith(FINISH_SUFFIX)

    seen.clear()
    write_jsonl(tmp_path / "chunks.jsonl", [{**_chunk_record(), "thoughts": [
        {"text": "alpha one"}, {"text": "so the answer is \\boxed{42}."}]}])
    run_importance(_cfg(tmp_path, n=1, prompt_style="continue", output=str(tmp_path / "cont")),
                   generator=CallableGenerator(record))
    head = chat_prompt("What is 40+2?")[0]["content"]  # CallableGenerator renders a chat as its contents
    assert seen == [head, head + "alpha one\n\n", head + "alpha one\n\nso the answer is \\boxed{42}.\n\n"]
    (rec,) = read_jsonl(tmp_path / "cont" / "importance.jsonl")
    assert rec["acc"] == [0.0, 0.0, 1.0] and len(rec["gold"]) == 3  # passed through as it came
    assert read_json(tmp_path / "cont" / "stats.json")["gold"] is None  # 3 marks for 2 thoughts: not compared


def test_importance_scores_and_auroc_edges():
    sc = importance_scores([5, 5], [5, 5], [0])  # a zero-length thought costs nothing, 5/5 still has an error
    assert sc["c"] == [0.0] and sc["e"] == [0.0] and sc["se"][0] > 0.15
    assert accuracy_se(0, 5) == pytest.approx(accuracy_se(5, 5))
    with pytest.raises(ValueError):
        importance_scores([1, 2], [2, 2], [1, 1])
    assert auroc([1.0, 0.5], [0.5]) == 0.75 and auroc([], [1.0]) is None


def test_config_validation():
    with pytest.raises(ValueError, match="chunks is required"):
        ImportanceConfig(model="m", output="o")
    with pytest.raises(ValueError, match="prompt_style"):
        ImportanceConfig(chunks="c", model="m", output="o", prompt_style="chat")
    with pytest.raises(ValueError, match="max_rollouts"):
        ImportanceConfig(chunks="c", model="m", output="o", n=5, max_rollouts=4)
    cfg = ImportanceConfig(chunks="c", model="m", output="o")
    assert cfg.sampling(0).seed == 0 and len({cfg.sampling(r).seed for r in range(4)}) == 4


# ---- (2) adaptive mode ----

def _alternating():
    """Prefix 0 is always right; prefix 1 alternates right/wrong over its rollouts."""
    count = [0]

    def fn(prompts, n):
        out = []
        for p in prompts:
            if _prefix_size(p) == 0:
                out.append(["\\boxed{42}"] * n)
            else:
                out.append(["\\boxed{42}" if (count[0] + j) % 2 == 0 else "\\boxed{7}" for j in range(n)])
                count[0] += n
        return out
    return fn


def test_adaptive_stops_under_target(tmp_path):
    write_jsonl(tmp_path / "chunks.jsonl", [{**_chunk_record(gold=False), "thoughts": [{"text": "alpha one"}]}])
    run_importance(_cfg(tmp_path, n=5, adaptive=True, target_se=0.1, max_rollouts=200),
                   generator=CallableGenerator(_alternating()))
    (rec,) = read_jsonl(tmp_path / "out" / "importance.jsonl")
    # all right: se(5/5) = 0.156, se(10/10) = 0.087; half right: se > 0.1 up to 20, se(13/25) = 0.0999
    assert rec["n_rollouts"] == [10, 25] and max(rec["se"]) <= 0.1
    assert rec["acc"] == [1.0, 13 / 25] and rec["cost"]["rollouts"] == 35


def test_adaptive_respects_budget(tmp_path):
    write_jsonl(tmp_path / "chunks.jsonl", [{**_chunk_record(gold=False), "thoughts": [{"text": "alpha one"}]}])
    run_importance(_cfg(tmp_path, n=5, adaptive=True, target_se=0.1, max_rollouts=28),
                   generator=CallableGenerator(_alternating()))
    (rec,) = read_jsonl(tmp_path / "out" / "importance.jsonl")
    # 10 first, +10 (both above target), +5 (prefix 1 only) = 25; 5 more would pass 28
    assert rec["n_rollouts"] == [10, 15] and rec["cost"]["rollouts"] == 25 <= 28
    assert rec["se"][1] > 0.1


# ---- (3) resume ----

def test_resume_after_a_kill(tmp_path):
    # two CoTs of one problem (sample 0 and 1) and one of another: CoTs are keyed by (id, sample)
    write_jsonl(tmp_path / "chunks.jsonl", [{**_chunk_record(pid), "sample": j}
                                            for pid, j in (("p0", 0), ("p0", 1), ("p2", 0))])
    calls = [0]

    def dies(prompts, n):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("killed")
        return _fixed(prompts, n)

    cfg = _cfg(tmp_path, chunk=1)
    with pytest.raises(RuntimeError, match="killed"):
        run_importance(cfg, generator=CallableGenerator(dies))
    first = read_jsonl(tmp_path / "out" / "importance.jsonl")
    assert [(r["id"], r["sample"]) for r in first] == [("p0", 0)]
    stats = run_importance(cfg, generator=CallableGenerator(_fixed))
    full = read_jsonl(tmp_path / "out" / "importance.jsonl")
    assert [(r["id"], r["sample"]) for r in full] == [("p0", 0), ("p0", 1), ("p2", 0)] and full[0] == first[0]
    assert stats["n_cots"] == 3 and stats["cost"]["rollouts"] == 48
    assert full[1] == {**full[0], "sample": 1}  # same rollouts, same scores
    run_importance(cfg, generator=CallableGenerator(dies))  # all done: no rollout at all
    assert len(read_jsonl(tmp_path / "out" / "importance.jsonl")) == 3
    with pytest.raises(HybridcotError, match="n=4"):
        run_importance(_cfg(tmp_path, n=3, chunk=1), generator=CallableGenerator(_fixed))
    write_jsonl(tmp_path / "chunks.jsonl", [_chunk_record("p0"), _chunk_record("p0")])
    with pytest.raises(HybridcotError, match="duplicate CoT id 'p0'"):
        run_importance(_cfg(tmp_path, output=str(tmp_path / "dup")), generator=CallableGenerator(_fixed))


# ---- (4) a real run on the pico model ----

def test_pico_run_end_to_end(pico_model_dir, tmp_path):
    rng = random.Random(0)
    recs = []
    for p in generate_problems(2, seed=5, levels=(1,)):
        th = write_long(p, rng)
        recs.append({"id": p.id, "problem": p.problem, "answer": p.answer, "level": p.level,
                     "thoughts": [{"text": t.text, "steps": [k, k + 1]} for k, t in enumerate(th)],
                     "gold": [{"kind": t.kind, "redundant": t.redundant} for t in th]})
    write_jsonl(tmp_path / "chunks.jsonl", recs)
    cfg = ImportanceConfig(chunks=str(tmp_path / "chunks.jsonl"), model=str(pico_model_dir),
                           output=str(tmp_path / "out"), backend="hf", n=2, temperature=1.0, max_tokens=8, threads=1)
    stats = run_importance(cfg)
    out = read_jsonl(tmp_path / "out" / "importance.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in recs]
    for r, src in zip(out, recs):
        n = len(src["thoughts"])
        assert len(r["acc"]) == len(r["se"]) == len(r["n_rollouts"]) == n + 1
        assert len(r["e"]) == len(r["c"]) == len(r["s"]) == len(r["se_e"]) == len(r["thoughts"]) == n
        assert r["n_rollouts"] == [2] * (n + 1) and all(t["n_tokens"] > 0 for t in r["thoughts"])
        assert sum(r["c"]) == pytest.approx(0.25, abs=1e-5)
        cost = r["cost"]
        assert cost["generated_tokens"] > 0 and 0 < cost["prefill_tokens"] < cost["naive_prefill_tokens"]
        # each prefix prompt is prefilled once, plus its last token for the second rollout
        assert cost["prefill_tokens"] == cost["naive_prefill_tokens"] // 2 + n + 1
    assert 0.4 < stats["cost"]["prefill_saved"] < 0.5
    assert stats["gold"] is not None and stats["n_thoughts"] == sum(len(r["thoughts"]) for r in recs)


# ---- (5) HF prefix sharing: same samples, fewer prefill tokens ----

@pytest.mark.parametrize("batch_size", [6, 4])  # 4 splits a prompt's 3 rows over two batches
def test_hf_prefix_sharing_gives_the_same_samples(pico_model_dir, batch_size):
    from hybridcot.generation.hf import HFGenerator

    prompts = [chat_prompt(p.problem) for p in generate_problems(4, seed=3)]
    shared = HFGenerator(pico_model_dir, batch_size=batch_size, progress=False)
    plain = HFGenerator(pico_model_dir, batch_size=batch_size, progress=False, share_prefix=False,
                        model=shared.model, tokenizer=shared.tokenizer)
    lengths = [len(shared.encode(p)) for p in prompts]
    assert len(set(lengths)) > 1, "prompts of different lengths exercise left padding"
    cfg = SamplingConfig(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=7)
    a, b = shared.generate(prompts, cfg), plain.generate(prompts, cfg)
    assert [[(s.token_ids, s.text, s.finish_reason) for s in o] for o in a] == \
           [[(s.token_ids, s.text, s.finish_reason) for s in o] for o in b]
    assert len({tuple(s.token_ids) for s in a[0]}) > 1, "sampled rows should differ"
    assert plain.stats["prefill_tokens"] == plain.stats["prompt_tokens"] == 3 * sum(lengths)
    assert shared.stats["prompt_tokens"] == 3 * sum(lengths)
    if batch_size == 6:  # every prompt's rows in one batch: its prompt once, its last token for the others
        assert shared.stats["prefill_tokens"] == sum(lengths) + 2 * len(prompts)
    assert shared.stats["prefill_tokens"] < plain.stats["prefill_tokens"]
    assert shared.stats["generated_tokens"] == plain.stats["generated_tokens"]
    # stop strings end rows the same way on both paths
    cut = SamplingConfig(n=3, temperature=1.0, max_tokens=12, seed=3, stop=["e"])
    a, b = shared.generate(prompts, cut), plain.generate(prompts, cut)
    assert [[(s.token_ids, s.text) for s in o] for o in a] == [[(s.token_ids, s.text) for s in o] for o in b]
    assert any(s.n_tokens < 12 for o in a for s in o)
    # greedy n > 1 decodes (and prefills) once in the base class, with or without sharing
    before = dict(plain.stats)
    g = plain.generate(prompts[:2], SamplingConfig(n=3, max_tokens=4))
    assert plain.stats["prefill_tokens"] - before["prefill_tokens"] == sum(lengths[:2])
    assert [s.prefill_tokens for s in g[0]] == [lengths[0], 0, 0]
