"""The Long⊗Short turn protocol: render/parse round trips, malformed turns, each thinker's view."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hybridcot.longshort.protocol import LONG, SHORT, Turn, check_dialogue, dialogue_text, messages_for, parse, render

_text = st.text(st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=60).map(str.strip)


@given(_text)
def test_long_turn_round_trips(text: str) -> None:
    t = parse(LONG, render(Turn(LONG, text)))
    assert (t.role, t.text, t.final, t.well_formed) == (LONG, text, False, True)


@given(_text, st.booleans())
def test_short_turn_round_trips(text: str, final: bool) -> None:
    if final:
        text = f"{text} \\boxed{{7}}".strip()
    t = parse(SHORT, render(Turn(SHORT, text, final=final)))
    assert (t.role, t.text, t.final, t.well_formed) == (SHORT, text, final, True)


def test_malformed_turns_are_kept_and_flagged() -> None:
    assert parse(LONG, "First, 2+3=5.") == Turn(LONG, "First, 2+3=5.", well_formed=False)
    assert parse(LONG, "<think>a</think> extra").well_formed is False
    t = parse(SHORT, "so it is \\boxed{5}")
    assert t.final and not t.well_formed  # a boxed answer without tags still ends the dialogue
    t = parse(SHORT, "<answer>no box</answer>")
    assert t.final and not t.well_formed  # final needs an answer
    t = parse(SHORT, "<answer>5+2=7.</rethink>")
    assert not t.final and t.well_formed
    assert not parse(SHORT, "<answer>x</answer></rethink>").well_formed


def test_each_thinker_sees_its_own_turns_as_assistant() -> None:
    turns = [Turn(LONG, "plan"), Turn(SHORT, "5+2=7.", final=False), Turn(LONG, "more"),
             Turn(SHORT, "\\boxed{7}", final=True)]
    long_view = messages_for(LONG, "What is 5+2?", turns[:2])
    assert [m["role"] for m in long_view] == ["user", "assistant", "user"]
    assert long_view[1]["content"] == "<think>plan</think>" and long_view[2]["content"] == "<answer>5+2=7.</rethink>"
    assert long_view[0]["content"].startswith("What is 5+2? Let's think step by step")
    short_view = messages_for(SHORT, "What is 5+2?", turns)
    assert [m["role"] for m in short_view] == ["user", "assistant", "user", "assistant"]
    assert short_view[0]["content"].endswith("\n\n<think>plan</think>")
    assert short_view[3]["content"] == "<answer>\\boxed{7}</answer>"


def test_check_dialogue() -> None:
    good = [Turn(LONG, "a"), Turn(SHORT, "b"), Turn(LONG, "c"), Turn(SHORT, "\\boxed{1}", final=True)]
    assert check_dialogue(good) is None
    assert "expected long" in check_dialogue(good[1:])
    assert "does not end" in check_dialogue(good[:3])
    assert "final but" in check_dialogue([Turn(LONG, "a"), Turn(SHORT, "\\boxed{1}", final=True), Turn(LONG, "c")])
    assert "breaks the tags" in check_dialogue([Turn(LONG, "a", well_formed=False), good[-1]])
    assert check_dialogue([]) == "no turns"
    assert dialogue_text(good[:2]) == "<think>a</think>\n\n<answer>b</rethink>"
