"""Entropy → weight, top to bottom: a question's answer clusters give its entropy and stats, the filters drop it
or keep it, its uncertainty (EAST's entropy or a baseline's measure) is mapped to a weight, and the weights are
normalised over the round's training rows.

Pure functions of numbers; the paper's definitions (arXiv 2503.23913) with the authors' defaults:
entropy in bits, weight = `f**a / mean(f**a)`, so kept questions average weight 1 for every `a`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from east_tasks.config import Mapping, WeightingConfig
from east_tasks.core.answers import NO_ANSWER, Cluster


def cluster_entropy(sizes: Sequence[int], base: float = 2.0) -> float:
    """H = -sum p_k log p_k over cluster shares; 0 when all responses agree, log(n) at most."""
    n = sum(sizes)
    return float(-sum((s / n) * math.log(s / n, base) for s in sizes if s > 0))


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
    """The stats of one question's clusters, sorted largest first (the entropy sums in that order)."""
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


def uncertainty(examples: pd.DataFrame, stats: pd.DataFrame, strategy: str,
                response_logps: np.ndarray | None = None) -> np.ndarray:
    """Each row's f: EAST's answer entropy, or a baseline's measure (higher = less certain).

    local: minus the mean token log-prob of the row's own response under the sampling model
    (`response_logps`: [rows, 2] summed log-prob and token count); accuracy: 1 - fraction correct;
    rejected: number of incorrect responses to the question.
    """
    q = stats.set_index("problem_id").loc[examples.problem_id]
    if strategy == "entropy":
        f = q.entropy
    elif strategy == "accuracy":
        f = 1.0 - q.frac_correct
    elif strategy == "rejected":
        f = q.n_incorrect
    elif strategy == "local":
        if response_logps is None or len(response_logps) != len(examples):
            raise ValueError("the 'local' strategy needs the log-prob of every example's response")
        f = -response_logps[:, 0] / np.maximum(response_logps[:, 1], 1)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: entropy, local, accuracy, rejected")
    return np.asarray(f, dtype=np.float64)


def map_uncertainty(f: np.ndarray, a: float, mapping: Mapping = "power", eps: float = 1e-6) -> np.ndarray:
    """Unnormalised weights: power family `max(f, eps)**a`, exponential family `exp(a*f)`. a=0 is uniform."""
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


def assign_weights(examples: pd.DataFrame, stats: pd.DataFrame, cfg: WeightingConfig,
                   response_logps: np.ndarray | None = None) -> pd.DataFrame:
    """Adds `uncertainty` and `weight` (mapped with `cfg.a`, normalised to mean 1 over the rows)."""
    f = uncertainty(examples, stats, cfg.strategy, response_logps)
    return examples.assign(uncertainty=f, weight=entropy_weights(f, cfg.a, cfg.mapping, cfg.eps))
