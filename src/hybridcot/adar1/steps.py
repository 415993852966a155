"""The steps of `hybridcot adar1`, each a stage call guarded by a completeness check.

Every step returns "ran", "skipped" (its output is complete and was made with the same settings:
nothing is rewritten) or "copied" (an identical finished eval was reused). An output made with other
settings than the ones asked for is an error naming the folder and the first differing setting,
never silently reused or overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from hybridcot.adar1.dpo import RESUME_FREE, DPOStageConfig
from hybridcot.adar1.pairs import PairsConfig
from hybridcot.adar1.sample import SampleConfig
from hybridcot.adar1.sft import SFTStageConfig
from hybridcot.config import config_dict, same_setting
from hybridcot.evaluation.stage import RUN_KEYS, EvalConfig
from hybridcot.io import HybridcotError, read_json, write_json, write_jsonl
from hybridcot.merging import MergeConfig

EVAL_KEYS = (*RUN_KEYS, "limit")
SAMPLE_KEYS = ("model", "problems", "k", "temperature", "top_p", "max_tokens", "seed", "limit",
               "fallback_last_number")


def _stale(folder: Path, key: str, old: Any, new: Any) -> HybridcotError:
    return HybridcotError(f"{folder}: made with {key}={old!r} but the recipe now gives {new!r}; remove it "
                          "(and what was made from it) or choose a new output")


def _refuse_changed(folder: Path, old: dict, new: dict, keys) -> None:
    """Raise `_stale` for the first of `keys` whose value in the existing output differs from the recipe's."""
    key = next((k for k in keys if k in old and k in new and not same_setting(old[k], new[k])), None)
    if key:
        raise _stale(folder, key, old[key], new[key])


def read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def short_solution(problem: Any) -> str:
    """A short worked solution ending in \\boxed{answer}: GSM8K's without its <<...>> calculator notes."""
    sol = (problem.meta or {}).get("solution")
    if not isinstance(sol, str) or not sol.strip():
        raise HybridcotError(f"make_short: problem {problem.id!r} has no worked solution (GSM8K 'answer' with "
                             "'####', or MATH 'solution')")
    if "\\boxed" in sol:
        return sol.strip()
    body = re.sub(r"<<[^>]*>>", "", sol)
    body = "\n".join(line.rstrip() for line in body.splitlines() if not line.lstrip().startswith("####")).strip()
    return f"{body}\nThe answer is \\boxed{{{problem.answer}}}."


def make_short_step(sc: SFTStageConfig, problems: str, limit: int | None, accelerate_config: str = "") -> str:
    """Short = SFT of Long (`sc.model`) on short solutions of `problems` (rows written once to `sc.data`)."""
    from hybridcot.data.problems import load_problems
    from hybridcot.generation import chat_prompt

    data = Path(sc.data)
    source = {"problems": problems, "limit": limit}
    src_path = data.parent / "source.json"
    if data.is_file() and src_path.is_file():
        old = read_json(src_path)
        _refuse_changed(data.parent, old, source, source)
    else:
        rows = [{"prompt": chat_prompt(p.problem), "completion": [{"role": "assistant", "content": short_solution(p)}],
                 "id": p.id} for p in load_problems(problems, limit=limit)]
        write_json(src_path, {**source, "rows": len(rows)})
        write_jsonl(data, rows)
    return train_step(sc, "sft", accelerate_config)


def merge_step(mc: MergeConfig) -> str:
    """The merged checkpoint (and the α sweep, if asked), unless merge.json / sweep.json are there."""
    from hybridcot.merging import run_merge

    out = Path(mc.output)
    need_merge = not (out / "merge.json").is_file()
    if not need_merge:
        info = read_json(out / "merge.json")
        if abs(float(info.get("alpha", -1)) - mc.alpha) > 1e-12:
            raise _stale(out, "alpha", info.get("alpha"), mc.alpha)
        for side in ("long", "short"):
            if info.get(side) != str(Path(getattr(mc, side)).resolve()):
                raise _stale(out, side, info.get(side), str(Path(getattr(mc, side)).resolve()))
    need_sweep = bool(mc.alpha_sweep) and not (Path(mc.sweep_dir) / "sweep.json").is_file()
    if not (need_merge or need_sweep):
        return "skipped"
    run_merge(dataclasses.replace(mc, output=mc.output if need_merge else "",
                                  alpha_sweep=mc.alpha_sweep if need_sweep else []))
    return "ran"


