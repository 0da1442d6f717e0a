"""Final-answer extraction and equivalence, the public API other tools call. No `eval` of model output.

Two styles:
- ``gsm8k``: a number, from ``#### N``, ``The answer is N``, ``\\boxed{N}``, ``A: N`` or else the last number in
  the text; normalised (thousands separators, ``$``, trailing ``.0``, fractions) and compared exactly.
- ``math``: the contents of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; ``\\boxed 5`` too),
  compared with math-verify (fractions, radicals, intervals, tuples, matrices, ``\\text{}`` answers, degrees,
  percent, units), each parse and comparison bounded in time.

math-verify bounds its own work with ``signal.alarm``, which only works in the main thread; Prefect runs tasks
in worker threads, where math-verify's default raises ``ValueError``. So its own timeouts are switched off and
`_bounded` runs each call in a short-lived thread that is interrupted (an asynchronous exception, the thread
counterpart of the alarm) when the time is up. Like the alarm, this cannot stop one long C-level operation;
the caller still gets its answer on time.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, TypeVar

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


# --- math-verify, bounded in time from any thread ----------------------------------------------------------
class _Deadline(SystemExit):
    """Raised inside an overrunning worker thread. A SystemExit so neither math-verify's `except Exception`
    swallows it nor the thread's excepthook prints it."""


def _bounded(fn: Callable[[], T], timeout_s: float) -> T:
    """`fn()` in a helper thread; raises TimeoutError after `timeout_s` and interrupts the helper."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except _Deadline:
            pass
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    worker = threading.Thread(target=work, name="east-math-verify", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_Deadline))
        raise TimeoutError(f"math-verify took longer than {timeout_s}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class _SilenceDisabledTimeoutWarning(logging.Filter):
    """math-verify warns once that its own timeout is off; ours is on, so the warning would mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_SilenceDisabledTimeoutWarning())


@lru_cache(maxsize=65536)
def _parse_math(answer: str, timeout_s: float) -> tuple:
    """math-verify's parse of one boxed answer (cached: gold answers and common predictions recur)."""
    from math_verify import parse

    try:
        return tuple(_bounded(lambda: parse(f"\\boxed{{{answer}}}", parsing_timeout=None), timeout_s))
    except TimeoutError:
        return ()


def _math_equal(gold: str, pred: str, timeout_s: float) -> bool:
    from math_verify import verify

    if gold.strip() == pred.strip():
        return True
    gold_p, pred_p = _parse_math(gold, timeout_s), _parse_math(pred, timeout_s)
    if not gold_p or not pred_p:
        return False
    try:
        return bool(_bounded(lambda: verify(list(gold_p), list(pred_p), timeout_seconds=None), timeout_s))
    except TimeoutError:
        return False


def answers_match(pred: str | None, gold: str, style: str, timeout_s: float = MATH_TIMEOUT_S) -> bool:
    """Whether an extracted answer equals the gold answer (math: `timeout_s` bounds each math-verify call;
    an answer that cannot be checked in time counts as not matching)."""
    if check_style(style) == "gsm8k":
        return pred is not None and normalize_answer(pred) == normalize_answer(gold)
    return pred is not None and _math_equal(gold, pred, timeout_s)


# --- clustering ------------------------------------------------------------------------------------------------
def canonical_answers(preds: list[str | None], style: str) -> list[str | None]:
    """Each answer replaced by a canonical representative: gsm8k, its normalised number; math, the first earlier
    answer equivalent to it (math-verify's equivalence is not transitive in every corner, so an answer joins the
    first cluster whose first member it matches)."""
    if check_style(style) == "gsm8k":
        return [None if p is None else normalize_answer(p) for p in preds]
    reps: list[str] = []
    canon: dict[str, str] = {}
    for p in preds:
        if p is not None and p not in canon:
            canon[p] = next((r for r in reps if answers_match(p, r, style)), p)
            if canon[p] == p:
                reps.append(p)
    return [None if p is None else canon[p] for p in preds]


@dataclass(frozen=True)
class Cluster:
    answer: str  # the cluster's first answer, or NO_ANSWER
    size: int
    correct: bool


def cluster_answers(preds: list[str | None], gold: str, style: str) -> list[Cluster]:
    """Groups responses whose answers are equivalent under `answers_match`; answerless ones share one cluster.

    Sorted largest first (ties by answer) so the "most common incorrect answer" is well defined.
    """
    counts = Counter(NO_ANSWER if p is None else p for p in canonical_answers(preds, style))
    clusters = [Cluster(a, n, a != NO_ANSWER and answers_match(a, gold, style)) for a, n in counts.items()]
    return sorted(clusters, key=lambda c: (-c.size, c.answer))
