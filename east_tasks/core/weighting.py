"""Entropy → weight, top to bottom: a question's answer clusters give its statistics, the filters drop it or keep
it, a measure of its uncertainty (EAST's entropy, a baseline's, learnability) is mapped to a weight, and the
weights are normalised to mean 1 over the round's training rows.

Pure functions of numbers; the paper's definitions (arXiv 2503.23913) with the authors' defaults: entropy in bits,
weight = `f**a / mean(f**a)`. Filters, measures and mappings are registered by name (`FILTERS`, `MEASURES`,
`MAPPINGS`): the config's allowed values and the reference page come from these registries. Every rule reads one
per-question frame (`STATISTICS`), which both selection paths build the same way: `question_stats` here over
clusters (the pure path, `east_tasks.core.selection`) and the store's SQL over its tables
(`east_tasks.store.selection`, held to this module's numbers by tests/test_selection_sql.py); the rules themselves
run here, on either path's frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from east_tasks.core.answers import NO_ANSWER, Cluster
from east_tasks.core.registry import Registry


class WeightingOptions(Protocol):
    """What the rules read of `weighting` (east_tasks.config.WeightingConfig)."""

    strategy: str
    mapping: str
    a: float
    eps: float
    drop_all_correct: bool
    require_wellformed_incorrect: bool
    keep_pass_rate: tuple[float, float] | None


def cluster_entropy(sizes: Sequence[int], base: float = 2.0) -> float:
    """H = -sum p_k log p_k over cluster shares; 0 when all responses agree, log(n) at most."""
    n = sum(sizes)
    return float(-sum((s / n) * math.log(s / n, base) for s in sizes if s > 0))


@dataclass(frozen=True)
class QuestionStats:
    entropy: float  # bits, over answer clusters (no-answer responses form one cluster)
    frac_correct: float  # the paper's A; the pass rate p
    rejected_share: float  # the paper's R: share of the most common incorrect answer
    majority_share: float  # share of the largest cluster
    n_clusters: int
    n_samples: int
    n_correct: int
    n_incorrect: int  # the rejected-count baseline's measure
    n_wellformed_incorrect: int


STATISTICS = tuple(QuestionStats.__dataclass_fields__)


def question_stats(clusters: Sequence[Cluster]) -> QuestionStats:
    """The stats of one question's clusters, sorted largest first (the entropy sums in that order)."""
    n = sum(c.size for c in clusters)
    wrong = [c for c in clusters if not c.correct]
    n_correct = sum(c.size for c in clusters if c.correct)
    return QuestionStats(
        entropy=cluster_entropy([c.size for c in clusters]),
        frac_correct=n_correct / n,
        rejected_share=max((c.size for c in wrong), default=0) / n,
        majority_share=max(c.size for c in clusters) / n,
        n_clusters=len(clusters),
        n_samples=n,
        n_correct=n_correct,
        n_incorrect=n - n_correct,
        n_wellformed_incorrect=sum(c.size for c in wrong if c.answer != NO_ANSWER),
    )


def stats_frame(rows: list[dict]) -> pd.DataFrame:
    """Per-question rows (problem_id + `QuestionStats` fields) as the frame every rule reads."""
    return pd.DataFrame(rows, columns=["problem_id", *STATISTICS])


def stats_row(problem_id: str, clusters: Sequence[Cluster]) -> dict:
    return {"problem_id": problem_id, **asdict(question_stats(clusters))}


# --- Filters: which questions yield training rows. In order: the first that drops a question names its reason. ---
FILTERS = Registry("weighting filter")


@FILTERS.register("no_correct", "no sample was correct: raise sampling.n or sampling.temperature, or start from a "
                  "stronger model")
def _no_correct(q: pd.DataFrame, o: WeightingOptions) -> pd.Series:
    return q.n_correct == 0


@FILTERS.register("all_correct", "every sample was correct: weighting.drop_all_correct=false keeps them")
def _all_correct(q: pd.DataFrame, o: WeightingOptions) -> pd.Series:
    return (q.n_correct == q.n_samples) & o.drop_all_correct


@FILTERS.register("no_wellformed_incorrect", "no incorrect sample had an answer: "
                  "weighting.require_wellformed_incorrect=false keeps them")
def _no_wellformed_incorrect(q: pd.DataFrame, o: WeightingOptions) -> pd.Series:
    return (q.n_correct < q.n_samples) & (q.n_wellformed_incorrect == 0) & o.require_wellformed_incorrect


@FILTERS.register("outside_pass_band", "the pass rate lies outside weighting.keep_pass_rate: widen the band, or "
                  "set it to null")