def _finished_unchanged(out: Path, done_file: str, config_file: str, new: dict, keys) -> bool:
    """True when `out` holds a finished output (`done_file`) made with the same `keys` as `new`
    (read from `config_file`); an error naming the key when they differ; False when unfinished."""
    if not ((out / done_file).is_file() and (out / config_file).is_file()):
        return False
    _refuse_changed(out, read_yaml(out / config_file), new, keys)
    return True


def sample_step(sc: SampleConfig) -> str:
    """K samples per problem (run_sample resumes a partial run; a finished one is skipped)."""
    from hybridcot.adar1.sample import run_sample

    if _finished_unchanged(Path(sc.output), "metrics.json", "sample_config.yaml", config_dict(sc), SAMPLE_KEYS):
        return "skipped"
    run_sample(sc)
    return "ran"


def pairs_step(pc: PairsConfig) -> str:
    """pairs.jsonl + stats.json, unless written with the same config."""
    from hybridcot.adar1.pairs import run_pairs

    new = config_dict(pc)
    if _finished_unchanged(Path(pc.output), "pairs.jsonl", "config.yaml", new, new):
        return "skipped"
    run_pairs(pc)
    return "ran"


def baseline_data_step(pc: PairsConfig, shortest_dir: Path, merge_sft_dir: Path, baselines: list[str]) -> str:
    """DPO-shortest pairs and Merge+SFT rows from the samples `pc` reads (each skipped when written)."""
    from hybridcot.adar1.pairs import group_chosen_sft_rows, load_samples, shortest_vs_longest_pairs
    from hybridcot.data.problems import load_problems

    jobs = {"dpo_shortest": (shortest_dir, "pairs.jsonl", {"long_samples": pc.long_samples,
                                                                "problems": pc.problems, "m2": pc.m2}),
            "merge_sft": (merge_sft_dir, "sft.jsonl", {"long_samples": pc.long_samples,
                                                            "short_samples": pc.short_samples, "problems": pc.problems,
                                                            "epsilon": pc.epsilon, "m1": pc.m1, "seed": pc.seed})}
    todo = []
    for name in (b for b in ("dpo_shortest", "merge_sft") if b in baselines):
        folder, fname, source = jobs[name]
        if (folder / fname).is_file() and (folder / "source.json").is_file():
            old = read_json(folder / "source.json")
            _refuse_changed(folder, old, source, source)
            continue
        todo.append(name)
    if not todo:
        return "skipped"
    problems = load_problems(pc.problems)
    answers = {p.id: p.answer for p in problems}
    long_s = load_samples(pc.long_samples, answers)
    for name in todo:
        folder, fname, source = jobs[name]
        if name == "dpo_shortest":
            rows, stats = shortest_vs_longest_pairs(long_s, problems, m2=pc.m2)
        else:
            short_s = load_samples(pc.short_samples, answers)
            rows = group_chosen_sft_rows(long_s, short_s, problems, epsilon=pc.epsilon, m1=pc.m1, seed=pc.seed)
            styles = [r["style"] for r in rows]
            stats = {"rows": len(rows), "by_style": {s: styles.count(s) for s in sorted(set(styles))},
                     "problems": len({r["id"] for r in rows})}
        if not rows:
            raise HybridcotError(f"{name}: no training rows from {pc.long_samples} (no correct Long response with a "
                                 "longer one beside it?); drop it from baselines: or sample more problems")
        write_json(folder / "source.json", source)
        write_json(folder / "stats.json", stats)
        write_jsonl(folder / fname, rows)
        print(f"{name}: {len(rows)} rows -> {folder / fname}")
    return "ran"


ROUND_STYLES = ("preferred", "own")  # whose style an on-policy round pairs within (AdaR1Config.rounds_style)


