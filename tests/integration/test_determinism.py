"""Same seed, same outputs: each stage run twice through `hybridcot <stage>` (in this process) on the pico
model or fixed inputs gives byte-identical artifacts; a different seed gives different samples, so
the checks can fail.

Stages: sample (hf backend, temperature 1), pairs (on fixed sample files), chunk (rules, with the
model's tokenizer counting), importance (seeded hf rollouts; the rollout texts are recorded too, since
importance.jsonl keeps only their grades) and collaborate (seeded dialogues, temperature 1).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hybridcot import cli
from hybridcot.data import world as W
from hybridcot.io import read_jsonl, write_jsonl


def main_ok(argv: list[str]) -> None:
    assert cli.main(argv) == 0, f"hybridcot {' '.join(argv)} failed"


def without_timing(path: Path) -> dict:
    d = json.loads(path.read_text())
    d.pop("timing", None)
    return d


@pytest.fixture
def rollouts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text any generator returns, in order (the draws behind importance's grades)."""
    from hybridcot.generation.base import Generator

    texts: list[str] = []
    real = Generator.generate

    def recording(self, prompts, params=None):
        out = real(self, prompts, params)
        texts.extend(s.text for ss in out for s in ss)
        return out

    monkeypatch.setattr(Generator, "generate", recording)
    return texts


def test_sample_is_deterministic_per_seed(tmp_path: Path, pico_model_dir: Path) -> None:
    def run(name: str, seed: int) -> Path:
        main_ok(["sample", f"model={pico_model_dir}", "problems=world:train:8:seed=1", f"output={tmp_path / name}",
                 "k=3", "temperature=1.0", "top_p=1.0", "max_tokens=16", f"seed={seed}", "backend=hf"])
        return tmp_path / name

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    # 1. same seed: byte-identical samples
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
    # 2. same seed: the same metrics (all but wall-clock timing)
    assert without_timing(a / "metrics.json") == without_timing(b / "metrics.json")
    recs_a, recs_c = read_jsonl(a / "samples.jsonl"), read_jsonl(c / "samples.jsonl")
    # 3. it really samples: the K responses of a problem are not all one text
    by_id: dict[str, set[str]] = {}
    for r in recs_a:
        by_id.setdefault(r["id"], set()).add(r["text"])
    assert sum(len(v) > 1 for v in by_id.values()) >= len(by_id) // 2
    # 4. another seed draws other responses (same problems and sample indices)
    assert [(r["id"], r["sample"]) for r in recs_a] == [(r["id"], r["sample"]) for r in recs_c]
    differ = sum(x["text"] != y["text"] for x, y in zip(recs_a, recs_c))
    assert differ > len(recs_a) // 2, f"seed 1 changed only {differ} of {len(recs_a)} samples"


