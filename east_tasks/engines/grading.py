"""The core's bounded grader: worker processes (pebble) that run math comparisons and every function of a user's
answer style, each call bounded in time. `install()` registers them with `east_tasks.core.answers` (the steps do,
on import); the core itself starts no process.

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread (Prefect runs tasks in
worker threads) and cannot stop one long C-level operation such as sympy evaluating ``10^{10^{10^{10}}}`` with the
GIL held. So a worker past its call's bound is killed and replaced, and the call counts as no answer / not equal /
incorrect (`timeouts` counts these for the step logs; the first of each style and function is logged as a warning).
A worker imports a user's style by its import path, so the module must be importable there too (PYTHONPATH or an
installed package).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import suppress
from typing import TypeVar

from pebble import ProcessFuture, ProcessPool

from east_tasks.core.answers import set_grader, warm_up

STARTUP_S = 120.0  # how long a fresh pool of workers may take to start before calls are timed anyway

T = TypeVar("T")

timeouts: Counter[str] = Counter()  # calls that timed out or failed (counted as no answer / not equal), for logs
_COUNTS_AS = {"extract": "no answer", "normalize": "the answer as it is", "equivalent": "not equivalent",
              "check": "incorrect"}
log = logging.getLogger(__name__)


class WorkerPool:
    """Worker processes for one answer style at a time, started on first use (the core's `Grader`)."""

    def __init__(self) -> None:
        self._workers: ProcessPool | None = None
        self._lock = threading.Lock()
        self._style: str | None = None  # the style the workers were started for
        self._warned: set[tuple[str, str]] = set()

    def run(self, style: str, fn: str, target: Callable[..., T], args: tuple, fallback: T, bound_s: float) -> T:
        """`target(*args)` in a worker; past `bound_s` the worker is killed (and replaced) and `fallback` returned."""
        # The caller's own bound too: a call queued behind a worker that is being replaced still returns in time.
        future = self._pool(style).schedule(target, args, timeout=bound_s)
        return self._result(future, fallback, style, fn, bound_s, wait_s=bound_s + 0.5)

    def run_many(self, style: str, fn: str, target: Callable[..., T], calls: list[tuple], fallback: T,
                 bound_s: float) -> list[T]:
        """`target(*args)` for each of `calls`, in parallel on every worker, each bounded alone."""
        if not calls:
            return []
        pool = self._pool(style)
        futures = [pool.schedule(target, args, timeout=bound_s) for args in calls]
        return [self._result(f, fallback, style, fn, bound_s) for f in futures]

    def stop(self) -> None:
        """Stops the workers and waits for them to exit; the next call starts fresh ones."""
        with self._lock:
            if self._workers is not None:
                self._workers.stop()
                self._workers.join()
                self._workers = None

    def _pool(self, style: str) -> ProcessPool:
        """Worker processes, started (spawned: the parent may hold vLLM's threads) by a call of `style`, which they
        import as they start. Another style gets new workers (the old ones finish their queue and exit), which see
        the module path as it is now: a run grades with one style."""
        with self._lock:
            if style != self._style and self._workers is not None:
                self._workers.close()
                self._workers = None
            self._style = style
            if self._workers is None or not self._workers.active:
                workers = os.cpu_count() or 1
                self._workers = ProcessPool(max_workers=workers, initializer=_start_worker, initargs=(style,),
                                            context=multiprocessing.get_context("spawn"))
                atexit.register(self._workers.stop)
                _await_workers(self._workers, workers)
            return self._workers

    def _result(self, future: ProcessFuture, fallback: T, style: str, fn: str, bound_s: float,
                wait_s: float | None = None) -> T:
        """A worker's answer; `fallback` if it ran out of time or died (a crash in a checker is not the run's)."""
        try:
            return future.result(timeout=wait_s)
        except FuturesTimeout:
            future.cancel()  # stops (kills) the worker if it is still at it
            timeouts["timed out"] += 1
            self._warn(style, fn, f"ran past its {bound_s:g} s bound and was killed")
        except Exception as err:  # the worker died (ProcessExpired) or the function raised: not checkable
            timeouts["failed"] += 1
            self._warn(style, fn, f"failed ({type(err).__name__}: {(str(err).splitlines() or [''])[0]})")
        return fallback

    def _warn(self, style: str, fn: str, what: str) -> None:
        """The first failure of each style's function, in the log; all of them are counted (`timeouts`)."""
        if (style, fn) not in self._warned:
            self._warned.add((style, fn))
            log.warning("answer style %r: %s %s; it counts as %s (further ones are counted in the step's "
                        "answers_unchecked, not logged)", style, fn, what, _COUNTS_AS[fn])


def _await_workers(pool: ProcessPool, workers: int) -> None:
    """Every worker started before the first call is timed: a caller's bound counts from scheduling, and starting a
    worker (spawn, imports, the style's warm-up) can outlast it on a loaded machine. Each round gives every worker a
    task that holds it a moment, until each has answered (or `STARTUP_S` has passed)."""
    seen: set[int] = set()
    deadline = time.monotonic() + STARTUP_S
    with suppress(Exception):  # a worker that does not start fails the calls it takes, which count it
        while len(seen) < workers and time.monotonic() < deadline:
            seen |= {f.result(timeout=STARTUP_S) for f in [pool.schedule(_ready) for _ in range(workers)]}


def _ready() -> int:
    """A started worker's answer (it ran its initializer, `_start_worker`, first)."""
    time.sleep(0.05)  # holds this worker, so that the round's next task goes to another
    return os.getpid()


def _start_worker(style: str) -> None:
    """Loads and warms the style up before taking tasks, since a task's bound counts from when a worker takes it.
    math-verify's warning that its own timeout is off is quieted: workers are killed instead. A style that fails
    to load here fails in its tasks, which count it."""
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with suppress(Exception):  # reported by the tasks that need it
        warm_up(style)


WORKERS = WorkerPool()


def install() -> None:
    """Registers `WORKERS` as the core's bounded grader (idempotent; the pool starts on its first call)."""
    set_grader(WORKERS)
