"""The one step runner: key → claim → look up → check → compute → commit (rows, status and cost in one transaction)
→ after commit.

A step is its key, a compute function and what its result is when found done. The runner owns everything else:
the claim (a lease on a lake, so one worker computes a key while others wait), the one rule for "done" (the key's
`step_status` row, written in the transaction that writes the step's rows; a step may verify more, as training
checks its checkpoint's hash), the gate before computing (`check`), the "cached, skipped" log line, the one timer
and the cost accounting, what reaches outside the store once the rows are in (`after_commit`), and which failures
are worth a retry. docs/architecture.md says how to add a step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
    """What a step gives its caller: found (`cached`) or computed, in `seconds` (for a computed step, the wall time
    `step_status` records), its log details and its value. A result of several steps (an evaluation: its
    generations and its metrics) lists them as `parts`."""

    step: str
    key: str
    cached: bool
    seconds: float
    info: dict = field(default_factory=dict)
    value: T | None = None  # what the step gives the next one (a model, keys); None for most
    parts: tuple[StepResult, ...] = ()

    @classmethod
    def of(cls, step: str, parts: list[StepResult], value: T) -> StepResult[T]:
        """One result for work done in several steps: found when every part was; its key the last part's."""
        return cls(step, parts[-1].key, all(p.cached for p in parts), sum(p.seconds for p in parts), {}, value,
                   tuple(parts))

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
    # Done, but no longer valid? Why, or None (a checkpoint whose files changed, a backbone whose files are gone)
    invalid: Callable[[Store], str | None] = lambda store: None
    # A result that can exist without the store knowing of it (the committed backbone's files): whether it does.
    # Found, it counts as done, like the key's done mark.
    found: Callable[[], bool] = lambda: False
    # The gate before computing, in the look-up's open: raises to refuse (label-free training on a collapsed pool)
    check: Callable[[Store], None] | None = None
    # What compute reads from the store, read in the look-up's open (one open fewer), as `ctx.prepared`
    prepare: Callable[[Store], Any] | None = None
    # Where a step resumes, what it found (the generation's committed questions), for its "running" mark
    running_detail: Callable[[Any], dict] = lambda prepared: {}
    # Computes on the GPU (generation, scoring, training): its wall time is recorded as GPU time where one is
    # visible. Another step records the GPU time of the steps it computes inside it (a selection's scoring).
    gpu: bool = False
    # Once a computed step's rows are committed, the store closed and the claim released: what reaches outside the
    # store (the trackers), with the result
    after_commit: Callable[[StepResult[T]], None] | None = None


# The GPU seconds of the steps computed inside the step being computed (a list of one, added to), or None.
_gpu_inside: ContextVar[list[float] | None] = ContextVar("gpu_inside", default=None)


def run_step(cfg: ExperimentConfig, step: Step[T]) -> StepResult[T]:
    with claim_step(cfg, step.key):
        meter = Meter()  # the one timer: the claim's wait is another process's work
        with open_store(cfg) as store:
            if store.step_done(step.key) or step.found():
                if (why := step.invalid(store)) is None:
                    value, info = step.load(store) if step.load else (None, store.step_detail(step.key))
                    return StepResult(step.name, step.key, True, meter.seconds(), info, value)
                log.warning("%s [%s]: %s; computing it again", step.name, step.key, why)
            if step.check:
                step.check(store)
            prepared = step.prepare(store) if step.prepare else None
            # Stays "running" if the process dies: the next run resumes from what was committed.
            store.mark_step(step.key, step.name, cfg.experiment, "running", detail=step.running_detail(prepared))
        inside = [0.0]
        token = _gpu_inside.set(inside)
        try:
            out = step.compute(StepContext(cfg, step.name, step.key, prepared))
        finally:
            _gpu_inside.reset(token)

        def commit(store: Store) -> tuple[dict, float, float]:
            info = {**out.info, **((out.write(store) or {}) if out.write else {})}
            cost = meter.cost(out.tokens_generated, out.tokens_trained, gpu=step.gpu, gpu_s=inside[0])
            store.mark_step(step.key, step.name, cfg.experiment, "done", detail=info, cost=cost)
            return info, cost.as_dict()["wall_s"], cost.gpu_s

        with open_store(cfg) as store:
            info, seconds, gpu_s = store.atomically(commit)
    if (outer := _gpu_inside.get()) is not None:
        outer[0] += gpu_s
    result = StepResult(step.name, step.key, False, seconds, info, out.value)
    if step.after_commit:
        step.after_commit(result)
    return result


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
