"""Which reasoning style a response is written in: "long" (thinks aloud) or "short" (states the work).

AdaR1 reports the share of Long-style answers per difficulty level (its Figure 4): a good hybrid
model answers easy problems Short and hard ones Long. The rule, deterministic and cheap (every eval
record gets it):

* **long** when the response
  - has at least `min_thoughts` (default 2) *thoughts*: paragraphs separated by blank lines, or
  - opens with a plan, i.e. first-person deliberation: "Okay", "OK,", "Alright", "Hmm", "Let me",
    "I need to", "I'll", "I will", "I should", "First, I", or a `<think>` tag, or
  - shows reflection (`hybridcot.grading.shows_thinking`: "wait", "double-check",
    "alternatively", ...), or closes a `</think>` block;
* **short** otherwise (including an empty response).

On the embedded world this separates the two writers exactly: every long solution opens with
"Okay, let me work out ..." and has at least three thoughts; every short one is a single line
(tests/unit/test_style.py checks both over hundreds of problems). Real Long-CoT models (R1-distill
and the like) open with "Okay, so I need to ..." and reflect, so they come out long. Caveat: an
instruction-tuned model that answers in several plain paragraphs without deliberating ("To find x,
...\\n\\nThen ...\\n\\nThe answer is ...") counts as long under the default; raise `min_thoughts`
for such models (the plan and reflection rules still apply).
"""

from __future__ import annotations

import re

from hybridcot.grading import shows_thinking

STYLES = ("long", "short")
MIN_THOUGHTS = 2

_BLANK_LINE = re.compile(r"\n[ \t]*\n")
# Deliberation in the first words, the way reasoning models open. "Let's" and "To solve" are left
# out on purpose: short answers open with them too ("Let's compute: ...").
_PLAN_OPENER = re.compile(
    r"\A\s*(?:<think>|(?:okay|ok|alright|hmm+)\b|let\s+me\b|i\s+need\s+to\b|i'll\b|i\s+will\b|i\s+should\b"
    r"|first,?\s+i\b)",
    re.IGNORECASE,
)


def split_paragraphs(text: str) -> list[str]:
    """The non-empty blank-line-separated paragraphs of `text` (the steps Long⊗Short chunks)."""
    return [p.strip() for p in _BLANK_LINE.split(text.replace("\r\n", "\n")) if p.strip()]


def opens_with_plan(text: str) -> bool:
    """True if the response starts by deliberating ("Okay, let me ...", "I need to ...", `<think>`)."""
    return _PLAN_OPENER.match(text) is not None


def classify_style(text: str, min_thoughts: int = MIN_THOUGHTS) -> str:
    """"long" or "short" by the rule in the module docstring."""
    if min_thoughts < 1:
        raise ValueError(f"min_thoughts must be >= 1, got {min_thoughts}")
    if not text or not text.strip():
        return "short"
    if len(split_paragraphs(text)) >= min_thoughts or opens_with_plan(text):
        return "long"
    if "</think>" in text or shows_thinking(text):
        return "long"
    return "short"
