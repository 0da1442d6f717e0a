"""Ctrl-C of the real `east run` (real Prefect, vLLM CPU engine, DuckDB), as a terminal sends it: SIGINT to the run's
process group, which holds its Prefect server and vLLM's engine too. The run starts in a session of its own, so the
SIGINT misses pytest. During pool generation and training one Ctrl-C stops the run within seconds,
exit 130, with one last line saying how to resume and nothing it started left running; two stop it at once; and
the reruns resume to exactly what an uninterrupted run stores. The runs are `east_runs.py`'s: tiny-test, one round,
smaller data."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil
import pytest
from east_runs import results, run_command, run_env

from east_tasks.errors import INTERRUPTED_EXIT

RESUME = ("rerun the same command to resume it from the store (finished steps are reused, a generation continues "
          "after its last committed chunk)")
STOPPED = f"interrupted: the run stopped; {RESUME}"
STOPPED_AT_ONCE = f"interrupted again: stopped at once; {RESUME}"
# Progress lines (east_tasks/progress.py; the output is a pipe, not a terminal), short of 100 %: the pool's, after a
# chunk; the trainer's, past its first step
POOL = re.compile(r"generate pool round 1: [1-9]\d?% \(")
TRAINING = re.compile(r"train: [1-9]\d?% \([1-9]\d*/\d+ steps")
# How soon the run and all it started must be gone: bounds with a loaded 2-core machine's margin (a run that went on
# with its work would run for minutes). The first press lets the engine's workers end in their grace period.
AT_ONCE_S, STOPPED_S = 10, 30


def _east_run(data_dir: Path, out: int | IO = subprocess.PIPE, api_url: str | None = None) -> subprocess.Popen:
    """The run in a session of its own, its own Prefect server with it unless `api_url` names one."""
    return subprocess.Popen(run_command(data_dir), env=run_env(data_dir, "fault", api_url), stdout=out,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ctrl_c(proc: subprocess.Popen, at: Callable[[str], bool], presses: int = 1,
            wait_s: float = 0) -> tuple[int, float, str, list[str]]:
    """Reads the run's output until a line satisfies `at`, then, `wait_s` later, presses Ctrl-C `presses` times,
    0.2 s apart. Returns the exit code, the seconds from the last press until the run and every process it had
    started were gone, all it printed, and those processes' names."""
    out: list[str] = []
    try:
        for line in proc.stdout:
            out.append(line)
            if at(line):
                break
        else:
            pytest.fail(f"the run exited ({proc.wait()}) first:\n{''.join(out)[-3000:]}")
        started = psutil.Process(proc.pid).children(recursive=True)
        names = [p.name() for p in started]
        reader = threading.Thread(target=lambda: out.extend(proc.stdout))
        reader.start()
        for press in range(presses):
            time.sleep(0.2 if press else wait_s)
            t0 = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
        while any(_alive(p) for p in started) and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        gone = time.monotonic() - t0
        left = [(p.pid, p.name()) for p in started if _alive(p)]
        assert not left, f"left running: {left}"
        reader.join()
        return code, gone, "".join(out), names
    finally:
        if proc.poll() is None:  # it hung: take it and what it started down before failing
            for p in psutil.Process(proc.pid).children(recursive=True):
                p.kill()
            proc.kill()


# What multiprocessing's resource tracker (a process of its own) may print after a run stopped at once.
TRACKER = re.compile(r"resource_tracker: There appear to be|^\s*warnings\.warn\('resource_tracker")
SLOW_CLEANUP = re.compile(r"^interrupted: cleaning up took over [\d.]+ s, stopped at once; " + re.escape(RESUME) + "$")


def _stopped_with(out: str, line: str) -> bool:
    """The run's last line says how to resume, and no traceback. On a loaded machine the first press's cleanup may
    outlast its grace period: then the run stops at once and says so. Returns whether it cleaned up in time."""
    last = [text for text in out.rstrip().splitlines() if not TRACKER.search(text)][-1]
    assert last == line or (line == STOPPED and SLOW_CLEANUP.match(last)), out[-3000:]
    assert "Traceback" not in out and "Error logging to API" not in out, out[-3000:]
    return last == line  # cleaned up within the grace period


