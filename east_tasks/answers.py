"""Final-answer extraction, normalisation and clustering (GSM8K-style numeric answers). No `eval`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

NO_ANSWER = "<no-answer>"

_NUMBER = r"-?[\d,]*\.?\d+(?:/\d+)?"
_PATTERNS = [
    re.compile(r"####\s*\$?\s*(" + _NUMBER + ")"),
    re.compile(r"[Tt]he (?:final )?answer is[:\s]*\$?\s*(" + _NUMBER + ")"),
]


def _last_boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...}, with nested braces."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def normalize_answer(raw: str) -> str:
    """Canonical form so equal numbers compare equal: '1,234.0' -> '1234', '$6/8' -> '3/4', '0.5' -> '1/2'."""
    s = raw.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = Fraction(int(num), int(den))
        else:
            value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return s.lower()
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def extract_answer(text: str) -> str | None:
    """Normalised final answer from `#### N`, `The answer is N` or `\\boxed{N}`; None if there is none."""
    for pattern in _PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return normalize_answer(matches[-1])
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return normalize_answer(boxed)
    return None


def is_correct(pred: str | None, gold: str) -> bool:
    return pred is not None and pred == normalize_answer(gold)


@dataclass(frozen=True)
class Cluster:
    answer: str  # normalised answer, or NO_ANSWER
    size: int
    correct: bool


def cluster_answers(preds: list[str | None], gold: str) -> list[Cluster]:
    """Groups responses whose normalised answers are equal; answerless responses share one cluster.

    Sorted largest first (ties by answer) so the "most common incorrect answer" is well defined.
    """
    counts = Counter(NO_ANSWER if p is None else p for p in preds)
    gold_n = normalize_answer(gold)
    clusters = [Cluster(a, n, a != NO_ANSWER and a == gold_n) for a, n in counts.items()]
    return sorted(clusters, key=lambda c: (-c.size, c.answer))
