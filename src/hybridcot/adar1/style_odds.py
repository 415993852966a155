"""`hybridcot style-odds`: where a model stands between the embedded world's two styles, level by level.

    hybridcot style-odds models=runs/demo/adar1/models/merge,runs/demo/adar1/models/adar1 \\
        world=~/.cache/hybridcot/world/default-<hash> output=runs/demo/adar1/style_odds.json

For `per_level` test problems of each level, the world's own long and short solutions are tokenized
after the chat prompt. At the first token where the two differ (the *branch*: "Okay" against
"Quickly", after the shared "N terms. " in a `count_terms` world), it reports the model's
log P(long's token) − log P(short's token): positive means the model opens in Long's style. Greedy
decoding cannot show how far a model is from switching; this does (stops 13, 16 and 19 in
docs/experiments.md tracked DPO with it). It also reports how often the model's most likely token
there is *neither* style's, the likelihood displacement DPO can cause ("2 terms. The last is ...").

With `forced=true` it also decodes greedily from each style's opening (the world's solution up to and
including the branch token) and grades the answer: the model's accuracy in each style, whichever it
would pick itself. That separates "does not choose Short's style" from "cannot solve in it": a
merge that is a true hybrid keeps both skills (stop 20: the world's merges at α ≥ 0.4 kept almost
none of Short's).

The numbers are a diagnostic for AdaR1's merged and trained models (does the style depend on the
level?), not a stage of the chain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import field
from hybridcot.io import HybridcotError


@dataclass
class StyleOddsConfig:
    """Branch-token log-odds between the world's long and short solutions, per level and model."""

    models: list[str] = field([], help="checkpoint folders (models=a,b on the command line)")
    world: str = field("", help="the embedded world's folder: its config.yaml gives the writers, "
                                "data/test.jsonl the problems")
    per_level: int = field(20, help="test problems per level (the first ones of each level)")
    output: str = field("", help="JSON file for the results (written atomically); empty = print only")
    forced: bool = field(False, help="also grade greedy answers forced into each style (the response prefilled "
                                     "with the world's solution up to and including the branch token)")
    max_tokens: int = field(640, help="forced decoding: new tokens at most after the prefilled opening")
    batch_size: int = field(32, help="forced decoding: problems per generate call")

    def __post_init__(self) -> None:
        if isinstance(self.models, str):  # from Python; the CLI and YAML give a list
            self.models = [m for m in self.models.split(",") if m]
        if not self.models:
            raise ValueError("models is required (checkpoint folders, comma-separated)")
        if not self.world:
            raise ValueError("world is required (an embedded world's folder)")
        if self.per_level < 1:
            raise ValueError(f"per_level must be >= 1, got {self.per_level}")
        if self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_tokens and batch_size must be >= 1, got {self.max_tokens}, {self.batch_size}")


def branch_logodds(model, prompt_ids: list[int], long_ids: list[int], short_ids: list[int]) -> tuple[float, int, int]:
    """(log P(long token) − log P(short token), the branch's index in the completions, the model's most
    likely token there) at the first token where the two completions differ after `prompt_ids`."""
    import torch

    n = min(len(long_ids), len(short_ids))
    i = next((k for k in range(n) if long_ids[k] != short_ids[k]), None)
    if i is None:
        raise ValueError("the long and short completions never differ (one is a prefix of the other)")
    if not prompt_ids and i == 0:
        raise ValueError("no context before the branch token (empty prompt)")
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + long_ids[:i]])).logits[0, -1].float()
    lp = logits.log_softmax(-1)
    return (lp[long_ids[i]] - lp[short_ids[i]]).item(), i, int(lp.argmax())


