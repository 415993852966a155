"""Answer extraction and checking: the one grader behind eval, preference pairs and RL rewards.

    from hybridcot.grading import grade
    grade("... so the answer is \\boxed{\\frac12}.", "0.5")  # GradeResult(correct=True, ...)

* `extract_boxed` takes the last top-level `\\boxed{...}` / `\\fbox{...}` (nested braces balanced,
  `\\{` `\\}` skipped as escaped).
* `grade` compares the extracted answer with the gold one. Plain numbers on both sides (the
  embedded world, GSM8K) are compared in-process with `Decimal`, no sympy: well over 20k grades/s.
  Everything else goes to math-verify (`verify(gold, pred)`, gold first).
* math-verify's own time limits use `signal.alarm`, which only works on the main thread and
  cannot break a C-level sympy/gmpy computation (`9^{9^{9}}`). So we switch them off and run
  math-verify in one persistent worker process instead; a call that runs past `timeout` gets the
  worker killed (and a fresh one started) and counts as wrong with reason "timeout". The grader
  never hangs and works from any thread.

The worker is a plain `python -c` subprocess talking over `multiprocessing.connection`, not a
`multiprocessing` spawn/forkserver child: those re-import the user's `__main__`, which breaks
scripts without an `if __name__ == "__main__"` guard and notebooks.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from multiprocessing.connection import Connection

from hybridcot.io import HybridcotError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- extraction

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)


def _match_brace(text: str, open_pos: int) -> int:
    """Index of the `}` closing the `{` at `open_pos`, or -1 if unbalanced."""
    depth = 0
    for m in _BRACE.finditer(text, open_pos):
        c = m.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return m.start()
    return -1


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level `\\boxed{...}` (or `\\fbox{...}`); None if absent or unbalanced.

    A boxed inside another boxed is part of the outer one's content. If the last box is not
    closed (a truncated response), the answer is None: an earlier box is not the final answer.
    """
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    found: str | None = None
    pos = 0
    while True:
        m = _BOX_START.search(text, pos)
        if m is None:
            return found
        close = _match_brace(text, m.end() - 1)
        if close < 0:
            return None
        found = text[m.end():close]
        pos = close + 1


def extract_gsm8k_answer(answer_field: str) -> str:
    """The number on GSM8K's final `#### N` line, without commas or `$`; ValueError if missing."""
    for line in reversed(answer_field.splitlines()):
        s = line.strip()
        if s.startswith("####"):
            value = s[4:].strip().replace(",", "").replace("$", "").strip()
            if value:
                return value
            break
    raise ValueError("no '#### <answer>' line in GSM8K answer")


_LAST_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")


def extract_answer(text: str, fallback_last_number: bool = False) -> str | None:
    """The boxed answer; else, only with `fallback_last_number`, the last number in the text."""
    boxed = extract_boxed(text)
    if boxed is not None or not fallback_last_number:
        return boxed
    last = None
    for last in _LAST_NUMBER.finditer(text):  # noqa: B007 - keep the last match
        pass
    return last.group().replace(",", "") if last else None


# ---------------------------------------------------------------- thinking keywords

THINKING_KEYWORDS: tuple[str, ...] = (
    "wait", "recheck", "re-check", "double-check", "double check", "alternatively", "let me check",
    "let me verify", "let me re-examine", "re-examine", "reconsider", "check again", "hmm", "verify",
    "hold on", "on second thought",
)
_THINKING_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in THINKING_KEYWORDS) + r"|hmm+)\b",
    re.IGNORECASE,
)


def shows_thinking(text: str) -> bool:
    """True if the text shows reflection (any of THINKING_KEYWORDS as whole words, any case)."""
    return _THINKING_RE.search(text) is not None


# ---------------------------------------------------------------- fast path

_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\.\d+")
_STRIP = " \t\n$"


def _plain_number(s: str) -> Decimal | None:
    """`s` as a Decimal if it is a plain number (`1,234`, `-3.50`, `$12$`, `10,\\!080`), else None."""
    return _plain_number_cached(s) if len(s) <= 64 else _parse_plain_number(s)


