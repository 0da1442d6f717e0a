"""Final-answer extraction and equivalence, the public API other tools call. No `eval` of model output.

Two styles:
- ``gsm8k``: a number, from ``#### N``, ``The answer is N``, ``\\boxed{N}``, ``A: N`` or else the last number in
  the text; normalised (thousands separators, ``$``, trailing ``.0``, fractions) and compared exactly.
- ``math``: the contents of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; ``\\boxed 5`` too),
  compared with math-verify (fractions, radicals, intervals, tuples, matrices, ``\\text{}`` answers, degrees,
  percent, units), each comparison bounded in time.

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread (Prefect runs tasks in
worker threads) and cannot stop one long C-level operation: sympy evaluating ``10^{10^{10^{10}}}`` held the GIL
for minutes. So math comparisons run in worker processes (pebble) with math-verify's own timeouts off: a worker
past the bound is killed and replaced, and the answer counts as not matching (`timeouts` counts these for the
step logs). The gsm8k style is plain text and never leaves the process.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TypeVar

from pebble import ProcessFuture, ProcessPool

NO_ANSWER = "<no-answer>"
STYLES = ("gsm8k", "math")
MATH_TIMEOUT_S = 5.0  # per parse and per comparison, as math-verify's own default

_NUMBER = r"-?[\d,]*\.?\d+(?:/\d+)?"
_GSM8K_PATTERNS = [
    re.compile(r"####\s*\$?\s*(" + _NUMBER + ")"),
    re.compile(r"[Tt]he (?:final )?answer is[:\s]*\$?\s*(" + _NUMBER + ")"),
]
_A_COLON = re.compile(r"\bA:\s*\$?\s*(" + _NUMBER + r")\s*\.?\s*$", re.MULTILINE)  # "A: 42" on its own
_ANY_NUMBER = re.compile(_NUMBER)
_BOX = re.compile(r"\\(?:boxed|fbox)\b")
_LATEX_FRAC = re.compile(r"^-?\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")

T = TypeVar("T")


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown answer style {style!r}; allowed: {', '.join(STYLES)}")
    return style


def last_boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...} or \\fbox{...} (nested braces), or of `\\boxed 5`; None if absent."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    rest = text[i:].lstrip()
    if not rest.startswith("{"):
        word = re.match(r"[^\s$]+", rest) if text[i : i + 1].isspace() else None
        return word.group(0) if word else None
    depth = 0
    for j, ch in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return rest[1:j].strip()
    return None  # unbalanced: the response was cut off inside the box


def normalize_answer(raw: str) -> str:
    """Canonical numeric form so equal numbers compare equal: '1,234.0' -> '1234', '$6/8' -> '3/4',
    '0.5' -> '1/2', '\\frac{1}{2}' -> '1/2'. Non-numbers are returned stripped and lower-cased."""
    s = raw.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    frac = _LATEX_FRAC.match(s)
    if frac:
        s = ("-" if s.startswith("-") else "") + f"{frac.group(1)}/{frac.group(2)}"
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = Fraction(int(num), int(den))
        else:
            value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return s.lower()
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _extract_gsm8k(text: str) -> str | None:
    for pattern in _GSM8K_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return normalize_answer(matches[-1])
    boxed = last_boxed(text)
    if boxed:
        return normalize_answer(boxed)
    for pattern in (_A_COLON, _ANY_NUMBER):
        matches = pattern.findall(text)
        if matches:
            return normalize_answer(matches[-1])
    return None


def extract_answer(text: str, style: str) -> str | None:
    """The final answer of a response (gsm8k: normalised number; math: the last box's LaTeX); None if none."""
    if check_style(style) == "gsm8k":
        return _extract_gsm8k(text)
    return last_boxed(text) or None


# --- math-verify in worker processes, bounded in time -----------------------------------------------------------
_workers: ProcessPool | None = None
_workers_lock = threading.Lock()
timeouts: Counter[str] = Counter()  # math checks that timed out or failed (counted as not equal), for step logs


def _pool() -> ProcessPool:
    """Worker processes for math-verify, started on first use (spawned: the parent may hold vLLM's threads)."""
    global _workers
    with _workers_lock:
        if _workers is None or not _workers.active:
            _workers = ProcessPool(max_workers=os.cpu_count() or 1, initializer=_start_worker,
                                   context=multiprocessing.get_context("spawn"))
            atexit.register(_workers.stop)
        return _workers


def _start_worker() -> None:
    """Quiet math-verify's warning that its own timeout is off (by design here: workers are killed instead), and
    import and warm it up before taking tasks: a task's bound counts from when a worker takes it, and a fresh
    worker's first check (sympy's import, the grammar) once took past a 1 s bound on a loaded 2-core machine."""
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _equal("1/2", "0.5")


def _in_worker(fn: Callable[..., T], args: tuple, timeout_s: float, fallback: T) -> T:
    """`fn(*args)` in a worker; past `timeout_s` the worker is killed (and replaced) and `fallback` returned."""
    # The caller's own bound too: a call queued behind a worker that is being replaced still returns in time.
    return _result(_pool().schedule(fn, args, timeout=timeout_s), fallback, wait_s=timeout_s + 0.5)


def _result(future: ProcessFuture, fallback: T, wait_s: float | None = None) -> T:
    """A worker's answer; `fallback` if it ran out of time or died (a crash in math-verify is not the run's)."""
    try:
        return future.result(timeout=wait_s)
    except FuturesTimeout:
        future.cancel()  # stops (kills) the worker if it is still at it
        timeouts["timed out"] += 1
    except Exception:  # the worker died (ProcessExpired) or math-verify raised: the answer is not checkable
        timeouts["failed"] += 1
    return fallback


# These run inside a worker. math-verify's own timeouts are off there: the worker is killed past the bound, so
# every answer that could not be checked in time is counted, and none is half-checked.
@lru_cache(maxsize=65536)
def _parse(answer: str) -> tuple:
    from math_verify import parse

    return tuple(parse(f"\\boxed{{{answer}}}", parsing_timeout=None))


def _equal(gold: str, pred: str) -> bool:
    from math_verify import verify

    if gold.strip() == pred.strip():
        return True
    gold_p, pred_p = _parse(gold), _parse(pred)
    return bool(gold_p and pred_p and verify(list(gold_p), list(pred_p), timeout_seconds=None))


def _representatives(preds: list[str]) -> dict[str, str]:
    """Each distinct answer -> the first earlier answer equivalent to it (math-verify's equivalence is not
    transitive in every corner, so an answer joins the first cluster whose first member it matches)."""
    reps: list[str] = []
    canon: dict[str, str] = {}
    for p in preds:
        if p not in canon:
            canon[p] = next((r for r in reps if _equal(p, r)), p)
            if canon[p] == p:
                reps.append(p)
    return canon


def _clusters_and_gold(preds: list[str], gold: str) -> tuple[dict[str, str], dict[str, bool]]:
    canon = _representatives(preds)
    return canon, {r: _equal(gold, r) for r in set(canon.values())}


def answers_match(pred: str | None, gold: str, style: str, timeout_s: float = MATH_TIMEOUT_S) -> bool:
    """Whether an extracted answer equals the gold answer (math: bounded by `timeout_s`; an answer that
    cannot be checked in time counts as not matching, in `timeouts`)."""
    if check_style(style) == "gsm8k":
        return pred is not None and normalize_answer(pred) == normalize_answer(gold)
    if pred is None:
        return False
    if pred.strip() == gold.strip():
        return True
    return _in_worker(_equal, (gold, pred), timeout_s, False)


def answers_match_many(preds: list[str | None], golds: list[str], style: str,
                       timeout_s: float = MATH_TIMEOUT_S) -> list[bool]:
    """`answers_match` over many pairs; math comparisons run in parallel on every worker, each bounded alone."""
    if check_style(style) == "gsm8k":
        return [answers_match(p, g, style) for p, g in zip(preds, golds, strict=True)]
    pool = _pool()
    futures = [None if p is None or p.strip() == g.strip() else pool.schedule(_equal, (g, p), timeout=timeout_s)
               for p, g in zip(preds, golds, strict=True)]
    return [p is not None if f is None else bool(_result(f, False)) for p, f in zip(preds, futures, strict=True)]


# --- clustering ------------------------------------------------------------------------------------------------
def canonical_answers(preds: list[str | None], style: str, timeout_s: float = MATH_TIMEOUT_S) -> list[str | None]:
    """Each answer replaced by a canonical representative: gsm8k, its normalised number; math, the first earlier
    answer math-verify finds equivalent (the whole question bounded by `timeout_s`; past it, exact strings)."""
    if check_style(style) == "gsm8k":
        return [None if p is None else normalize_answer(p) for p in preds]
    distinct = list(dict.fromkeys(p for p in preds if p is not None))
    canon = _in_worker(_representatives, (distinct,), timeout_s, {p: p for p in distinct}) \
        if len(distinct) > 1 else {p: p for p in distinct}
    return [None if p is None else canon[p] for p in preds]


@dataclass(frozen=True)
class Cluster:
    answer: str  # the cluster's first answer, or NO_ANSWER
    size: int
    correct: bool


def cluster_answers(preds: list[str | None], gold: str, style: str,
                    timeout_s: float = MATH_TIMEOUT_S) -> list[Cluster]:
    """Groups responses whose answers are equivalent under `answers_match`; answerless ones share one cluster.
    Math: the whole question bounded by `timeout_s` (past it: exact strings, and exact match with the gold).

    Sorted largest first (ties by answer) so the "most common incorrect answer" is well defined.
    """
    if check_style(style) == "gsm8k":
        canon = canonical_answers(preds, style)
        correct = {a: answers_match(a, gold, style) for a in set(canon) if a is not None}
    else:
        distinct = list(dict.fromkeys(p for p in preds if p is not None))
        exact = ({p: p for p in distinct}, {p: p.strip() == gold.strip() for p in distinct})
        mapping, correct = _in_worker(_clusters_and_gold, (distinct, gold), timeout_s, exact) \
            if distinct else exact
        canon = [None if p is None else mapping[p] for p in preds]
    counts = Counter(NO_ANSWER if p is None else p for p in canon)
    clusters = [Cluster(a, n, a != NO_ANSWER and correct[a]) for a, n in counts.items()]
    return sorted(clusters, key=lambda c: (-c.size, c.answer))