def forced_greedy(model, tok, prompts: list[str], max_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of raw-text prompts, through the project's `transformers` generator on the
    model already in memory (batched, left-padded, no special tokens added to a rendered prompt)."""
    from hybridcot.generation.base import SamplingConfig
    from hybridcot.generation.hf import HFGenerator

    gen = HFGenerator(getattr(model, "name_or_path", "model"), model=model, tokenizer=tok, batch_size=batch_size,
                      progress=False)
    return [rows[0].text for rows in gen.generate(prompts, SamplingConfig(max_tokens=max_tokens))]


def world_solutions(world: Path, per_level: int) -> list[tuple[int, str, str, str, str]]:
    """(level, problem text, long solution, short solution, gold answer) for the first `per_level` test
    problems of each level, written by the world's own writers with its build settings."""
    import random

    from hybridcot.config import load_config
    from hybridcot.data import world as W
    from hybridcot.data.world_models import WorldBuildConfig, writer_config
    from hybridcot.io import read_jsonl

    cfg_path, test = world / "config.yaml", world / "data" / "test.jsonl"
    for p in (cfg_path, test):
        if not p.is_file():
            raise HybridcotError(f"{world}: not an embedded world folder (no {p.relative_to(world)})")
    cfg = load_config(WorldBuildConfig, cfg_path)
    wcfg = writer_config(cfg)
    out, taken = [], Counter()
    for line, rec in enumerate(read_jsonl(test), 1):
        try:
            p = W.WorldProblem(rec["id"], int(rec["level"]), list(rec["operands"]), list(rec["ops"]))
            text, gold = rec["problem"], str(rec["answer"])
        except (KeyError, TypeError, ValueError) as e:
            raise HybridcotError(f"{test}:{line}: not a world problem record ({e!r})") from None
        if taken[p.level] >= per_level:
            continue
        taken[p.level] += 1
        long = W.long_text(W.write_long(p, random.Random(f"odds:{p.id}"), wcfg))
        out.append((p.level, text, long, W.write_short(p, cfg.short_stepwise, cfg.count_terms), gold))
    return out


def run_style_odds(cfg: StyleOddsConfig) -> dict:
    from hybridcot.adar1.dpo import load_model
    from hybridcot.data import world as W
    from hybridcot.evaluation.report import _print
    from hybridcot.grading import grade
    from hybridcot.io import write_json

    world = Path(cfg.world).expanduser()
    items = world_solutions(world, cfg.per_level)
    levels = sorted({lv for lv, *_ in items})
    results: dict = {"world": str(world), "per_level": cfg.per_level, "models": {}}
    for m in cfg.models:
        tok, model = load_model(m)
        model.eval()
        by_level: dict[int, list[tuple[float, bool, str]]] = {lv: [] for lv in levels}
        openings: dict[str, list[str]] = {"long": [], "short": []}  # prompt + the style's opening, as text
        for lv, text, long, short, _ in items:
            prompt = tok.apply_chat_template([{"role": "user", "content": W.user_prompt(text)}], tokenize=False,
                                             add_generation_prompt=True)
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            l_ids = tok(prompt + long, add_special_tokens=False)["input_ids"][len(p_ids):]
            s_ids = tok(prompt + short, add_special_tokens=False)["input_ids"][len(p_ids):]
            odds, i, top = branch_logodds(model, p_ids, l_ids, s_ids)
            by_level[lv].append((odds, top not in (l_ids[i], s_ids[i]), tok.decode([top])))
            openings["long"].append(prompt + tok.decode(l_ids[:i + 1]))
            openings["short"].append(prompt + tok.decode(s_ids[:i + 1]))
        res = {}
        for lv, vals in by_level.items():
            tops = Counter(t for _, neither, t in vals if neither)
            res[str(lv)] = {"logodds": sum(v for v, _, _ in vals) / len(vals),
                            "neither_share": sum(n for _, n, _ in vals) / len(vals),
                            "neither_top": tops.most_common(1)[0][0] if tops else None, "n": len(vals)}
        if cfg.forced:
            for style, prompts in openings.items():
                texts = forced_greedy(model, tok, prompts, cfg.max_tokens, cfg.batch_size)
                right: dict[int, list[bool]] = {lv: [] for lv in levels}
                for (lv, *_, gold), cont in zip(items, texts):
                    right[lv].append(grade(cont, gold).correct)  # the opening holds no answer: grade what follows
                for lv in levels:
                    res[str(lv)].setdefault("forced_accuracy", {})[style] = sum(right[lv]) / len(right[lv])
        results["models"][m] = res
    _print(["model"] + [f"L{lv}" for lv in levels] + ["neither style's token on top"],
           [[m] + [f"{r[str(lv)]['logodds']:+.2f}" for lv in levels]
            + [" ".join(f"L{lv} {r[str(lv)]['neither_share']:.0%} {r[str(lv)]['neither_top']!r}"
                        for lv in levels if r[str(lv)]["neither_share"]) or "-"]
            for m, r in results["models"].items()],
           "style log-odds at the branch token (log P(Long's) − log P(Short's); > 0: Long's style)")
    if cfg.forced:
        _print(["model", "style"] + [f"L{lv}" for lv in levels],
               [[m, style] + [f"{r[str(lv)]['forced_accuracy'][style]:.0%}" for lv in levels]
                for m, r in results["models"].items() for style in ("long", "short")],
               "accuracy forced into each style (greedy from the world's opening up to the branch token)")
    if cfg.output:
        write_json(Path(cfg.output), results)
        print(f"style-odds -> {cfg.output}")
    return results
