"""The round's guard, in its record step (`steps.record`): a round whose validation greedy accuracy fell more than
`guard.max_val_drop` points below its parent's (and more than the split's noise, `core.guard.noise`) is rejected.
It is recorded in `rejected_rounds` (not in `experiment_rounds`, so the experiment stays at its last accepted round
and every later run, a schedule's `east-next-round` included, builds on that), and the run stops with one line
(`RoundRejected`, exit 2).

Only validation decides; the test split is reported, never chosen on. Every step before the record is cached, so a
rerun with the same settings is rejected again at once, and one with the guard relaxed accepts the round from the
store; a round once recorded (accepted) is not judged again.
"""

from __future__ import annotations

from east_tasks.config import ExperimentConfig
from east_tasks.core.guard import noise, rejects, validation_drop
from east_tasks.errors import UserError
from east_tasks.steps.evaluation import EvalKeys
from east_tasks.store import Store


class RoundRejected(UserError):
    """A round the guard rejected: bad settings for this experiment, not a crash, so not retried."""


_warned: set[str] = set()  # the experiments this process said the guard is off for


def guard_off(cfg: ExperimentConfig) -> str | None:
    """The warning, once per experiment in a process, that the guard cannot check this experiment's rounds."""
    if cfg.guard.max_val_drop is None or cfg.data.validation_size > 0 or cfg.experiment in _warned:
        return None
    _warned.add(cfg.experiment)
    return (f"{cfg.experiment}: guard.max_val_drop is {cfg.guard.max_val_drop:g} points, but the data has no "
            "validation split (data.validation_size = 0), so no round is checked: set data.validation_size to "
            "guard the rounds (or guard.max_val_drop=null to silence this)")


def judge(store: Store, cfg: ExperimentConfig, round_: int, evals: EvalKeys) -> tuple[str, float, float] | None:
    """The guard's verdict on round `round_`, read from the store: None to accept it, else the line it is rejected
    with, its parent's validation greedy accuracy and its own. Nothing is judged for round 0, with the guard off
    or without a validation split."""
    if round_ == 0 or cfg.guard.max_val_drop is None or evals.validation is None:
        return None
    parent_acc = store.validation_accuracy(cfg.experiment, round_ - 1)
    evaluation = store.evaluation(evals.validation) or {}
    acc, n = evaluation.get("greedy_acc"), evaluation.get("n_questions") or 0
    if parent_acc is None or acc is None or (reason := rejection(cfg, round_, parent_acc, acc, n)) is None:
        return None
    return reason, parent_acc, acc


def rejection(cfg: ExperimentConfig, round_: int, parent_acc: float, acc: float, n: int) -> str | None:
    """The one line a rejected round stops the run with (what fell, from what to what, and what to change), or None
    for a round the guard accepts."""
    if not rejects(parent_acc, acc, n, cfg.guard.max_val_drop):
        return None
    return (f"{cfg.experiment}: round {round_} rejected: validation greedy accuracy fell from {parent_acc:.3f} to "
            f"{acc:.3f} on {n} questions ({validation_drop(parent_acc, acc):.1f} points; guard.max_val_drop is "
            f"{cfg.guard.max_val_drop:g}, the noise {noise(parent_acc, acc, n):.1f}); the experiment stays at round "
            f"{round_ - 1}: lower train.lr (now {cfg.train.lr:g}) or change what the round trains on, under a new "
            "--experiment name, or accept the round with --set guard.max_val_drop=null")