def test_ctrl_c_stops_the_run_within_seconds_and_the_rerun_resumes_to_the_uninterrupted_result(
        tmp_path, clean_dir, prefect_server) -> None:
    data_dir = tmp_path / "interrupted" / "data"
    # Twice, as the flow starts: the second press ends the run while the first one's cleanup is under way.
    code, gone, out, _ = _ctrl_c(_east_run(data_dir), lambda line: "Beginning flow run" in line, presses=2)
    assert code == INTERRUPTED_EXIT and gone < AT_ONCE_S, (code, gone, out[-3000:])
    _stopped_with(out, STOPPED_AT_ONCE)
    print(f"Ctrl-C twice: stopped, nothing left running, {gone:.2f} s after the second")

    # Once each: mid pool generation (a later chunk under way), then mid training, each run resuming from the one
    # before; the second on the session's Prefect server (what a run started stops with it either way). A kill mid
    # evaluation is tests/test_faults.py's.
    rows = r"generate pool round 1 \[\w+\]: computed in [\d.]+s \(rows=\d+, resumed_questions=(\d+)"
    for case, at, api_url in (("generation", lambda line: POOL.search(line) is not None, None),
                              ("training", lambda line: TRAINING.search(line) is not None, prefect_server)):
        code, gone, out, started = _ctrl_c(_east_run(data_dir, api_url=api_url), at)
        assert code == INTERRUPTED_EXIT and gone < STOPPED_S, (case, code, gone, out[-3000:])
        assert "VLLM::EngineCore" in started, (case, started)
        if _stopped_with(out, STOPPED):  # Prefect heard of it (a run stopped at once ends without telling it)
            assert re.search(r"Flow run 'fault' - Finished in state (Crashed|Failed)", out), out[-3000:]
        if case == "training":  # this run finished the pool the first one was interrupted in
            assert int(re.search(rows, out).group(1)) > 0, out[-3000:]
        print(f"Ctrl-C during {case}: stopped, nothing left running, in {gone:.2f} s")

    final = _east_run(data_dir, api_url=prefect_server)  # no Ctrl-C: its Prefect server can be the session's
    out = final.communicate()[0]
    assert final.returncode == 0, out[-3000:]
    assert re.search(r"generate pool round 1 \[\w+\]: cached, skipped", out), out[-3000:]  # the training's run's
    assert results(data_dir) == results(clean_dir)  # same keys, same rows, none duplicated, same accuracies


QUERY = """
import sys

import duckdb
from prefect import flow, task

from flows.interrupts import stops_on_ctrl_c
from flows.self_train import RETRY


@task(**RETRY)
def long_query() -> int:
    print("QUERY STARTS", file=sys.stderr, flush=True)
    return duckdb.sql("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3").fetchone()[0]


@flow
def query() -> int:
    return long_query()


with stops_on_ctrl_c():
    query()
"""


def test_a_ctrl_c_that_a_library_turns_into_its_own_error_is_not_retried_and_stops_the_same(tmp_path,
                                                                                          prefect_server) -> None:
    """DuckDB answers a SIGINT during a query with RuntimeError("Query interrupted"), not KeyboardInterrupt (the
    runs above meet it when a press lands in a chunk's commit): the task, retried on a crash, is not retried, its
    failure is logged without a traceback, and the command stops as on any Ctrl-C. The flow reports to the
    session's Prefect server (the runs above stop their own with them)."""
    script = tmp_path / "query.py"
    script.write_text(QUERY)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONUNBUFFERED": "1",
           "PREFECT_API_URL": prefect_server}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, cwd=Path(__file__).parents[1])
    code, gone, out, _ = _ctrl_c(proc, lambda line: "QUERY STARTS" in line, wait_s=1)
    assert code == INTERRUPTED_EXIT and gone < STOPPED_S, (code, gone, out)
    assert "RuntimeError: Query interrupted" in out and "Retry" not in out, out
    _stopped_with(out, STOPPED)