def onpolicy_pairs_step(samples: str, bilevel_pairs: str, problems: str, folder: Path, m2: int,
                        style: str = "preferred") -> str:
    """An on-policy round's instance pairs (`pairs.onpolicy_instance_pairs`) from the trained model's own
    samples, in each problem's style: the one `bilevel_pairs` prefers (`style` "preferred") or the one most
    of the model's samples are in ("own", `pairs.own_styles`); skipped when written with the same sources."""
    from hybridcot.adar1.pairs import load_samples, onpolicy_instance_pairs, own_styles, preferred_styles
    from hybridcot.data.problems import load_problems

    if style not in ROUND_STYLES:
        raise HybridcotError(f"on-policy pairs: style must be one of {list(ROUND_STYLES)}, got {style!r}")
    source = {"samples": samples, "bilevel_pairs": bilevel_pairs, "problems": problems, "m2": m2, "style": style}
    if (folder / "pairs.jsonl").is_file() and (folder / "source.json").is_file():
        old = read_json(folder / "source.json")
        _refuse_changed(folder, {"style": "preferred", **old}, source, source)  # stop 23's folders: preferred
        return "skipped"
    folder.mkdir(parents=True, exist_ok=True)
    probs = load_problems(problems)
    own = load_samples(samples, {p.id: p.answer for p in probs})
    preferred = preferred_styles(bilevel_pairs)
    styles = own_styles(own, preferred) if style == "own" else preferred
    rows, stats = onpolicy_instance_pairs(own, probs, styles, m2=m2)
    if style == "own":
        stats["style"] = "own"
        stats["own_differs_from_preferred"] = sum(1 for k, v in styles.items() if k in preferred and preferred[k] != v)
    if not rows:
        raise HybridcotError(f"{folder}: no on-policy pairs from {samples} (skipped {stats['skipped']}); "
                             "set rounds: 0 or sample more problems")
    write_json(folder / "source.json", source)
    write_json(folder / "stats.json", stats)
    write_jsonl(folder / "pairs.jsonl", rows)
    which = "model's own" if style == "own" else "preferred"
    print(f"on-policy pairs: {len(rows)} rows ({stats['in_preferred_style']:.0%} of the samples in the {which} "
          f"style) -> {folder / 'pairs.jsonl'}")
    return "ran"


def train_step(cfg: DPOStageConfig | SFTStageConfig, stage: str, accelerate_config: str = "") -> str:
    """Train with the dpo or sft stage, in-process or under `accelerate launch`; skip a finished output."""
    out = Path(cfg.output)
    meta_path = out / "hybridcot.json"
    if meta_path.is_file():
        meta = read_json(meta_path)
        if isinstance(meta, dict) and meta.get("stage") == stage:
            old, new = meta.get("config") or {}, config_dict(cfg)
            _refuse_changed(out, old, new, [k for k in new if k not in RESUME_FREE])
            return "skipped"
    if accelerate_config:
        _launch(cfg, stage, accelerate_config)
    elif stage == "dpo":
        from hybridcot.adar1.dpo import run_dpo

        run_dpo(cfg)  # type: ignore[arg-type]
    else:
        from hybridcot.adar1.sft import run_sft

        run_sft(cfg)  # type: ignore[arg-type]
    return "ran"


def _launch(cfg: Any, stage: str, accelerate_config: str) -> None:
    """Run one training stage as `accelerate launch --config_file <cfg> -m hybridcot.cli <stage> -c <yaml>`."""
    from hybridcot.config import save_config

    if not Path(accelerate_config).is_file():
        raise HybridcotError(f"{accelerate_config}: accelerate config not found")
    out = Path(cfg.output)
    stage_yaml = save_config(cfg, out.parent, name=f"{out.name}.{stage}.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
           "-m", "hybridcot.cli", stage, "--config", str(stage_yaml)]
    print("adar1: " + " ".join(cmd))
    rc = subprocess.call(cmd)
    if rc != 0:
        raise HybridcotError(f"{stage} {out}: `accelerate launch` exited with status {rc}")


def eval_step(ec: EvalConfig, reuse: Path | None = None) -> str:
    """Evaluate (or skip a finished eval, or copy an identical finished one from `reuse`)."""
    from hybridcot.evaluation.stage import run_eval

    out = Path(ec.output)
    new = dataclasses.asdict(ec)
    if (out / "metrics.json").is_file():
        old = read_yaml(out / "config.yaml")
        _refuse_changed(out, old, new, EVAL_KEYS)
        return "skipped"
    if reuse is not None and not out.exists() and (reuse / "metrics.json").is_file():
        old = read_yaml(reuse / "config.yaml")
        if all(k in old and old[k] == new[k] for k in EVAL_KEYS if k != "limit") and old.get("limit") == ec.limit:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
            shutil.copytree(reuse, tmp, dirs_exist_ok=True)
            tmp.chmod(0o755)
            tmp.rename(out)
            print(f"eval {ec.name}: reusing the identical world eval {reuse}")
            return "copied"
    run_eval(ec)
    return "ran"


