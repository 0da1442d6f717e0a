"""SIGKILL of the real `east run` (a subprocess: real Prefect, vLLM CPU engine, DuckDB) mid-generation, while a
checkpoint is half written and mid-evaluation: nothing of the killed run stays alive, and each rerun resumes to
exactly what an uninterrupted run of the same seed stores."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from east_tasks.faults import PAUSE_ENV
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


def _east_run(data_dir: Path, pause_at: str | None = None, experiment: str = "fault") -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(data_dir.parent / f"prefect-home-{experiment}"), "PYTHONUNBUFFERED": "1"}
    env.pop(PAUSE_ENV, None)
    if pause_at:
        env[PAUSE_ENV] = pause_at
    return subprocess.Popen([EAST, "run", "--preset", "tiny-test", "--experiment", experiment, "--rounds", "1",
                             "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


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


def test_killed_runs_leave_nothing_running_and_resume_to_the_uninterrupted_result(tmp_path) -> None:
    clean_dir, faulty_dir = tmp_path / "clean" / "data", tmp_path / "faulty" / "data"
    clean = _east_run(clean_dir)
    assert clean.wait() == 0, clean.stderr.read()[-3000:]

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
    final = _east_run(faulty_dir)
    assert final.wait() == 0, final.stderr.read()[-3000:]

    assert _results(faulty_dir) == _results(clean_dir)  # same keys, same rows, none duplicated, same accuracies
    assert not list((faulty_dir / "checkpoints").glob(".*.tmp-*"))  # the half-written checkpoint was removed


def test_three_concurrent_runs_on_one_store_all_finish_equal_to_a_run_alone(tmp_path) -> None:
    """Three runs of one configuration started together on one DuckDB file compute the same steps at the same
    time: each waits for the file's lock in turn, none fails, no row is duplicated, and each experiment's
    results equal those of the configuration run alone."""
    alone_dir, shared_dir = tmp_path / "alone" / "data", tmp_path / "shared" / "data"
    alone = _east_run(alone_dir, experiment="run-0")
    assert alone.wait() == 0, alone.stderr.read()[-3000:]
    runs = [_east_run(shared_dir, experiment=f"run-{i}") for i in range(3)]
    for run in runs:
        assert run.wait() == 0, run.stderr.read()[-3000:]
    reference = _results(alone_dir, "run-0")
    for i in range(3):
        assert _results(shared_dir, f"run-{i}") == reference
