"""The guards' decisions, pure: is a training number still a number, and did a round fall too far on validation.

A round that wrecks the model (a learning rate far too high, a selection that teaches nonsense) still trains and
evaluates without an error; these say when its result must not be built on. The steps act on them
(`east_tasks.engines.training` for the numbers, `east_tasks.steps.guard` for the round).
"""

from __future__ import annotations

import math


def non_finite(value: float) -> bool:
    """A loss or gradient norm that is NaN or infinite: every later step of the optimizer is then garbage."""
    return not math.isfinite(value)


def validation_drop(parent_acc: float, acc: float) -> float:
    """How far a round's validation greedy accuracy fell below its parent's, in points (of 100); negative if it
    rose."""
    return 100.0 * (parent_acc - acc)


# Standard errors of the difference a drop must also exceed: below it, the drop may be which questions happened
# to flip, not a worse model.
NOISE_SE = 2.0


def noise(parent_acc: float, acc: float, n: int) -> float:
    """`NOISE_SE` standard errors, in points, of the difference of two accuracies measured on `n` questions each (a
    validation split of 40 questions at 0.4 gives about 22 points; of 500, about 6)."""
    variance = (parent_acc * (1 - parent_acc) + acc * (1 - acc)) / max(n, 1)
    return 100.0 * NOISE_SE * math.sqrt(variance)


def rejects(parent_acc: float, acc: float, n: int, max_drop: float | None) -> bool:
    """Whether a round whose validation accuracy on `n` questions went from `parent_acc` to `acc` is rejected: it
    fell more than `max_drop` points (None: never rejected) and more than the noise of `n` questions. A drop of
    exactly the limit is accepted."""
    if max_drop is None:
        return False
    return validation_drop(parent_acc, acc) > max(max_drop, noise(parent_acc, acc, n)) + 1e-9
