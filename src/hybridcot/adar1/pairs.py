"""`hybridcot pairs`: AdaR1's bi-level preference data from Long and Short samples (METHODS.md, AdaR1 4-5).

    hybridcot pairs long_samples=runs/demo/sample/long short_samples=runs/demo/sample/short \\
        problems=world:train:2000:seed=1 output=runs/demo/pairs

Inputs are two per-sample JSONL files as `hybridcot eval` writes them (one graded response a line:
id, sample, text, n_tokens, correct, ...; an eval output folder means its samples.jsonl).
`hybridcot generate` records ({id, model, samples: [...]}, ungraded) are read too and graded here
against the problem set with the one grader. Per problem, with K samples from each model:

* p_L = correct_L / K, p_S = correct_S / K; a problem with p_L = p_S = 0 is skipped ("both_zero").
* Preferred style: Long iff p_L - p_S > ε (default ε = 1/(2K), which makes it "Long has more right").
* **Group pairs**: chosen from the preferred group (its correct responses where any, else all of
  it), rejected from the other group (its wrong ones where any, else all); M1 distinct pairs drawn
  from that product with `random.Random(f"{seed}:{id}:group")`.
* **Instance pairs**: within the preferred group, chosen = its shortest correct response (ties:
  lowest sample index), rejected = the M2 longest other responses (ties: lowest index).

No pair ever holds two identical texts (compared after stripping whitespace), and no two pairs of
a problem and kind hold the same two texts. Our own rule beyond METHODS.md: an instance pair must
carry a length preference, so a rejected response is longer than the chosen one, or as long and
wrong (a group whose other responses are all shorter gives no instance pair, "no_longer_in_group").

Outputs in `output/`: `pairs.jsonl` (a TRL conversational preference dataset: prompt / chosen /
rejected message lists, plus metadata columns id, level, kind, preferred, chosen_style,
rejected_style, chosen_tokens, rejected_tokens, chosen_correct, rejected_correct, chosen_sample,
rejected_sample, p_long, p_short), `stats.json` and `config.yaml`. TRL's DPOTrainer uses the first
three columns and drops the rest (checked with trl 1.16).

The baselines reuse the pieces: `shortest_vs_longest_pairs` (DPO-shortest: the Long model's own
shortest correct vs longest responses) and `group_chosen_sft_rows` (Merge+SFT: the group-level
chosen responses as prompt/completion rows); `include="group"` is the group-level-only ablation.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridcot.config import field, save_config
from hybridcot.io import HybridcotError, iter_jsonl, write_json, write_jsonl

INCLUDE = ("both", "group", "instance")
GRADE_CHUNK = 256  # ungraded samples per grader call (and per progress update)
Pair = tuple["Response", "Response"]


@dataclass
class PairsConfig:
    """Build AdaR1's group- and instance-level preference pairs from Long and Short samples."""

    long_samples: str = field("", help="Long model's samples: per-sample JSONL from `hybridcot eval` (or its "
                                       "output folder); `hybridcot generate` records are graded here")
    short_samples: str = field("", help="Short model's samples, same format and K per problem as long_samples")
    problems: str = field("", help="problem set spec for load_problems (prompt text, level, gold answer)")
    output: str = field("", help="output folder for pairs.jsonl, stats.json and config.yaml")
    epsilon: float | None = field(None, help="Long is preferred iff p_L - p_S > epsilon (null = 1/(2K), paper code)")
    m1: int = field(4, help="group-level pairs per problem (M1), drawn without replacement")
    m2: int = field(2, help="instance-level pairs per problem (M2): shortest correct vs the M2 longest others")
    seed: int = field(0, help="seed of the group-level draw (per problem: '{seed}:{id}:group')")
    include: str = field("both", help="which pairs to write: both | group (the group-only ablation) | instance")

    def __post_init__(self) -> None:
        for key in ("long_samples", "short_samples", "problems", "output"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required")
        if self.epsilon is not None and not 0 <= self.epsilon < 1:
            raise ValueError(f"epsilon must be in [0, 1) or null, got {self.epsilon}")
        if self.m1 < 1:
            raise ValueError(f"m1 must be >= 1, got {self.m1}")
        if self.m2 < 1:
            raise ValueError(f"m2 must be >= 1, got {self.m2}")
        if self.include not in INCLUDE:
            raise ValueError(f"include must be one of {list(INCLUDE)}, got {self.include!r}")


@dataclass(frozen=True)
class Response:
    """One sampled response of one model to one problem."""

    sample: int
    text: str
    n_tokens: int
    correct: bool
    level: int | None = None


# ---------------------------------------------------------------- reading samples


def load_samples(path: str | Path, answers: Mapping[str, str] | None = None, *,
                 grade_timeout: float = 5.0) -> dict[str, list[Response]]:
    """Problem id -> its responses (sorted by sample index) from an eval or generate JSONL file.

    Records without `correct` (generate's) are graded against `answers`; without answers that is
    an error. Bad records raise HybridcotError naming file, line and field.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "samples.jsonl"
    raw: dict[str, dict[int, dict]] = {}
    for lineno, rec in iter_jsonl(path):
        where = f"{path}:{lineno}"
        pid = rec.get("id")
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
            raise HybridcotError(f"{where}: field 'id' must be a non-empty string or integer, got {pid!r}")
        pid = str(pid)
        if "samples" in rec and "text" not in rec:  # generate shape: one problem a line
            items = rec["samples"]
            if not isinstance(items, list):
                raise HybridcotError(f"{where}: field 'samples' must be a list, got {type(items).__name__}")
            entries = [(j, s, f"{where}: samples[{j}]") for j, s in enumerate(items)]
        else:
            j = rec.get("sample")
            if isinstance(j, bool) or not isinstance(j, int) or j < 0:
                raise HybridcotError(f"{where}: field 'sample' must be an integer >= 0, got {j!r}")
            entries = [(j, rec, where)]
        for j, s, at in entries:
            if not isinstance(s, dict):
                raise HybridcotError(f"{at}: expected an object, got {type(s).__name__}")
            if j in raw.setdefault(pid, {}):
                raise HybridcotError(f"{at}: sample {j} of problem {pid!r} appears twice")
            raw[pid][j] = _check_sample(s, at, rec.get("level"))
    pending = [(pid, j) for pid, g in raw.items() for j, r in g.items() if r["correct"] is None]
    if pending:
        pid, j = pending[0]
        if answers is None or any(p not in answers for p, _ in pending):
            missing = pid if answers is None else next(p for p, _ in pending if p not in answers)
            raise HybridcotError(f"{raw[pid][j]['where']}: field 'correct' is missing and problem {missing!r} "
                                 "has no gold answer to grade it with")
        from hybridcot.evaluation.stage import grade_responses
        from hybridcot.ui import progress

        with progress(total=len(pending), desc=f"grade {path.parent.name}/{path.name}", unit="sample") as bar:
            for i in range(0, len(pending), GRADE_CHUNK):
                part = pending[i:i + GRADE_CHUNK]
                results = grade_responses([raw[p][k]["text"] for p, k in part], [answers[p] for p, _ in part],
                                          timeout=grade_timeout)
                for (p, k), res in zip(part, results):
                    raw[p][k]["correct"] = bool(res.correct)
                bar.update(len(part))
    return {pid: [Response(sample=j, text=r["text"], n_tokens=r["n_tokens"], correct=r["correct"],
                           level=r["level"]) for j, r in sorted(g.items())] for pid, g in raw.items()}


def _check_sample(s: dict, where: str, level: Any) -> dict:
    text = s.get("text")
    if not isinstance(text, str):
        raise HybridcotError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    n = s.get("n_tokens")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise HybridcotError(f"{where}: field 'n_tokens' must be an integer >= 0, got {n!r}")
    correct = s.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise HybridcotError(f"{where}: field 'correct' must be true or false, got {correct!r}")
    level = s.get("level", level)
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise HybridcotError(f"{where}: field 'level' must be an integer or null, got {level!r}")
    return {"text": text, "n_tokens": n, "correct": correct, "level": level, "where": where}


# ---------------------------------------------------------------- the method


def decide_preference(correct_long: int, correct_short: int, k: int, epsilon: float | None = None) -> str | None:
    """"long" iff p_L - p_S > ε (default 1/(2K)), else "short"; None when both are zero."""
    if correct_long == 0 and correct_short == 0:
        return None
    eps = 1 / (2 * k) if epsilon is None else epsilon
    # The tolerance keeps "exactly ε" on the Short side when ε was typed as a rounded float (1/3 -> 0.3333).
    return "long" if (correct_long - correct_short) / k - eps > 1e-9 else "short"


def _same(a: Response, b: Response) -> bool:
    return a.text.strip() == b.text.strip()


def group_pairs(preferred: Sequence[Response], other: Sequence[Response], m1: int,
                rng: random.Random) -> list[Pair]:
    """Up to `m1` distinct (chosen, rejected) pairs from preferred-correct x other-wrong (see module doc)."""
    chosen = [r for r in preferred if r.correct] or list(preferred)
    rejected = [r for r in other if not r.correct] or list(other)
    seen: set[tuple[str, str]] = set()
    candidates: list[Pair] = []
    for c in sorted(chosen, key=lambda r: r.sample):
        for r in sorted(rejected, key=lambda r: r.sample):
            key = (c.text.strip(), r.text.strip())
            if key[0] != key[1] and key not in seen:
                seen.add(key)
                candidates.append((c, r))
    return rng.sample(candidates, min(m1, len(candidates)))


def instance_pairs(group: Sequence[Response], m2: int) -> tuple[list[Pair], str | None]:
    """(shortest correct, one of the `m2` longest others) pairs, and the skip reason when there are none."""
    correct = [r for r in group if r.correct]
    if not correct:
        return [], "no_correct_in_group"
    chosen = min(correct, key=lambda r: (r.n_tokens, r.sample))
    pairs: list[Pair] = []
    seen = {chosen.text.strip()}
    for r in sorted(group, key=lambda r: (-r.n_tokens, r.sample)):
        if len(pairs) == m2:
            break
        if r is chosen or r.text.strip() in seen:
            continue
        if r.n_tokens < chosen.n_tokens or (r.n_tokens == chosen.n_tokens and r.correct):
            continue  # no length preference to teach
        seen.add(r.text.strip())
        pairs.append((chosen, r))
    return pairs, (None if pairs else "no_longer_in_group")


def _problem_index(problems: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(problems, Mapping):
        return {str(k): v for k, v in problems.items()}
    return {str(_get(p, "id")): p for p in problems}


def _get(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def _row(prompt: list[dict], pair: Pair, *, pid: str, level: Any, kind: str, preferred: str,
         styles: tuple[str, str], p_long: float | None, p_short: float | None) -> dict:
    c, r = pair
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": c.text}],
            "rejected": [{"role": "assistant", "content": r.text}],
            "id": pid, "level": level, "kind": kind, "preferred": preferred,
            "chosen_style": styles[0], "rejected_style": styles[1],
            "chosen_tokens": c.n_tokens, "rejected_tokens": r.n_tokens,
            "chosen_correct": c.correct, "rejected_correct": r.correct,
            "chosen_sample": c.sample, "rejected_sample": r.sample, "p_long": p_long, "p_short": p_short}


def build_pairs(samples_long: Mapping[str, Sequence[Response]], samples_short: Mapping[str, Sequence[Response]],
                problems: Mapping[str, Any] | Sequence[Any], *, epsilon: float | None = None, m1: int = 4,
                m2: int = 2, seed: int = 0, include: str = "both") -> tuple[list[dict], dict]:
    """AdaR1's bi-level pairs: (rows of the preference dataset, statistics)."""
    from hybridcot.generation import chat_prompt

    if include not in INCLUDE:
        raise HybridcotError(f"include must be one of {list(INCLUDE)}, got {include!r}")
    probs = _problem_index(problems)
    ids = _ordered_ids(probs, set(samples_long) | set(samples_short))
    rows: list[dict] = []
    skipped: dict[str, Counter] = {"problem": Counter(), "group": Counter(), "instance": Counter()}
    preferred_by_level: dict[str, Counter] = {}
    ks: Counter = Counter()
    skipped_by_level: Counter = Counter()
    for pid in ids:
        if pid not in samples_long or pid not in samples_short:
            skipped["problem"]["missing_in_long" if pid not in samples_long else "missing_in_short"] += 1
            skipped_by_level[_level_key(_get(probs.get(pid), "level"))] += 1
            continue
        if pid not in probs:
            raise HybridcotError(f"problem id {pid!r} is in the sample files but not in the problem set")
        long_g, short_g = list(samples_long[pid]), list(samples_short[pid])
        k = len(long_g)
        if k != len(short_g) or k == 0:
            raise HybridcotError(f"problem {pid!r}: {k} Long samples but {len(short_g)} Short samples "
                                 "(K must be the same, and > 0, in both files)")
        ks[k] += 1
        c_long, c_short = sum(r.correct for r in long_g), sum(r.correct for r in short_g)
        p_long, p_short = c_long / k, c_short / k
        level = _get(probs[pid], "level")
        level = long_g[0].level if level is None else level
        preferred = decide_preference(c_long, c_short, k, epsilon)
        if preferred is None:
            skipped["problem"]["both_zero"] += 1
            skipped_by_level[_level_key(level)] += 1
            continue
        preferred_by_level.setdefault(_level_key(level), Counter())[preferred] += 1
        other = "short" if preferred == "long" else "long"
        pref_g, other_g = (long_g, short_g) if preferred == "long" else (short_g, long_g)
        prompt = chat_prompt(str(_get(probs[pid], "problem")))
        meta = {"pid": pid, "level": level, "preferred": preferred, "p_long": p_long, "p_short": p_short}
        if include in ("both", "group"):
            pairs = group_pairs(pref_g, other_g, m1, random.Random(f"{seed}:{pid}:group"))
            if not pairs:
                skipped["group"]["no_distinct_pair"] += 1
            rows += [_row(prompt, p, kind="group", styles=(preferred, other), **meta) for p in pairs]
        if include in ("both", "instance"):
            pairs, reason = instance_pairs(pref_g, m2)
            if reason:
                skipped["instance"][reason] += 1
            rows += [_row(prompt, p, kind="instance", styles=(preferred, preferred), **meta) for p in pairs]
    stats = pair_stats(rows, skipped, preferred_by_level)
    stats["skipped_by_level"] = dict(sorted(skipped_by_level.items(), key=lambda kv: _sort_level(kv[0])))
    stats.update({"samples_per_problem": {str(k): n for k, n in sorted(ks.items())}, "epsilon": epsilon,
                  "m1": m1, "m2": m2, "seed": seed, "include": include})
    return rows, stats


def _ordered_ids(probs: Mapping[str, Any], ids: set[str]) -> list[str]:
    """Problem-set order first, then any ids the problem set lacks (sorted)."""
    return [p for p in probs if p in ids] + sorted(ids - set(probs))


def _level_key(level: Any) -> str:
    return "none" if level is None else str(level)


def pair_stats(rows: Sequence[dict], skipped: Mapping[str, Counter],
               preferred_by_level: Mapping[str, Counter] | None = None) -> dict:
    """Counts and mean lengths of a pair set (everything in stats.json but the run's settings)."""
    by_level = {lv: {"long": c["long"], "short": c["short"],
                     "long_share": c["long"] / (c["long"] + c["short"])}
                for lv, c in sorted((preferred_by_level or {}).items(), key=lambda kv: _sort_level(kv[0]))}
    kinds = ("group", "instance")
    pairs_by_level: dict[str, dict[str, int]] = {}
    for r in rows:
        d = pairs_by_level.setdefault(_level_key(r["level"]), dict.fromkeys(kinds, 0))
        d[r["kind"]] += 1

    def mean(kind: str, side: str) -> float | None:
        vals = [r[f"{side}_tokens"] for r in rows if r["kind"] == kind]
        return sum(vals) / len(vals) if vals else None

    return {
        "preferred": {s: sum(v[s] for v in by_level.values()) for s in ("long", "short")},
        "preferred_by_level": by_level,
        "pairs": {**{k: sum(r["kind"] == k for r in rows) for k in kinds}, "total": len(rows)},
        "pairs_by_level": dict(sorted(pairs_by_level.items(), key=lambda kv: _sort_level(kv[0]))),
        "problems_with_pairs": len({r["id"] for r in rows}),
        "skipped": {k: dict(sorted(c.items())) for k, c in skipped.items()},
        "mean_tokens": {k: {"chosen": mean(k, "chosen"), "rejected": mean(k, "rejected")} for k in kinds},
    }


def _sort_level(key: str) -> tuple[int, Any]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


# ---------------------------------------------------------------- baselines


def _groups(probs: Mapping[str, Any], samples: Mapping[str, Sequence[Response]]):
    """(id, its responses, its level) in problem-set order; an id the problems lack or an empty group is an error."""
    for pid in _ordered_ids(probs, set(samples)):
        if pid not in probs:
            raise HybridcotError(f"problem id {pid!r} is in the samples but not in the problem set")
        group = list(samples[pid])
        if not group:
            raise HybridcotError(f"problem {pid!r}: no samples")
        level = _get(probs[pid], "level")
        yield pid, group, (group[0].level if level is None else level)


def shortest_vs_longest_pairs(samples_long: Mapping[str, Sequence[Response]],
                              problems: Mapping[str, Any] | Sequence[Any], *, m2: int = 2) -> tuple[list[dict], dict]:
    """DPO-shortest: per problem, Long's shortest correct response vs its `m2` longest others.

    Rows have the same columns as `build_pairs` (kind "instance", styles "long", p_short null).
    """
    from hybridcot.generation import chat_prompt

    probs = _problem_index(problems)
    rows: list[dict] = []
    skipped: dict[str, Counter] = {"problem": Counter(), "instance": Counter()}
    for pid, group, level in _groups(probs, samples_long):
        pairs, reason = instance_pairs(group, m2)
        if reason:
            skipped["instance"][reason] += 1
        p_long = sum(r.correct for r in group) / len(group)
        prompt = chat_prompt(str(_get(probs[pid], "problem")))
        rows += [_row(prompt, p, pid=pid, level=level, kind="instance", preferred="long", styles=("long", "long"),
                      p_long=p_long, p_short=None) for p in pairs]
    stats = pair_stats(rows, skipped)
    stats["m2"] = m2
    return rows, stats


def preferred_styles(pairs_path: str | Path) -> dict[str, str]:
    """Problem id -> the style ("long" | "short") a bi-level pairs.jsonl prefers for it."""
    out: dict[str, str] = {}
    for lineno, rec in iter_jsonl(Path(pairs_path)):
        pref = rec.get("preferred")
        if pref not in ("long", "short"):
            raise HybridcotError(f"{pairs_path}:{lineno}: field 'preferred' must be 'long' or 'short', got {pref!r}")
        out.setdefault(str(rec.get("id")), pref)
    return out


def own_styles(samples: Mapping[str, Sequence[Response]], preferred: Mapping[str, str] | None = None, *,
               classify: Any = None) -> dict[str, str]:
    """Problem id -> the style ("long" | "short") most of the model's own samples of it are written in
    (`classify(text)`, default `style.classify_style`); a tie goes to `preferred`'s style for the problem,
    else "long". An on-policy round that pairs within this style never asks for the other style; where a
    level mixes styles, the NLL term on its chosen answers can still move the level (docs/experiments.md,
    stop 24)."""
    from hybridcot.adar1.style import classify_style

    classify = classify or classify_style
    preferred = preferred or {}
    out: dict[str, str] = {}
    for pid, group in samples.items():
        n_long = sum(1 for r in group if classify(r.text) == "long")
        n_short = len(group) - n_long
        out[pid] = "long" if n_long > n_short else "short" if n_short > n_long else preferred.get(pid, "long")
    return out


def onpolicy_instance_pairs(samples: Mapping[str, Sequence[Response]], problems: Mapping[str, Any] | Sequence[Any],
                            preferred: Mapping[str, str], *, m2: int = 2,
                            classify: Any = None) -> tuple[list[dict], dict]:
    """An on-policy instance round (our extension, beyond METHODS.md): per problem, the trained model's own
    samples in the problem's preferred style (`preferred`, from the bi-level pairs; `classify(text)` gives a
    response's style, default `style.classify_style`), its shortest correct one against the `m2` longest
    others of that style. Responses in the other style are left out, so no pair crosses styles; DPO's NLL
    term on the chosen answers (`sft_weight`) can still move a level that mixes styles toward the preferred
    one (docs/experiments.md, stop 23). Problems without a preference (both models wrong on every sample)
    are skipped ("no_preference")."""
    from hybridcot.adar1.style import classify_style
    from hybridcot.generation import chat_prompt

    classify = classify or classify_style
    probs = _problem_index(problems)
    rows: list[dict] = []
    skipped: dict[str, Counter] = {"problem": Counter(), "instance": Counter()}
    by_level: dict[str, Counter] = {}
    n_same = n_all = 0
    for pid, group, level in _groups(probs, samples):
        style = preferred.get(pid)
        n_all += len(group)
        if style is None:
            skipped["problem"]["no_preference"] += 1
            continue
        by_level.setdefault(_level_key(level), Counter())[style] += 1
        same = [r for r in group if classify(r.text) == style]
        n_same += len(same)
        if not same:
            skipped["instance"]["no_sample_in_preferred_style"] += 1
            continue
        pairs, reason = instance_pairs(same, m2)
        if reason:
            skipped["instance"][reason] += 1
        prompt = chat_prompt(str(_get(probs[pid], "problem")))
        p_style = sum(r.correct for r in same) / len(same)
        rows += [_row(prompt, p, pid=pid, level=level, kind="instance", preferred=style, styles=(style, style),
                      p_long=p_style if style == "long" else None, p_short=p_style if style == "short" else None)
                 for p in pairs]
    stats = pair_stats(rows, skipped, by_level)
    stats["m2"] = m2
    stats["in_preferred_style"] = n_same / max(1, n_all)
    return rows, stats


def group_chosen_sft_rows(samples_long: Mapping[str, Sequence[Response]],
                          samples_short: Mapping[str, Sequence[Response]],
                          problems: Mapping[str, Any] | Sequence[Any], *, epsilon: float | None = None,
                          m1: int = 4, seed: int = 0) -> list[dict]:
    """Merge+SFT: the chosen responses of the group-level pairs (distinct per problem) as SFT rows.

    Each row is TRL's conversational prompt-completion format: {"prompt": [user], "completion":
    [assistant]} plus id, level, style and n_tokens.
    """
    rows, _ = build_pairs(samples_long, samples_short, problems, epsilon=epsilon, m1=m1, seed=seed, include="group")
    out: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["id"], r["chosen"][0]["content"].strip())
        if key in seen:
            continue
        seen.add(key)
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "id": r["id"], "level": r["level"],
                    "style": r["chosen_style"], "n_tokens": r["chosen_tokens"]})
    return out


