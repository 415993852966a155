"""Long⊗Short RL rewards (METHODS.md, Long⊗Short step 6): plain functions looked up in `REWARDS`.

    from hybridcot.longshort.rewards import REWARDS
    REWARDS["length"](prompts, completions, answer=golds, turns=turns, own_tokens=lens, group=groups)

Each reward is `f(prompts, completions, **kwargs) -> list[float]`, the shape TRL's `GRPOTrainer`
calls; the RL stage's rollout function hands them, per dialogue, `turns` (the dialogue's turns as
`Turn.to_record()` dicts), `own_tokens` (tokens the trained thinker wrote) and `group` (which GRPO
group, i.e. which problem's rollouts, the dialogue belongs to); `answer` is the dataset's gold column.
The function's name is what TRL logs (`rewards/correctness/mean`, ...).

* `correctness`: 1 when the whole dialogue's last `\\boxed{}` matches the gold answer (the project's
  one grader, the same call eval makes), else 0.
* `format`: 1 when `protocol.check_dialogue` finds nothing wrong (tags well formed, turns alternate,
  a final short turn with a boxed answer), else 0.
* `length` (*paper code*, Kimi-1.5 style): within a group, λ = 0.5 − (len − min)/(max − min) over the
  trained thinker's token counts; a correct dialogue gets λ, a wrong one min(0, λ); all 0 when every
  length in the group is equal.
"""

from __future__ import annotations

from collections.abc import Sequence

from hybridcot.longshort.protocol import Turn, check_dialogue, dialogue_text


def _turns(records: Sequence[dict]) -> list[Turn]:
    return [Turn.from_record(t) for t in records]


def grade_dialogues(turns: Sequence[Sequence[dict]], answer: Sequence[str], timeout: float = 5.0) -> list[bool]:
    """Whether each dialogue's last boxed answer is right (`grading.grade_many` on `dialogue_text`)."""
    from hybridcot.grading import grade_many

    texts = [dialogue_text(_turns(ts)) for ts in turns]
    return [bool(r.correct) for r in grade_many(texts, [str(a) for a in answer], timeout=timeout)]


def correctness(prompts: list, completions: list, *, answer: Sequence[str], turns: Sequence[Sequence[dict]],
                **kwargs) -> list[float]:
    """1.0 for a dialogue whose final boxed answer is right, else 0.0."""
    return [float(c) for c in grade_dialogues(turns, answer)]


def format(prompts: list, completions: list, *, turns: Sequence[Sequence[dict]],  # noqa: A001 - TRL logs the name
           **kwargs) -> list[float]:
    """1.0 for a complete, well-formed dialogue (`protocol.check_dialogue` is None), else 0.0."""
    return [1.0 if check_dialogue(_turns(ts)) is None else 0.0 for ts in turns]


def length_rewards(lengths: Sequence[int], correct: Sequence[bool], groups: Sequence[int]) -> list[float]:
    """The Kimi-1.5 length reward of each sample, min/max taken within its group."""
    if not len(lengths) == len(correct) == len(groups):
        raise ValueError(f"length_rewards: {len(lengths)} lengths, {len(correct)} verdicts, {len(groups)} groups")
    span: dict[int, tuple[int, int]] = {}
    for n, g in zip(lengths, groups):
        lo, hi = span.get(g, (n, n))
        span[g] = (min(lo, n), max(hi, n))
    out = []
    for n, ok, g in zip(lengths, correct, groups):
        lo, hi = span[g]
        if hi == lo:
            out.append(0.0)
            continue
        lam = 0.5 - (n - lo) / (hi - lo)
        out.append(lam if ok else min(0.0, lam))
    return out


def length(prompts: list, completions: list, *, answer: Sequence[str], turns: Sequence[Sequence[dict]],
           own_tokens: Sequence[int], group: Sequence[int], **kwargs) -> list[float]:
    """Shorter than the group's others is rewarded, longer is penalised (only the penalty when wrong)."""
    return length_rewards([int(n) for n in own_tokens], grade_dialogues(turns, answer), [int(g) for g in group])


REWARDS = {"correctness": correctness, "format": format, "length": length}