def _parse_plain_number(s: str) -> Decimal | None:
    s = s.strip(_STRIP)
    if s.startswith("\\$"):
        s = s[2:].lstrip()
    if "\\!" in s or "{,}" in s:
        s = s.replace("\\!", "").replace("{,}", ",")
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    try:
        return Decimal(s.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
        return None


@lru_cache(maxsize=65536)  # golds repeat (K samples a problem); long strings are not cached
def _plain_number_cached(s: str) -> Decimal | None:
    return _parse_plain_number(s)


def _fast_verdict(pred: str, gold: str) -> bool | None:
    """True/False when both sides are plain numbers and the answer is certain, else None.

    Unequal non-integers go to math-verify, which rounds to 6 decimals (0.1234567 == 0.1234568).
    """
    g = _plain_number(gold)
    if g is None:
        return None
    p = _plain_number(pred)
    if p is None:
        return None
    if p == g:
        return True
    if g == g.to_integral_value() and p == p.to_integral_value():
        return False
    return None


# ---------------------------------------------------------------- results


@dataclass
class GradeResult:
    """`reason`: correct | wrong | no_answer (no or empty box) | timeout | error (unreadable gold, crash)."""

    correct: bool
    extracted: str | None
    reason: str


REASONS = ("correct", "wrong", "no_answer", "timeout", "error")


def grade(response: str, gold: str, *, timeout: float = 5.0, fallback_last_number: bool = False) -> GradeResult:
    """Grade one response against a gold answer (see module docstring). Never hangs."""
    return grade_many([response], [gold], timeout=timeout, fallback_last_number=fallback_last_number)[0]


def grade_many(responses: Sequence[str], golds: Sequence[str], timeout: float = 5.0, *,
               fallback_last_number: bool = False) -> list[GradeResult]:
    """Grade many responses; the ones needing math-verify go to the worker in one batch."""
    if len(responses) != len(golds):
        raise ValueError(f"grade_many: {len(responses)} responses but {len(golds)} gold answers")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    results: list[GradeResult | None] = [None] * len(responses)
    pending: list[int] = []
    jobs: list[tuple[str, str]] = []
    for i, (resp, gold) in enumerate(zip(responses, golds)):
        gold = str(gold).strip()
        pred = extract_answer(resp, fallback_last_number=fallback_last_number)
        if pred is None or not pred.strip():
            results[i] = GradeResult(False, pred, "no_answer")
            continue
        verdict = _fast_verdict(pred, gold)
        if verdict is not None:
            results[i] = GradeResult(verdict, pred, "correct" if verdict else "wrong")
        elif pred.strip() == gold:
            results[i] = GradeResult(True, pred, "correct")
        else:
            pending.append(i)
            jobs.append((gold, pred))
    if jobs:
        outcomes = math_verify_statuses([p for _, p in jobs], [g for g, _ in jobs], timeout)
        for i, (_gold, pred), status in zip(pending, jobs, outcomes):
            results[i] = GradeResult(status == "correct", pred, status)
    return results  # type: ignore[return-value]


def math_verify_statuses(preds: Sequence[str], golds: Sequence[str], timeout: float = 5.0) -> list[str]:
    """Status of each extracted answer vs gold by math-verify alone (no fast path), in the worker."""
    with _LOCK:
        return _get_worker().run([(str(g).strip(), p) for p, g in zip(preds, golds)], timeout)


# ---------------------------------------------------------------- the math-verify worker

_CHUNK = 256  # jobs per message: amortises IPC without making a lost chunk expensive
_START_TIMEOUT = 120.0  # seconds for a fresh worker to import math-verify (2 busy cores can be slow)
_WORKER_CODE = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); from hybridcot.grading import "
                "_worker_main; _worker_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))")