def _outside_pass_band(q: pd.DataFrame, o: WeightingOptions) -> pd.Series:
    if o.keep_pass_rate is None:
        return pd.Series(False, index=q.index)
    lo, hi = o.keep_pass_rate
    return ~q.frac_correct.between(lo, hi)


def drop_reasons(q: pd.DataFrame, o: WeightingOptions) -> pd.Series:
    """Per question of the statistics frame: the first filter that drops it, or None (kept)."""
    reason = pd.Series([None] * len(q), index=q.index, dtype=object)
    for name in FILTERS:
        dropped = np.asarray(FILTERS.get(name).fn(q, o), dtype=bool) & reason.isna().to_numpy()
        reason[dropped] = name
    return reason


# --- Measures: each training row's f (higher = more weight when a > 0), from its question's statistics. ---
MEASURES = Registry("weighting.strategy", group="east.weightings")


@MEASURES.register("entropy", "EAST: the answer clusters' entropy (bits)")
def _entropy(rows: pd.DataFrame) -> pd.Series:
    return rows.entropy


@MEASURES.register("accuracy", "the paper's baseline: 1 - fraction correct")
def _accuracy(rows: pd.DataFrame) -> pd.Series:
    return 1.0 - rows.frac_correct


@MEASURES.register("rejected", "the paper's baseline: the number of incorrect responses")
def _rejected(rows: pd.DataFrame) -> pd.Series:
    return rows.n_incorrect


@MEASURES.register("learnability", "p(1 - p), p the pass rate (the majority label's share when label-free): "
                   "highest at half-solved questions")
def _learnability(rows: pd.DataFrame) -> pd.Series:
    return rows.frac_correct * (1.0 - rows.frac_correct)


@MEASURES.register("local", "minus the mean token log-prob of the row's own response under the sampling model",
                   needs=("logprobs",))
def _local(rows: pd.DataFrame) -> pd.Series:
    return rows.response_nll


def uncertainty(examples: pd.DataFrame, stats: pd.DataFrame, strategy: str,
                response_logps: np.ndarray | None = None) -> np.ndarray:
    """Each row's f under `strategy` (a registered measure, or a user's `module:function` of the rows' frame).
    `response_logps`: [rows, 2] summed log-prob and token count of each row's response, for measures that need it."""
    measure = MEASURES.get(strategy)
    rows = stats.set_index("problem_id").loc[examples.problem_id].reset_index()
    if "logprobs" in measure.needs:
        if response_logps is None or len(response_logps) != len(examples):
            raise ValueError(f"the {strategy!r} strategy needs the log-prob of every example's response")
        rows["response_nll"] = -response_logps[:, 0] / np.maximum(response_logps[:, 1], 1)
    return np.asarray(measure.fn(rows), dtype=np.float64)


# --- Mappings: f to an unnormalised weight; a = 0 is uniform for both. ---
MAPPINGS = Registry("weighting.mapping")


@MAPPINGS.register("power", "max(f, eps) ** a")
def _power(f: np.ndarray, a: float, eps: float) -> np.ndarray:
    return np.maximum(f, eps) ** a


@MAPPINGS.register("exp", "exp(a * f)")
def _exp(f: np.ndarray, a: float, eps: float) -> np.ndarray:
    return np.exp(a * f)


def map_uncertainty(f: np.ndarray, a: float, mapping: str = "power", eps: float = 1e-6) -> np.ndarray:
    """Unnormalised weights under a registered mapping."""
    return MAPPINGS.get(mapping).fn(np.asarray(f, dtype=np.float64), a, eps)


def normalised_weights(f: np.ndarray, a: float, mapping: str = "power", eps: float = 1e-6) -> np.ndarray:
    """Weights normalised to mean 1 over the rows given, so the learning rate means the same thing for every `a`.
    The mean is over training rows, not questions: where a question gives several rows (DPO pairs, KTO singles,
    every correct response) it counts once per row."""
    raw = map_uncertainty(f, a, mapping, eps)
    return raw / raw.mean() if raw.size else raw


def assign_weights(examples: pd.DataFrame, stats: pd.DataFrame, o: WeightingOptions,
                   response_logps: np.ndarray | None = None) -> pd.DataFrame:
    """Adds `uncertainty` and `weight` (mapped with `o.a`, normalised to mean 1 over the rows)."""
    f = uncertainty(examples, stats, o.strategy, response_logps)
    return examples.assign(uncertainty=f, weight=normalised_weights(f, o.a, o.mapping, o.eps))
