"""Ctrl-C of `east run` and `east sweep`: the first stops the run within seconds, a second at once, and either way
the rerun of the same command resumes from the store (every finished step, every committed chunk).

A terminal's Ctrl-C is a SIGINT to every process of its foreground group. Were Prefect's ephemeral API server in
that group, it would die with it, and the run would spend minutes retrying to report its crash to a server that is
gone. So the server is started here, before the flow, with SIGINT blocked: the block is inherited across fork and
exec and uvicorn never lifts it, so the server hears the flow report Crashed, and Prefect stops it at exit
(SIGTERM). vLLM's engine gets the SIGINT too and would shut itself down only after its workers' grace period, so
the first Ctrl-C kills it, and every other child but the server and multiprocessing's resource tracker, at once;
the flow's `finally` then closes what is left of the engine. A library may turn the KeyboardInterrupt into an
error of its own on the way out; `interrupted()` keeps the flows from retrying it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from typing import TYPE_CHECKING

from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

from east_tasks.engines.reaper import kill_children
from east_tasks.errors import INTERRUPTED_EXIT

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

GRACE_S = 7.0  # the most the first Ctrl-C's cleanup may take (crash reports, closing the engine, Prefect's exit)
RESUME = ("rerun the same command to resume it from the store (finished steps are reused, a generation continues "
          "after its last committed chunk)")


def _say(line: str) -> None:
    """One line on stderr, written whole: a signal handler may interrupt a print (a progress bar) in progress."""
    os.write(2, f"\n{line}\n".encode())


def _start_prefect_server() -> SubprocessASGIServer | None:
    """Prefect's ephemeral server, the one its clients would start on first use (none when PREFECT_API_URL names
    a server), started from this thread with SIGINT blocked. A Ctrl-C meanwhile waits until it is up."""
    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer  # slow to import: only where a server is started

    server = SubprocessASGIServer()  # one per process: the flow's clients get this one
    PREFECT_HOME.value().mkdir(parents=True, exist_ok=True)  # its database's; Prefect makes it without parents
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return server


def interrupted() -> bool:
    """Whether this process's run was interrupted: a library may turn the KeyboardInterrupt into an error of its own
    (DuckDB: RuntimeError("Query interrupted")), which is then no crash to retry or to log a traceback of."""
    return _active is not None and _active.count > 0


def _tracker_pid() -> int | None:
    """multiprocessing's resource tracker: it unlinks the shared memory of a killed engine when it exits."""
    return getattr(resource_tracker._resource_tracker, "_pid", None)


class _CtrlC:
    """The SIGINT handler: the first raises KeyboardInterrupt into the run (after killing its children and arming a
    deadline for the rest); the next, or the deadline, ends the process at once."""

    def __init__(self) -> None:
        self.server: SubprocessASGIServer | None = None
        self.count, self.stopped = 0, False
        self.lock = threading.RLock()  # the deadline's thread and a second Ctrl-C (this thread's) may race to stop

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count > 1:
            self.stop_now("interrupted again: stopped at once")
        process = self.server.server_process if self.server else None
        kill_children(spare={_tracker_pid(), process.pid if process else None})
        deadline = threading.Timer(GRACE_S, self.stop_now, [f"interrupted: cleaning up took over {GRACE_S:g} s, "
                                                            "stopped at once"])
        deadline.daemon = True
        deadline.start()
        raise KeyboardInterrupt

    def stop_now(self, why: str) -> None:
        with self.lock:
            kill_children(spare={_tracker_pid()})  # once this process is gone it unlinks what the engine left
            _say(f"{why}; {RESUME}")
            os._exit(INTERRUPTED_EXIT)

    def at_exit(self) -> None:
        """After Prefect's exit handlers (registered later), which stop its server, and the resource tracker, which
        unlinks the killed engine's shared memory: the line comes last. Then the process ends without the
        interpreter's finalization, whose last collection scans torch's and vLLM's heap for seconds."""
        if self.stopped:
            with self.lock:
                resource_tracker._resource_tracker._stop()
                logging.shutdown()
                sys.stdout.flush()
                _say(f"interrupted: the run stopped; {RESUME}")
                os._exit(INTERRUPTED_EXIT)


_active: _CtrlC | None = None


@contextmanager
def stops_on_ctrl_c() -> Iterator[None]:
    """Around a command that runs flows: a Ctrl-C ends it with one line saying how to resume, and exit code 130
    (east_tasks/errors.py)."""
    global _active
    ctrl_c = _active = _CtrlC()
    atexit.register(ctrl_c.at_exit)
    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        ctrl_c.server = _start_prefect_server()
        yield
    except BaseException as err:
        if ctrl_c.count:  # whatever the interrupt became on its way out
            ctrl_c.stopped = True
            raise SystemExit(INTERRUPTED_EXIT) from err
        raise
    finally:
        if not ctrl_c.count:  # else it stays: a Ctrl-C while Prefect exits still stops at once
            signal.signal(signal.SIGINT, previous)
