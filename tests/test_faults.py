"""Faults of the real `east run` (a subprocess: real Prefect, vLLM CPU engine, DuckDB): SIGKILL mid-generation,
while a checkpoint is half written and mid-evaluation, and a full disk, in one run after another; runs of one
experiment started together with two configurations; a data dir copied elsewhere. Nothing of a killed run stays
alive, and each rerun resumes to exactly what an uninterrupted run of the same seed stores (`clean_dir`)."""

import json
import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest
from east_runs import east_run, finish, results, run_command
from typer.testing import CliRunner

from east_tasks.faults import DISK_FULL_ENV
from east_tasks.store import Store
from flows.cli import app


def _kill_when_paused(proc: subprocess.Popen, point: str) -> list[psutil.Process]:
    """Waits for the run to reach `point`, SIGKILLs it (nothing else), returns what it had started."""
    for line in proc.stderr:
        if f"EAST_PAUSED {point}" in line:  # after a progress bar's \r, on its line
            break
    else:
        pytest.fail(f"the run exited ({proc.wait()}) before reaching {point}")
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return children


def _kill_at(data_dir, point: str, api_url: str | None = None) -> None:
    """A run SIGKILLed at `point`: whatever it had started (its engine, and its own Prefect server unless `api_url`
    names one, as a person's `east run` has) goes with it."""
    left = _kill_when_paused(east_run(data_dir, pause_at=point, api_url=api_url), point)
    assert any(p.name().startswith("VLLM") for p in left) or point == "checkpoint-write"
    deadline = time.time() + 5
    while time.time() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in left):
        time.sleep(0.2)
    alive = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after the kill at {point}: {[(p.pid, p.name()) for p in alive]}"


def test_killed_runs_and_a_full_disk_leave_nothing_behind_and_resume_to_the_uninterrupted_result(
        tmp_path, clean_dir, prefect_server) -> None:
    """One data dir, each run getting one step further than the one before it: killed mid pool generation (one chunk
    of three committed); failing to write the checkpoint as on a full disk; killed with the checkpoint half written;
    killed mid evaluation of the trained model; then run to the end. The first run starts its own Prefect server
    (that it goes with the run is checked once); the others use the session's."""
    faulty_dir = tmp_path / "faulty" / "data"
    _kill_at(faulty_dir, "generate pool round 1")

    # The checkpoint's write fails as a full disk does (the EAST_DISK_FULL_AT hook): exit 3, one line naming where
    # and how much is free, no Prefect retry.
    code, out = finish(east_run(faulty_dir, env={DISK_FULL_ENV: "checkpoint-write"}, api_url=prefect_server))
    assert code == 3, out[-3000:]
    said = [line for line in out.splitlines() if line.startswith("disk full")]
    assert len(said) == 1 and "no space left on the file system of" in said[0] and "MB free" in said[0], out[-3000:]
    assert "tokenizer.json" in said[0] and "Traceback" not in out
    assert "Retrying" not in out and "AwaitingRetry" not in out  # a retry could not have helped

    _kill_at(faulty_dir, "checkpoint-write", prefect_server)
    ckpts = list((faulty_dir / "checkpoints").iterdir())  # the half-written checkpoint: in its temp dir, not in place
    assert ckpts and all(p.name.startswith(".") and ".tmp-" in p.name for p in ckpts)
    _kill_at(faulty_dir, "generate test greedy", prefect_server)

    code, out = finish(east_run(faulty_dir, api_url=prefect_server))
    assert code == 0, out[-3000:]
    assert results(faulty_dir) == results(clean_dir)  # same keys, same rows, none duplicated, same accuracies
    assert not list((faulty_dir / "checkpoints").glob(".*.tmp-*"))  # the half-written checkpoint was removed


def test_concurrent_runs_of_one_experiment_share_it_and_another_configuration_is_refused(tmp_path, clean_dir,
                                                                                       prefect_server) -> None:
    """Three runs of experiment "fault" started together on one DuckDB file, the third with another setting: the
    name is claimed in the store before any model step, so exactly one configuration wins it, the other's runs
    exit 2 naming the difference, and the winners (waiting for each other's steps through the step claims) end
    with the store of one run alone."""
    shared = tmp_path / "shared" / "data"
    runs = [east_run(shared, None, "fault", *extra, home=str(i), api_url=prefect_server)
            for i, extra in enumerate(((), (), ("--a", "1.0")))]
    outcomes = [finish(run) for run in runs]
    with Store(shared / "east.duckdb") as store:
        (config,), = store.execute("SELECT config FROM experiments WHERE experiment = 'fault'")
    a = json.loads(config)["weighting"]["a"]
    won = [i for i, (code, _) in enumerate(outcomes) if code == 0]
    assert won == ([0, 1] if a == 0 else [2]), [(code, out[-2000:]) for code, out in outcomes]
    for i, (code, out) in enumerate(outcomes):
        if i not in won:
            assert code == 2 and "experiment 'fault' already exists" in out and "weighting.a" in out, out[-2000:]
    with Store(shared / "east.duckdb") as store:
        recorded = {json.loads(c)["weighting"]["a"] for (c,) in store.execute("SELECT config FROM experiment_rounds")}
    assert recorded == {a}  # nothing of the refused configuration reached the experiment
    if a == 0:
        assert results(shared) == results(clean_dir)


def _east(*args: object) -> tuple[int, str]:
    out = CliRunner().invoke(app, [str(a) for a in args])
    return out.exit_code, out.output


def test_a_copied_data_dir_is_a_full_cache_hit_and_gc_keeps_its_checkpoints(tmp_path, clean_dir,
                                                                            prefect_server) -> None:
    """The store records checkpoints relative to the data dir: a copy elsewhere (the original moved away) reruns
    every step from the store (no step computed, no row rewritten), reports the same, and `east gc` finds nothing
    to remove."""
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(clean_dir, copy)
    moved = clean_dir.with_name("moved-away")
    clean_dir.rename(moved)

    def steps() -> list:
        with Store(copy / "east.duckdb") as store:
            return store.execute("SELECT step_key, status, updated_at FROM step_status ORDER BY step_key")

    try:
        before = steps()
        code, out = _east(*run_command(copy)[1:])
        assert code == 0, out[-3000:]
        assert steps() == before and {status for _, status, _ in before} == {"done"}
        assert results(copy) == results(moved)
        reports = [_east("report", "--json", "--data-dir", d) for d in (copy, moved)]
        assert reports[0][0] == 0 and json.loads(reports[0][1]) == json.loads(reports[1][1])
        code, out = _east("gc", "--data-dir", copy)
        assert code == 0 and "0 directories" in out, out
    finally:
        moved.rename(clean_dir)
