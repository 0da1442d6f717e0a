"""Faults of the real `east run` (a subprocess: real Prefect, vLLM CPU engine, DuckDB): SIGKILL mid-generation,
while a checkpoint is half written and mid-evaluation; runs of one experiment started together with two
configurations; a data dir copied elsewhere; a full disk. Nothing of a killed run stays alive, and each rerun
resumes to exactly what an uninterrupted run of the same seed stores."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from east_tasks.faults import DISK_FULL_ENV, PAUSE_ENV
from east_tasks.store import Store

EAST = str(Path(sys.executable).parent / "east")
RESULT_TABLES = {  # every stored result, in a canonical order (keys are content hashes: equal runs, equal keys)
    "generations": "SELECT gen_key, problem_id, sample_idx, text, correct FROM generations ORDER BY ALL",
    "question_stats": "SELECT weight_key, problem_id, entropy, drop_reason FROM question_stats ORDER BY ALL",
    "training_examples": "SELECT weight_key, example_idx, problem_id, sample_idx, weight FROM training_examples "
                         "ORDER BY ALL",
    "checkpoints": "SELECT ckpt_key, model_hash FROM checkpoints ORDER BY ALL",
    "evaluations": "SELECT eval_key, greedy_acc, maj_acc, pass_acc FROM evaluations ORDER BY ALL",
    "rounds": "SELECT round, model_hash, eval_key, val_eval_key, gen_key, weight_key, n_kept FROM experiment_rounds "
              "ORDER BY ALL",
    # not who computed it; a round's record is its experiment's own ("rounds" compares it)
    "steps": "SELECT step_key, step, status FROM step_status WHERE step NOT LIKE 'record round %' ORDER BY ALL",
}


def _east_run(data_dir: Path, pause_at: str | None = None, experiment: str = "fault", *args: str,
              env: dict | None = None, home: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(data_dir.parent / f"prefect-home-{home or experiment}"),
           "PYTHONUNBUFFERED": "1", **(env or {})}
    if pause_at:
        env[PAUSE_ENV] = pause_at
    else:
        env.pop(PAUSE_ENV, None)
    command = [EAST, "run", "--preset", "tiny-test", "--experiment", experiment, "--rounds", "1", "--data-dir",
               str(data_dir), *args]
    if pause_at:  # the test reads stderr up to the pause
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = data_dir.parent / f"run-{home or experiment}-{time.monotonic_ns()}.log"  # a file: runs never block on it
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    """The run's exit code and everything it printed."""
    return proc.wait(), proc.log.read_text()


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    """An uninterrupted run of experiment "fault", the reference every faulty run must end equal to."""
    data_dir = tmp_path_factory.mktemp("clean") / "data"
    code, out = _finish(_east_run(data_dir))
    assert code == 0, out[-3000:]
    return data_dir


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


def _results(data_dir: Path, experiment: str = "fault") -> dict:
    def rows(df) -> list[dict]:
        return df.astype(object).where(df.notna(), None).to_dict("records")  # NaN (no maj@k) compares as None

    with Store(data_dir / "east.duckdb") as store:
        out = {name: rows(store.query(sql)) for name, sql in RESULT_TABLES.items() if name != "rounds"}
        out["rounds"] = rows(store.query(RESULT_TABLES["rounds"].replace("ORDER BY", "WHERE experiment = ? ORDER BY"),
                                         [experiment]))
    return out


def test_killed_runs_leave_nothing_running_and_resume_to_the_uninterrupted_result(tmp_path, clean_dir) -> None:
    faulty_dir = tmp_path / "faulty" / "data"
    # Each kill, then a rerun that gets one step further: mid pool generation (one chunk of three committed),
    # with the round's checkpoint half written, and mid evaluation of the trained model.
    for point in ("generate pool round 1", "checkpoint-write", "generate test greedy"):
        left = _kill_when_paused(_east_run(faulty_dir, pause_at=point), point)
        assert any(p.name().startswith("VLLM") for p in left) or point == "checkpoint-write"
        deadline = time.time() + 5
        while time.time() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in left):
            time.sleep(0.2)
        alive = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"left running after the kill at {point}: {[(p.pid, p.name()) for p in alive]}"
        if point == "checkpoint-write":  # the half-written checkpoint is only in its temp dir, never in place
            ckpts = list((faulty_dir / "checkpoints").iterdir())
            assert ckpts and all(p.name.startswith(".") and ".tmp-" in p.name for p in ckpts)
    code, out = _finish(_east_run(faulty_dir))
    assert code == 0, out[-3000:]

    assert _results(faulty_dir) == _results(clean_dir)  # same keys, same rows, none duplicated, same accuracies
    assert not list((faulty_dir / "checkpoints").glob(".*.tmp-*"))  # the half-written checkpoint was removed


def test_concurrent_runs_of_one_experiment_share_it_and_another_configuration_is_refused(tmp_path,
                                                                                       clean_dir) -> None:
    """Three runs of experiment "fault" started together on one DuckDB file, the third with another setting: the
    name is claimed in the store before any model step, so exactly one configuration wins it, the other's runs
    exit 2 naming the difference, and the winners (waiting for each other's steps through the step claims) end
    with the store of one run alone."""
    shared = tmp_path / "shared" / "data"
    runs = [_east_run(shared, None, "fault", *extra, home=str(i))
            for i, extra in enumerate(((), (), ("--a", "1.0")))]
    outcomes = [_finish(run) for run in runs]
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
        assert _results(shared) == _results(clean_dir)


def test_a_copied_data_dir_is_a_full_cache_hit_and_gc_keeps_its_checkpoints(tmp_path, clean_dir) -> None:
    """The store records checkpoints relative to the data dir: a copy elsewhere (the original moved away) reruns
    every step from the store, reports the same, and `east gc` finds nothing to remove."""
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(clean_dir, copy)
    moved = clean_dir.with_name("moved-away")
    clean_dir.rename(moved)
    try:
        code, out = _finish(_east_run(copy))
        assert code == 0, out[-3000:]
        assert "computed in" not in out and "cached, skipped" in out
        assert _results(copy) == _results(moved)
        reports = [subprocess.run([EAST, "report", "--json", "--data-dir", str(d)], capture_output=True, text=True)
                   for d in (copy, moved)]
        assert reports[0].returncode == 0 and json.loads(reports[0].stdout) == json.loads(reports[1].stdout)
        gc = subprocess.run([EAST, "gc", "--data-dir", str(copy)], capture_output=True, text=True)
        assert gc.returncode == 0 and "0 directories" in gc.stdout, gc.stdout + gc.stderr
    finally:
        moved.rename(clean_dir)


def test_a_full_disk_is_one_line_not_retried_and_the_rerun_resumes(tmp_path, clean_dir) -> None:
    """The checkpoint's write fails as a full disk does (the EAST_DISK_FULL_AT hook): exit 3, one line naming
    where and how much is free, no Prefect retry; the rerun resumes to the clean run's store."""
    data_dir = tmp_path / "full" / "data"
    code, out = _finish(_east_run(data_dir, env={DISK_FULL_ENV: "checkpoint-write"}))
    assert code == 3, out[-3000:]
    said = [line for line in out.splitlines() if line.startswith("disk full")]
    assert len(said) == 1 and "no space left on the file system of" in said[0] and "MB free" in said[0], out[-3000:]
    assert "tokenizer.json" in said[0] and "Traceback" not in out
    assert "Retrying" not in out and "AwaitingRetry" not in out  # a retry could not have helped
    code, out = _finish(_east_run(data_dir))
    assert code == 0, out[-3000:]
    assert _results(data_dir) == _results(clean_dir)