# ---------------------------------------------------------------- the stage


def run_pairs(cfg: PairsConfig) -> dict:
    """Read both sample files, build the pairs, write pairs.jsonl + stats.json; returns the stats."""
    from hybridcot.data.problems import load_problems

    problems = load_problems(cfg.problems)
    answers = {p.id: p.answer for p in problems}
    samples_long = load_samples(cfg.long_samples, answers)
    samples_short = load_samples(cfg.short_samples, answers)
    rows, stats = build_pairs(samples_long, samples_short, problems, epsilon=cfg.epsilon, m1=cfg.m1, m2=cfg.m2,
                              seed=cfg.seed, include=cfg.include)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    write_json(out / "stats.json", stats)
    print_stats(stats)
    if not rows:
        raise HybridcotError(f"no preference pairs: skipped {stats['skipped']} (see {out / 'stats.json'})")
    write_jsonl(out / "pairs.jsonl", rows)
    print(f"pairs: {stats['pairs']['group']} group + {stats['pairs']['instance']} instance -> {out / 'pairs.jsonl'}")
    return stats


def print_stats(stats: dict) -> None:
    """The statistics as a rich table: preferred style and pairs per level, then skips and lengths."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="AdaR1 pairs (problems by preferred style; pairs by kind)")
    for i, h in enumerate(("level", "Long", "Short", "Long share", "skipped", "group pairs", "instance pairs")):
        t.add_column(h, justify="left" if i == 0 else "right")
    skipped = stats.get("skipped_by_level", {})
    levels = list(dict.fromkeys([*stats["preferred_by_level"], *stats["pairs_by_level"], *skipped]))
    for lv in sorted(levels, key=_sort_level):
        pref = stats["preferred_by_level"].get(lv, {"long": 0, "short": 0, "long_share": None})
        pairs = stats["pairs_by_level"].get(lv, {"group": 0, "instance": 0})
        share = "-" if pref["long_share"] is None else f"{pref['long_share']:.0%}"
        t.add_row(lv, str(pref["long"]), str(pref["short"]), share, str(skipped.get(lv, 0)), str(pairs["group"]),
                  str(pairs["instance"]))
    n_pref = stats["preferred"]["long"] + stats["preferred"]["short"]
    share = f"{stats['preferred']['long'] / n_pref:.0%}" if n_pref else "-"
    t.add_row("all", str(stats["preferred"]["long"]), str(stats["preferred"]["short"]), share,
              str(sum(stats["skipped"].get("problem", {}).values())), str(stats["pairs"]["group"]), str(stats["pairs"]["instance"]), style="bold")
    console = Console()
    console.print(t)
    skips = [f"{kind}:{reason}={n}" for kind, c in stats["skipped"].items() for reason, n in c.items()]
    console.print("skipped: " + (", ".join(skips) if skips else "none"), highlight=False)
    for kind, m in stats["mean_tokens"].items():
        if m["chosen"] is not None:
            console.print(f"{kind}: mean tokens chosen {m['chosen']:.1f} vs rejected {m['rejected']:.1f}",
                          highlight=False)
