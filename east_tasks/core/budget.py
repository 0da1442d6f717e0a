"""The adaptive sampling budget: how many samples each pool question gets, from its first pass's gold grading.

A question all of whose n0 first samples are correct would be dropped as all_correct whatever more samples said
(a question's statistics are over its own samples), so it stops; so does one with none correct, when asked (it
would be dropped as no_correct, unless more samples found a correct one). The others are topped up to n, or, with
`max_n`, get the samples the stopped ones did not take as well, in proportion to their first pass's fail rate
(DART-Math's difficulty-proportional budget, arXiv 2407.13690), each up to max_n.
"""

from __future__ import annotations

import numpy as np


def decided(n_correct: np.ndarray, n0: int, stop_none_correct: bool) -> np.ndarray:
    """Per question: whether its first pass's `n_correct` of n0 decides it (it stops at n0 samples)."""
    n_correct = np.asarray(n_correct)
    return (n_correct == n0) | (stop_none_correct & (n_correct == 0))


def sample_counts(n_correct: np.ndarray, n0: int, n: int, max_n: int | None = None,
                  stop_none_correct: bool = False) -> np.ndarray:
    """Each question's total samples (its first n0 included). With `max_n`, the saved samples, (n - n0) per stopped
    question, are shared out in proportion to 1 - n_correct / n0, rounded down, so the total never exceeds the
    fixed budget of n per question."""
    n_correct = np.asarray(n_correct, dtype=np.int64)
    stop = decided(n_correct, n0, stop_none_correct)
    counts = np.where(stop, n0, n)
    if max_n is None or max_n <= n or stop.all():
        return counts
    difficulty = np.where(stop, 0.0, 1.0 - n_correct / n0)  # > 0 where undecided: some sample was wrong
    saved = int(stop.sum()) * (n - n0)
    extra = np.floor(saved * difficulty / difficulty.sum()).astype(np.int64)
    return counts + np.minimum(extra, max_n - n)
