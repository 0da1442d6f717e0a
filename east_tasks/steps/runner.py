"""The one step runner: key → claim → look up → compute → commit (rows, status and cost in one transaction).

A step is its key, a compute function and what its result is when found done. The runner owns everything else:
the claim (a lease on a lake, so one worker computes a key while others wait), the one rule for "done" (the key's
`step_status` row, written in the transaction that writes the step's rows; a step may verify more, as training
checks its checkpoint's hash), the "cached, skipped" log line, cost accounting, and which failures are worth a
retry. docs/architecture.md says how to add a step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from east_tasks.config import ExperimentConfig
from east_tasks.cost import Meter
from east_tasks.errors import EnvironmentFault, UserError, disk_full, is_disk_full
from east_tasks.store import Store, as_store_fault, claim_step, open_store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class StepResult(Generic[T]):
    step: str
    key: str
    cached: bool
    seconds: float
    info: dict = field(default_factory=dict)
    value: T | None = None  # what the step gives the next one (a model, keys); None for most

    def describe(self) -> str:
        what = "cached, skipped" if self.cached else f"computed in {self.seconds:.1f}s"
        details = ", ".join(f"{k}={v}" for k, v in self.info.items())
        return f"{self.step} [{self.key}]: {what}" + (f" ({details})" if details else "")


@dataclass
class Output(Generic[T]):
    """What a compute function returns: the rows to commit with the done mark (`write(store)`, inside the
    transaction; it may return more log details, read back from what it wrote), the step's log details, its
    value, and the tokens its cost counts."""

    write: Callable[[Store], dict | None] | None = None
    info: dict = field(default_factory=dict)
    value: T | None = None
    tokens_generated: int = 0
    tokens_trained: int = 0


class StepContext:
    """Handed to a compute function: the config, the step's key, and the store to read or to commit to as it
    goes (a generation commits chunk by chunk; each commit is its own transaction)."""

    def __init__(self, cfg: ExperimentConfig, name: str, key: str, prepared: Any = None):
        self.cfg, self.name, self.key = cfg, name, key
        self.prepared = prepared  # what the step's `prepare` read in the look-up's open

    @contextmanager
    def store(self) -> Iterator[Store]:
        with open_store(self.cfg) as store:
            yield store

    def commit(self, write: Callable[[Store], None]) -> None:
        """`write(store)` in one transaction now: rows that survive a crash of the rest of the step."""
        with self.store() as store:
            store.atomically(write)


@dataclass(frozen=True)
class Step(Generic[T]):
    name: str  # shown in logs and recorded in step_status
    key: str
    compute: Callable[[StepContext], Output[T]]
    # The result of a step found done, its value and log details, read from the store (default: no value, and
    # the details it logged when it was computed)
    load: Callable[[Store], tuple[T | None, dict]] | None = None
    # Done, but no longer valid (a checkpoint whose files changed)? Why, or None
    invalid: Callable[[Store], str | None] = lambda store: None
    # What compute reads from the store, read in the look-up's open (one open fewer), as `ctx.prepared`
    prepare: Callable[[Store], Any] | None = None
    # Where a step resumes, what it found (the generation's committed questions), for its "running" mark
    running_detail: Callable[[Any], dict] = lambda prepared: {}


def run_step(cfg: ExperimentConfig, step: Step[T]) -> StepResult[T]:
    t0 = time.time()
    with claim_step(cfg, step.key):
        with open_store(cfg) as store:
            if store.step_done(step.key):
                if (why := step.invalid(store)) is None:
                    value, info = step.load(store) if step.load else (None, store.step_detail(step.key))
                    return StepResult(step.name, step.key, True, time.time() - t0, info, value)
                log.warning("%s [%s]: %s; computing it again", step.name, step.key, why)
            prepared = step.prepare(store) if step.prepare else None
            # Stays "running" if the process dies: the next run resumes from what was committed.
            store.mark_step(step.key, step.name, cfg.experiment, "running", detail=step.running_detail(prepared))
        meter = Meter()
        out = step.compute(StepContext(cfg, step.name, step.key, prepared))
        wall = time.time() - t0
        cost = meter.cost(tokens_generated=out.tokens_generated, tokens_trained=out.tokens_trained)

        def commit(store: Store) -> dict:
            info = {**out.info, **((out.write(store) or {}) if out.write else {})}
            store.mark_step(step.key, step.name, cfg.experiment, "done", wall, info, cost)
            return info

        with open_store(cfg) as store:
            info = store.atomically(commit)
    return StepResult(step.name, step.key, False, time.time() - t0, info, out.value)


def known_failure(err: BaseException, data_dir: Path) -> UserError | EnvironmentFault | None:
    """A failure the user causes or meets, as the one line (and exit code) that says what to do; None for a crash."""
    if isinstance(err, UserError | EnvironmentFault):
        return err
    if is_disk_full(err):
        return disk_full(err, data_dir)
    return as_store_fault(err)


def retryable(err: BaseException) -> bool:
    """Whether a failed step is worth another try: crashes are; bad input, a full disk or a damaged store would
    fail the same way again."""
    return known_failure(err, Path(".")) is None
