"""The Long⊗Short dialogue protocol: two thinkers take turns on one problem.

Tags (*paper code*): a Long turn is `<think>…</think>`; a Short turn is `<answer>…</rethink>` (hand
back to the long thinker for more thinking) or `<answer>…</answer>` (final; holds the `\\boxed{}`
answer). The long thinker speaks first; turns alternate.

Each thinker sees the dialogue as an ordinary chat in which *its own* turns are assistant messages
and the partner's turns are user messages (the partner is its environment). The problem opens the
first user message; the short thinker's first user message also carries the long thinker's first
turn. Every turn is one assistant message ending in the model's EOS, so generation needs no stop
strings and each turn's closing tag is in its text.

    from hybridcot.longshort.protocol import Turn, messages_for, render
    turns = [Turn("long", "First, 5+7=12."), Turn("short", "12-3=9. The answer is \\\\boxed{9}.", final=True)]
    messages_for("short", "What is 5+7-3?", turns[:1])   # the short thinker's prompt for its turn
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hybridcot.data.world import user_prompt

LONG, SHORT = "long", "short"
ROLES = (LONG, SHORT)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, RETHINK_CLOSE, ANSWER_CLOSE = "<answer>", "</rethink>", "</answer>"
_BOXED = re.compile(r"\\boxed\s*\{")


@dataclass
class Turn:
    role: str  # "long" | "short"
    text: str  # the content between the tags
    final: bool = False  # a short turn that closes with </answer>
    well_formed: bool = True  # False when parsed from a generation that broke the tags

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be 'long' or 'short', got {self.role!r}")
        if self.final and self.role != SHORT:
            raise ValueError("only a short turn can be final")

    def to_record(self) -> dict:
        return {"role": self.role, "text": self.text, "final": self.final, "well_formed": self.well_formed}

    @classmethod
    def from_record(cls, r: dict) -> Turn:
        return cls(r["role"], r["text"], bool(r.get("final", False)), bool(r.get("well_formed", True)))


def render(turn: Turn) -> str:
    """The turn as the thinker writes it, tags included."""
    if turn.role == LONG:
        return f"{THINK_OPEN}{turn.text}{THINK_CLOSE}"
    return f"{ANSWER_OPEN}{turn.text}{ANSWER_CLOSE if turn.final else RETHINK_CLOSE}"


def parse(role: str, raw: str) -> Turn:
    """A generated turn back into a Turn. Never raises on model output: a turn whose tags are missing
    or wrong keeps its stripped text with `well_formed=False` (the format reward reads that flag).

    A short turn is final when it closes with `</answer>`; one that breaks the tags but holds a
    `\\boxed{}` answer is also taken as final (badly formed), so a dialogue always can end.
    """
    s = raw.strip()
    if role == LONG:
        ok = s.startswith(THINK_OPEN) and s.endswith(THINK_CLOSE) and s.count(THINK_OPEN) == 1 \
            and s.count(THINK_CLOSE) == 1
        body = s[len(THINK_OPEN):] if s.startswith(THINK_OPEN) else s
        body = body[:-len(THINK_CLOSE)] if body.endswith(THINK_CLOSE) else body
        return Turn(LONG, body.strip(), well_formed=ok)
    if role != SHORT:
        raise ValueError(f"role must be 'long' or 'short', got {role!r}")
    opened = s.startswith(ANSWER_OPEN)
    body = s[len(ANSWER_OPEN):] if opened else s
    for close, final in ((ANSWER_CLOSE, True), (RETHINK_CLOSE, False)):
        if body.endswith(close):
            body = body[:-len(close)]
            ok = opened and not any(t in body for t in (ANSWER_OPEN, ANSWER_CLOSE, RETHINK_CLOSE))
            ok = ok and (not final or bool(_BOXED.search(body)))
            return Turn(SHORT, body.strip(), final=final, well_formed=ok)
    return Turn(SHORT, body.strip(), final=bool(_BOXED.search(body)), well_formed=False)


def messages_for(role: str, problem: str, turns: list[Turn]) -> list[dict]:
    """The chat `role`'s thinker sees before its next turn (or, with its own last turn included, the
    whole dialogue from its side): own turns = assistant, partner turns = user; `problem` is the
    problem text (the paper's prompt suffix is added here)."""
    if role not in ROLES:
        raise ValueError(f"role must be 'long' or 'short', got {role!r}")
    msgs: list[dict] = [{"role": "user", "content": user_prompt(problem)}]
    for t in turns:
        if t.role == role:
            msgs.append({"role": "assistant", "content": render(t)})
        elif msgs[-1]["role"] == "user":  # the partner speaks right after the problem: one user message
            msgs[-1] = {"role": "user", "content": msgs[-1]["content"] + "\n\n" + render(t)}
        else:
            msgs.append({"role": "user", "content": render(t)})
    return msgs


def check_dialogue(turns: list[Turn]) -> str | None:
    """None when `turns` is a complete, well-formed dialogue; else what is wrong (one line)."""
    if not turns:
        return "no turns"
    for i, t in enumerate(turns):
        want = LONG if i % 2 == 0 else SHORT
        if t.role != want:
            return f"turn {i} is {t.role}, expected {want} (the long thinker speaks first, then they alternate)"
        if not t.well_formed:
            return f"turn {i} ({t.role}) breaks the tags"
        if t.final and i != len(turns) - 1:
            return f"turn {i} is final but the dialogue goes on"
    if not turns[-1].final:
        return "the dialogue does not end with a final short turn (<answer>…</answer>)"
    if not _BOXED.search(turns[-1].text):
        return "the final turn has no \\boxed{} answer"
    return None


def dialogue_text(turns: list[Turn]) -> str:
    """All turns rendered, blank-line separated (what gets graded: the last \\boxed{} wins)."""
    return "\n\n".join(render(t) for t in turns)