class _Worker:
    """One math-verify subprocess: jobs in, one status per job out, killed and restarted on timeout."""

    def __init__(self) -> None:
        self.owner_pid = os.getpid()
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        r_child, w_parent = os.pipe()
        r_parent, w_child = os.pipe()
        r_life, self._life_w = os.pipe()  # never written: the worker's watchdog sees EOF when we die
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, json.dumps(sys.path), str(r_child), str(w_child), str(r_life)],
                pass_fds=(r_child, w_child, r_life), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            for fd in (r_child, w_child, r_life):
                os.close(fd)
        self.tx = Connection(w_parent, readable=False)
        self.rx = Connection(r_parent, writable=False)
        self.ready = False

    def _wait_ready(self) -> None:
        if self.ready:
            return
        try:
            ok = self.rx.poll(_START_TIMEOUT) and self.rx.recv() == "ready"
        except (EOFError, OSError):
            ok = False
        if not ok:
            self.close()
            raise HybridcotError(f"the math-verify grading worker did not start (exit code {self.proc.poll()}); "
                                 "see its error above, or check that math-verify is installed")
        self.ready = True

    def restart(self) -> None:
        self.close()
        self.restarts += 1
        self._start()  # no waiting here: the next job waits for it to be ready

    def close(self) -> None:
        for c in (self.tx, self.rx):
            c.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.drop_fds()

    def drop_fds(self) -> None:
        """Close our ends without touching the process (also what a forked child does)."""
        for c in (self.tx, self.rx):
            c.close()
        if self._life_w >= 0:
            os.close(self._life_w)
            self._life_w = -1

    def shutdown(self) -> None:
        try:
            self.tx.send(None)
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        self.close()

    def run(self, jobs: list[tuple[str, str]], timeout: float) -> list[str]:
        """A status per (gold, pred) job; each job gets `timeout` seconds from the previous one's end."""
        try:
            return self._run(jobs, timeout)
        except BaseException:  # e.g. Ctrl-C mid-batch: unread results would desync the next call
            self.restart()
            raise

    def _run(self, jobs: list[tuple[str, str]], timeout: float) -> list[str]:
        out: list[str] = []
        while len(out) < len(jobs):
            if self.proc.poll() is not None:  # died since the last call (killed from outside?)
                self.restart()
            self._wait_ready()
            chunk = jobs[len(out):len(out) + _CHUNK]
            try:
                self.tx.send(chunk)
            except OSError:  # died just now: count this job as an error and go on with a fresh worker
                out.append("error")
                self.restart()
                continue
            for _ in chunk:
                try:
                    status = self.rx.recv() if self.rx.poll(timeout) else "timeout"
                except (EOFError, OSError):
                    status = "crashed"  # on this job (e.g. out of memory)
                out.append("error" if status == "crashed" else status)
                if status in ("timeout", "crashed"):
                    if status == "timeout":
                        log.warning("grading timed out after %.1fs on %.80r; restarting the worker",
                                    timeout, jobs[len(out) - 1][1])
                    self.restart()
                    break  # resend the rest of the chunk to the fresh worker
        return out


_LOCK = threading.Lock()
_WORKER: _Worker | None = None


def _get_worker() -> _Worker:
    global _WORKER
    if _WORKER is None or _WORKER.owner_pid != os.getpid():
        _WORKER = _Worker()
    return _WORKER


def _reset_after_fork() -> None:
    """A forked child must not share the parent's worker pipes (or a lock held at fork time)."""
    global _LOCK, _WORKER
    if _WORKER is not None:
        _WORKER.drop_fds()  # the parent's worker stays the parent's
    _LOCK = threading.Lock()
    _WORKER = None


@atexit.register
def shutdown_worker() -> None:
    """Stop the grading worker (also run at exit); a later grade starts a fresh one."""
    global _WORKER
    worker, _WORKER = _WORKER, None
    if worker is not None and worker.owner_pid == os.getpid():
        worker.shutdown()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _watch_parent(life_fd: int) -> None:  # pragma: no cover - runs in the subprocess
    """Fork a watchdog that kills this worker when the grading process dies.

    A thread would not do: a runaway sympy computation holds the GIL. The parent holds the write
    end of `life_fd` and never writes; EOF means it is gone (or closed us after killing us).
    """
    worker = os.getpid()
    if os.fork() != 0:
        os.close(life_fd)
        return
    try:
        while os.read(life_fd, 1):
            pass
        if os.getppid() == worker:  # still our parent, so alive: the grading process died
            os.kill(worker, 9)
    finally:
        os._exit(0)


def _worker_main(rfd: int, wfd: int, life_fd: int) -> None:  # pragma: no cover - runs in the subprocess
    """The worker process: parse and verify (gold, pred) jobs with math-verify, no signal timeouts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap the watchdog automatically
    _watch_parent(life_fd)
    logging.disable(logging.WARNING)  # math-verify logs every unparseable answer
    rx, tx = Connection(rfd, writable=False), Connection(wfd, readable=False)
    from math_verify import parse, verify

    @lru_cache(maxsize=16384)
    def parse_gold(gold: str) -> list:
        if "\\boxed" in gold or "\\fbox" in gold:
            return parse(gold, parsing_timeout=None)
        return parse(f"${gold}$", parsing_timeout=None) or parse(f"\\boxed{{{gold}}}", parsing_timeout=None)

    def check(gold: str, pred: str) -> str:
        try:
            g = parse_gold(gold)
            if not g:
                return "error"  # the gold answer itself is unreadable
            p = parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
            return "correct" if p and verify(g, p, timeout_seconds=None) else "wrong"
        except Exception:
            return "error"

    tx.send("ready")
    while True:
        try:
            jobs = rx.recv()
        except (EOFError, OSError):
            return
        if jobs is None:
            return
        for gold, pred in jobs:
            tx.send(check(gold, pred))
