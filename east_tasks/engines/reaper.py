"""Kills what a dead run leaves behind: one small watcher process per run process.

vLLM's engine and Prefect's ephemeral API server run in child processes that outlive a SIGKILLed parent (an
orphaned `VLLM::EngineCore` keeps its memory, or its share of a GPU, and the rerun meant to resume cannot start its
own engine). A parent-death signal would fire when the *thread* that started the child ends,
and Prefect starts engines from a task's worker thread; so this watcher follows the run's process tree instead
and, once the run is gone, kills every descendant it has seen. An interrupted run that is still alive kills its
own children at once with `kill_children` (flows/interrupts.py).

    python -m east_tasks.engines.reaper OWNER_PID
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Collection

import psutil

POLL_S = 0.5
_started: int | None = None  # the pid that started a watcher (a forked child needs its own)
_watcher: int | None = None  # that watcher's pid


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def watch(owner_pid: int) -> None:
    me = os.getpid()
    seen: dict[int, psutil.Process] = {}  # Process objects remember start times: a reused pid is never killed
    owner = psutil.Process(owner_pid)
    while _alive(owner):
        with contextlib.suppress(psutil.Error):
            seen.update({p.pid: p for p in owner.children(recursive=True) if p.pid != me})
        time.sleep(POLL_S)
    _kill_trees([p for p in seen.values() if _alive(p)])


def _kill_trees(procs: list[psutil.Process]) -> None:
    """SIGKILLs `procs` and their descendants, all listed first: a killed parent's children would be orphaned."""
    for p in list(procs):
        with contextlib.suppress(psutil.Error):
            procs += p.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()


def kill_children(spare: Collection[int] = ()) -> None:
    """SIGKILLs what this process started, and what those started, now: all but its watcher and the children in
    `spare` (and theirs). For an interrupted run, which must not wait for each child's own shutdown."""
    keep = {_watcher, *spare}
    with contextlib.suppress(psutil.Error):
        _kill_trees([p for p in psutil.Process().children() if p.pid not in keep])


def ensure_reaper() -> None:
    """Starts this process's watcher once (idempotent; call before starting long-lived children)."""
    global _started, _watcher
    if _started != os.getpid():
        _watcher = subprocess.Popen([sys.executable, "-m", "east_tasks.engines.reaper", str(os.getpid())],
                                    start_new_session=True, stdin=subprocess.DEVNULL).pid
        _started = os.getpid()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