def _pair_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Six problems, K = 4: Long 3/4 right, Short 1/4 right, all texts distinct (9 group candidates, M1 = 4)."""
    probs, long, short = [], [], []
    for i in range(6):
        pid = f"q{i}"
        probs.append({"id": pid, "problem": f"What is {i} + 40?", "answer": str(i + 40), "level": 1 + i % 5})
        for j in range(4):
            ok = j != 3
            long.append({"id": pid, "sample": j, "level": 1 + i % 5, "n_tokens": 30 + 7 * j + i,
                         "text": f"long {i}.{j}: thinking ... \\boxed{{{i + 40 if ok else 0}}}", "correct": ok})
            ok = j == 0
            short.append({"id": pid, "sample": j, "level": 1 + i % 5, "n_tokens": 5 + j + i,
                          "text": f"short {i}.{j} \\boxed{{{i + 40 if ok else 1}}}", "correct": ok})
    write_jsonl(tmp_path / "problems.jsonl", probs)
    write_jsonl(tmp_path / "long.jsonl", long)
    write_jsonl(tmp_path / "short.jsonl", short)
    return tmp_path / "problems.jsonl", tmp_path / "long.jsonl", tmp_path / "short.jsonl"


def test_pairs_are_deterministic_per_seed(tmp_path: Path) -> None:
    problems, long, short = _pair_inputs(tmp_path)

    def run(name: str, seed: int) -> Path:
        main_ok(["pairs", f"long_samples={long}", f"short_samples={short}", f"problems={problems}",
                 f"output={tmp_path / name}", f"seed={seed}"])
        return tmp_path / name

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    # 1. same seed: byte-identical pairs dataset
    assert (a / "pairs.jsonl").read_bytes() == (b / "pairs.jsonl").read_bytes()
    # 2. same seed: identical stats
    assert (a / "stats.json").read_bytes() == (b / "stats.json").read_bytes()
    rows_a, rows_c = read_jsonl(a / "pairs.jsonl"), read_jsonl(c / "pairs.jsonl")

    def picked(rows: list[dict], kind: str) -> list[tuple]:
        return [(r["id"], r["chosen_sample"], r["rejected_sample"]) for r in rows if r["kind"] == kind]

    assert len(picked(rows_a, "group")) == 6 * 4
    # 3. another seed draws other group pairs ...
    assert picked(rows_a, "group") != picked(rows_c, "group")
    # 4. ... while the instance pairs (no draw) stay the same
    assert picked(rows_a, "instance") == picked(rows_c, "instance") != []


def test_chunks_are_deterministic(tmp_path: Path, pico_model_dir: Path) -> None:
    rng = random.Random(0)
    probs = W.generate_problems(12, seed=5)
    data = tmp_path / "world" / "data"
    write_jsonl(data / "train.jsonl", (p.to_record() for p in probs))
    write_jsonl(data / "train_long_thoughts.jsonl",
                ({"id": p.id, "thoughts": [t.__dict__ for t in W.write_long(p, rng)]} for p in probs))
    # the world's long CoTs as sample records (no problem text: it comes from problems=)
    write_jsonl(tmp_path / "problems.jsonl", (p.to_record() for p in probs))
    rng = random.Random(1)
    write_jsonl(tmp_path / "samples.jsonl",
                ({"id": p.id, "sample": j, "level": p.level, "text": W.long_text(W.write_long(p, rng)),
                  "n_tokens": 1, "correct": True} for p in probs for j in range(2)))

    def run(name: str, *extra: str) -> Path:
        main_ok(["chunk", f"output={tmp_path / name}", *extra])
        return tmp_path / name

    world = [f"input={tmp_path / 'world'}", f"tokenizer={pico_model_dir}", "min_thought_tokens=4"]
    samples = [f"input={tmp_path / 'samples.jsonl'}", f"problems={tmp_path / 'problems.jsonl'}",
               "max_per_problem=null"]
    for extra in (world, samples):
        a, b = run("a", *extra), run("b", *extra)
        # 1./3. byte-identical chunks (world build input; sample records input)
        assert (a / "chunks.jsonl").read_bytes() == (b / "chunks.jsonl").read_bytes()
        # 2./4. identical stats
        assert (a / "stats.json").read_bytes() == (b / "stats.json").read_bytes()
        assert len(read_jsonl(a / "chunks.jsonl")) == (12 if extra is world else 24)


def test_importance_is_deterministic_per_seed(tmp_path: Path, pico_model_dir: Path, rollouts: list[str]) -> None:
    rng = random.Random(0)
    write_jsonl(tmp_path / "chunks.jsonl",
                ({"id": p.id, "problem": p.problem, "answer": p.answer, "level": p.level,
                  "thoughts": [{"text": t.text, "steps": [k, k + 1]} for k, t in enumerate(W.write_long(p, rng))]}
                 for p in W.generate_problems(3, seed=5, levels=(1, 2))))

    def run(name: str, seed: int) -> tuple[Path, list[str]]:
        start = len(rollouts)
        main_ok(["importance", f"chunks={tmp_path / 'chunks.jsonl'}", f"model={pico_model_dir}",
                 f"output={tmp_path / name}", "n=3", "temperature=1.0", "top_p=1.0", "max_tokens=10",
                 f"seed={seed}", "threads=1", "backend=hf"])
        return tmp_path / name, rollouts[start:]

    (a, ra), (b, rb), (_, rc) = run("a", 0), run("b", 0), run("c", 1)
    # 1. same seed: byte-identical importance records (acc, se, e, c, s, costs)
    assert (a / "importance.jsonl").read_bytes() == (b / "importance.jsonl").read_bytes()
    # 2. same seed: identical stats
    assert (a / "stats.json").read_bytes() == (b / "stats.json").read_bytes()
    # 3. same seed: the very same rollout texts behind the grades
    assert ra == rb and len(ra) == 3 * sum(len(r["acc"]) for r in read_jsonl(a / "importance.jsonl"))
    # 4. another seed rolls out other texts
    assert len(rc) == len(ra) and sum(x != y for x, y in zip(ra, rc)) > len(ra) // 2


def test_collaborate_is_deterministic_per_seed(tmp_path: Path, pico_model_dir: Path) -> None:
    from hybridcot.longshort.collaborate import transcript

    def run(name: str, seed: int) -> Path:
        main_ok(["collaborate", f"long_model={pico_model_dir}", f"short_model={pico_model_dir}",
                 "problems=world:test:6:seed=0", f"output={tmp_path / name}", "n=2", "max_turns=4",
                 "long_max_tokens=12", "short_max_tokens=8", "temperature=1.0", f"seed={seed}", "n_boot=0",
                 "threads=1", "backend=hf"])
        return tmp_path / name

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    # 1. same seed: byte-identical dialogues
    assert (a / "dialogues.jsonl").read_bytes() == (b / "dialogues.jsonl").read_bytes()
    # 2. same seed: the same metrics (all but wall-clock timing)
    assert without_timing(a / "metrics.json") == without_timing(b / "metrics.json")
    ta = [transcript(r) for r in read_jsonl(a / "dialogues.jsonl")]
    tc = [transcript(r) for r in read_jsonl(c / "dialogues.jsonl")]
    # 3. the two dialogues of a problem are two draws, not one repeated
    assert sum(x != y for x, y in zip(ta[::2], ta[1::2])) >= 3
    # 4. another seed gives other transcripts
    assert len(tc) == len(ta) == 12 and sum(x != y for x, y in zip(ta, tc)) > len(ta) // 2
