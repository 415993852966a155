"""`hybridcot style-odds`: the branch token, its log-odds, displacement, and the world folder it reads."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hybridcot.adar1.style_odds import StyleOddsConfig, branch_logodds, forced_greedy, run_style_odds, world_solutions
from hybridcot.io import HybridcotError


class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token logits are the same at every position; records what it was fed."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits, self.seen = torch.tensor(logits), []

    def forward(self, ids: torch.Tensor):
        self.seen.append(ids[0].tolist())
        return SimpleNamespace(logits=self.logits.expand(1, ids.shape[1], -1))


def test_branch_logodds_is_the_log_ratio_at_the_first_differing_token() -> None:
    m = FixedLogits([0.0, 2.0, -1.0, 5.0])
    odds, i, top = branch_logodds(m, [9, 9], [0, 1, 3], [0, 2, 1])
    assert i == 1 and m.seen == [[9, 9, 0]]  # fed the prompt and the shared prefix only
    assert odds == pytest.approx(3.0) and top == 3  # token 3 is neither style's: displacement
    odds, i, top = branch_logodds(FixedLogits([0.0, 2.0, -1.0, 5.0]), [7], [2, 0], [1])
    assert i == 0 and odds == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="no context"):
        branch_logodds(m, [], [2, 0], [1])
    with pytest.raises(ValueError, match="never differ"):
        branch_logodds(m, [1], [0, 1], [0, 1, 2])


def _world(tmp_path: Path, count_terms: bool) -> Path:
    from hybridcot.config import save_config
    from hybridcot.data.world_models import WorldBuildConfig, world_data
    from hybridcot.io import write_jsonl

    cfg = WorldBuildConfig(preset="tiny", n_test=20, count_terms=count_terms, short_stepwise=True)
    out = tmp_path / "world"
    save_config(cfg, out)
    _, test, _ = world_data(cfg)
    write_jsonl(out / "data" / "test.jsonl", (p.to_record() for p in test))
    return out


def test_world_solutions_use_the_worlds_writers(tmp_path: Path) -> None:
    items = world_solutions(_world(tmp_path, True), per_level=2)
    assert sorted(lv for lv, *_ in items) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for lv, text, long, short, gold in items:
        n = lv + 1  # level k has k + 1 terms
        assert long.startswith(f"{n} terms. Okay, let me work out") and short.startswith(f"{n} terms. Quickly: ")
        assert text in (json.loads(line)["problem"] for line in (tmp_path / "world/data/test.jsonl").open())
        assert short.endswith(f"\\boxed{{{gold}}}.")
    plain = world_solutions(_world(tmp_path / "b", False), per_level=1)
    assert all(long.startswith("Okay") and short.startswith("Quickly") for _, _, long, short, _ in plain)


def test_run_style_odds_on_a_model(tmp_path: Path, pico_model_dir: Path) -> None:
    world = _world(tmp_path, True)
    out = tmp_path / "odds.json"
    res = run_style_odds(StyleOddsConfig(models=str(pico_model_dir), world=str(world), per_level=3, output=str(out)))
    assert json.loads(out.read_text()) == res
    per = res["models"][str(pico_model_dir)]
    assert sorted(per) == ["1", "2", "3", "4", "5"] and all(v["n"] == 3 for v in per.values())
    # the same value by hand for one problem: the branch follows the shared "N terms. "
    from hybridcot.adar1.dpo import load_model
    from hybridcot.data.world import user_prompt

    tok, model = load_model(str(pico_model_dir))
    lv, text, long, short, _ = world_solutions(world, 1)[0]
    prompt = tok.apply_chat_template([{"role": "user", "content": user_prompt(text)}], tokenize=False,
                                     add_generation_prompt=True)
    full_l, full_s = tok(prompt + long)["input_ids"], tok(prompt + short)["input_ids"]
    k = next(i for i, (a, b) in enumerate(zip(full_l, full_s)) if a != b)
    assert tok.decode(full_l[:k]).rstrip().endswith(f"{lv + 1} terms.")
    with torch.no_grad():
        lp = model(torch.tensor([full_l[:k]])).logits[0, -1].log_softmax(-1)
    first = run_style_odds(StyleOddsConfig(models=str(pico_model_dir), world=str(world), per_level=1))
    assert first["models"][str(pico_model_dir)][str(lv)]["logodds"] == pytest.approx((lp[full_l[k]] - lp[full_s[k]]).item(),
                                                                                   abs=1e-4)


def test_bad_inputs_get_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HybridcotError, match="not an embedded world folder"):
        world_solutions(tmp_path, 2)
    world = _world(tmp_path, False)
    with (world / "data" / "test.jsonl").open("a") as f:
        f.write(json.dumps({"id": "x", "problem": "What is 1+2?", "level": 1}) + "\n")
    with pytest.raises(HybridcotError, match=r"test.jsonl:21: not a world problem record"):
        world_solutions(world, 100)
    for bad in (dict(models="", world="w"), dict(models="m", world=""), dict(models="m", world="w", per_level=0),
                dict(models="m", world="w", max_tokens=0)):
        with pytest.raises(ValueError):
            StyleOddsConfig(**bad)


def test_forced_greedy_batches_match_one_at_a_time(pico_model_dir: Path) -> None:
    from hybridcot.adar1.dpo import load_model

    tok, model = load_model(str(pico_model_dir))
    prompts = ["What is 12+7?", "2", "Okay, let me"]
    together = forced_greedy(model, tok, prompts, max_tokens=6, batch_size=3)
    alone = [forced_greedy(model, tok, [p], max_tokens=6, batch_size=1)[0] for p in prompts]
    assert together == alone and len(together) == 3


def test_forced_accuracy_grades_each_styles_continuation(tmp_path: Path, pico_model_dir: Path, monkeypatch) -> None:
    """forced=true: each style's opening ends at the branch token ("Okay" / "Quickly"), and what the
    model writes after it is graded per level and style."""
    import hybridcot.adar1.style_odds as so
    from hybridcot.adar1.dpo import load_model

    world = _world(tmp_path, True)
    items = world_solutions(world, 2)
    tok, _ = load_model(str(pico_model_dir))
    seen = {}

    def fake(model, tok_, prompts, max_tokens, batch_size):
        tail = prompts[0].split("terms. ")[-1]  # the branch token: a start of "Okay" or "Quickly"
        style = "short" if tail and "Quickly".startswith(tail) else "long"
        seen[style] = prompts
        # Short's style right on levels 1-2 only, Long's everywhere
        return [f" so \\boxed{{{gold if style == 'long' or lv <= 2 else 'x'}}}." for lv, *_, gold in items]

    monkeypatch.setattr(so, "forced_greedy", fake)
    res = run_style_odds(StyleOddsConfig(models=str(pico_model_dir), world=str(world), per_level=2, forced=True))
    per = res["models"][str(pico_model_dir)]
    assert [per[str(lv)]["forced_accuracy"] for lv in range(1, 6)] == \
        [{"long": 1.0, "short": 1.0}] * 2 + [{"long": 1.0, "short": 0.0}] * 3
    for style, word in (("long", "Okay"), ("short", "Quickly")):
        heads = [t.split("<|im_start|>assistant\n")[-1] for t in seen[style]]
        assert [h.split(" terms. ")[0] for h in heads] == [str(lv + 1) for lv, *_ in items]
        assert all(h.split(" terms. ")[1] and word.startswith(h.split(" terms. ")[1]) for h in heads)
    assert "forced_accuracy" not in run_style_odds(StyleOddsConfig(models=str(pico_model_dir), world=str(world),
                                                                   per_level=1))["models"][str(pico_model_dir)]["1"]
