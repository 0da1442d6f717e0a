"""Entropy of the answer clustering, and the mapping from per-question uncertainty to a training weight.

Pure functions of numbers; the paper's definitions (arXiv 2503.23913) with the authors' defaults:
entropy in bits, weight = f**a / mean(f**a) so kept questions average weight 1 for every `a`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from east_tasks.answers import NO_ANSWER, Cluster
from east_tasks.config import Mapping


def cluster_entropy(sizes: Sequence[int], base: float = 2.0) -> float:
    """H = -sum p_k log p_k over cluster shares; 0 when all responses agree, log(n) at most."""
    n = sum(sizes)
    return float(-sum((s / n) * math.log(s / n, base) for s in sizes if s > 0))


def map_uncertainty(f: np.ndarray, a: float, mapping: Mapping = "power", eps: float = 1e-6) -> np.ndarray:
    """Unnormalised weights: power family max(f, eps)**a, exponential family exp(a*f). a=0 is uniform."""
    f = np.asarray(f, dtype=np.float64)
    if mapping == "power":
        return np.maximum(f, eps) ** a
    if mapping == "exp":
        return np.exp(a * f)
    raise ValueError(f"unknown mapping {mapping!r}; allowed: 'power', 'exp'")


def entropy_weights(f: np.ndarray, a: float, mapping: Mapping = "power", eps: float = 1e-6) -> np.ndarray:
    """Weights normalised to mean 1, so the learning rate means the same thing for every `a`."""
    raw = map_uncertainty(f, a, mapping, eps)
    return raw / raw.mean() if raw.size else raw


@dataclass(frozen=True)
class QuestionStats:
    entropy: float  # bits, over answer clusters (no-answer responses form one cluster)
    frac_correct: float  # the paper's A
    rejected_share: float  # the paper's R: share of the most common incorrect answer
    n_clusters: int
    n_correct: int
    n_incorrect: int  # the rejected-count baseline's measure
    n_wellformed_incorrect: int


def question_stats(clusters: Sequence[Cluster]) -> QuestionStats:
    n = sum(c.size for c in clusters)
    wrong = [c for c in clusters if not c.correct]
    wellformed_wrong = [c for c in wrong if c.answer != NO_ANSWER]
    n_correct = sum(c.size for c in clusters if c.correct)
    return QuestionStats(
        entropy=cluster_entropy([c.size for c in clusters]),
        frac_correct=n_correct / n,
        rejected_share=max((c.size for c in wrong), default=0) / n,
        n_clusters=len(clusters),
        n_correct=n_correct,
        n_incorrect=n - n_correct,
        n_wellformed_incorrect=sum(c.size for c in wellformed_wrong),
    )


def drop_reason(stats: QuestionStats, drop_all_correct: bool, require_wellformed_incorrect: bool) -> str | None:
    """Why a question yields no training example (None = kept). Mirrors the authors' filters."""
    if stats.n_correct == 0:
        return "no_correct"
    if drop_all_correct and stats.frac_correct == 1.0:
        return "all_correct"
    if require_wellformed_incorrect and stats.frac_correct < 1.0 and stats.n_wellformed_incorrect == 0:
        return "no_wellformed_incorrect"
    return None
