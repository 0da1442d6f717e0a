"""Kills what a dead run leaves behind: one small watcher process per run process.

vLLM's engine and Prefect's ephemeral API server run in child processes that outlive a SIGKILLed parent (an
orphaned `VLLM::EngineCore` kept 600 MB, or its share of a GPU, for 30 minutes, and the rerun meant to resume
could not start its own engine). A parent-death signal would fire when the *thread* that started the child ends,
and Prefect starts engines from a task's worker thread; so this watcher follows the run's process tree instead
and, once the run is gone, kills every descendant it has seen.

    python -m east_tasks.engines.reaper OWNER_PID
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
_started: int | None = None  # the pid that started a watcher (a forked child needs its own)


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
    left = [p for p in seen.values() if _alive(p)]
    for p in list(left):
        with contextlib.suppress(psutil.Error):
            left += p.children(recursive=True)
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()


def ensure_reaper() -> None:
    """Starts this process's watcher once (idempotent; call before starting long-lived children)."""
    global _started
    if _started != os.getpid():
        subprocess.Popen([sys.executable, "-m", "east_tasks.engines.reaper", str(os.getpid())],
                         start_new_session=True, stdin=subprocess.DEVNULL)
        _started = os.getpid()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