def summary_step(path: Path, metrics: dict[str, dict], add_if_missing: tuple[str, ...] = ()) -> str:
    """Add or replace each system's row in summary.json (rows in `add_if_missing` only when absent)."""
    from hybridcot.evaluation.report import summary_entry, update_summary

    rows = read_json(path) if path.is_file() else []
    have = {r.get("name"): r for r in rows if isinstance(r, dict)} if isinstance(rows, list) else {}
    changed = False
    for name, m in metrics.items():
        entry = jsonable(summary_entry(m, name))
        if name in add_if_missing and name in have:
            continue
        if have.get(name) != entry:
            update_summary(path, entry)
            changed = True
    return "ran" if changed else "skipped"


def world_step(wc: Any) -> str:
    """Build the embedded world (a WorldBuildConfig) unless its metrics.json and the finisher it asks for
    are there (a world built with finisher_steps=0 gets its finisher when a chain asks for one)."""
    from hybridcot.data.world_models import build_world, finisher_ready

    if (wc.out_dir() / "metrics.json").is_file() and finisher_ready(wc, wc.out_dir()):
        return "skipped"
    build_world(wc)
    return "ran"


class ChainLog:
    """The steps of one chain run (`hybridcot adar1`, `hybridcot longshort`): each step's status and
    time, one line per step that did something, and at the end the chain's config.yaml (rewritten
    only when it changed), chain.json (only when a step ran) and a one-line summary.

    chain.json's steps are this run's; a step skipped as done keeps, as `last_ran_s`, the seconds
    the previous chain.json recorded for it (its `seconds` when it ran then, else its `last_ran_s`),
    so the folder's record tells what every step cost when it last ran (`chain_seconds`)."""

    def __init__(self, chain: str, out: Path):
        self.chain, self.out, self.steps = chain, out, []
        out.mkdir(parents=True, exist_ok=True)

    def step(self, name: str, fn, *args) -> None:
        import time

        t0 = time.time()
        status = fn(*args)
        self.steps.append({"step": name, "status": status, "seconds": round(time.time() - t0, 3)})
        if status != "skipped":
            print(f"{self.chain}: {name} {status} in {time.time() - t0:.1f}s")

    def finish(self, cfg: Any) -> list[dict]:
        from hybridcot.config import save_config

        ran = [s for s in self.steps if s["status"] != "skipped"]
        if read_yaml(self.out / "config.yaml") != jsonable(config_dict(cfg)):  # written once every step is done
            save_config(cfg, self.out)
        if ran:
            before = {s.get("step"): last_ran_seconds(s) for s in _previous_steps(self.out / "chain.json")}
            for s in self.steps:
                if s["status"] == "skipped" and before.get(s["step"]) is not None:
                    s["last_ran_s"] = before[s["step"]]
            write_json(self.out / "chain.json", {"recipe": cfg.recipe, "steps": self.steps})
        print(f"{self.chain}: {len(ran)} of {len(self.steps)} steps ran"
              + (f" ({', '.join(s['step'] for s in ran)})" if ran else " (everything was already done)")
              + f" -> {self.out}")
        return self.steps


def _previous_steps(path: Path) -> list[dict]:
    """The steps of an earlier chain.json; [] where there is none or it cannot be read (a record of
    times is not worth failing a finished chain over)."""
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps")
    except (OSError, ValueError, AttributeError):
        return []
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def last_ran_seconds(step: dict) -> float | None:
    """Seconds a chain.json step took when it last ran: `seconds` if it ran in that record, else its
    `last_ran_s` (None when no record has it: e.g. outputs copied in from elsewhere)."""
    if step.get("status") not in (None, "skipped") and isinstance(step.get("seconds"), (int, float)):
        return float(step["seconds"])
    v = step.get("last_ran_s")
    return float(v) if isinstance(v, (int, float)) else None


def chain_seconds(folder: str | Path) -> dict:
    """What a chain folder's steps cost when each last ran, from its chain.json: {"total_s": sum of the
    timed steps, "untimed": [steps with no recorded run]}; the world step, a cache, is left out."""
    steps = [s for s in _previous_steps(Path(folder) / "chain.json") if s.get("step") != "world"]
    times = {s.get("step"): last_ran_seconds(s) for s in steps}
    return {"total_s": round(sum(v for v in times.values() if v is not None), 1),
            "untimed": [k for k, v in times.items() if v is None]}

