"""The real `east run` as a subprocess, and what its store holds: shared by the fault, interrupt and fixture code."""

import os
import subprocess
import sys
import time
from pathlib import Path

from east_tasks.faults import PAUSE_ENV
from east_tasks.store import Store

EAST = str(Path(sys.executable).parent / "east")
# tiny-test, one round, on less data than the preset: every fault still has its place (a pool of three chunks, for a
# kill after the first and a Ctrl-C after a later one; several training steps; an evaluation of greedy then sampled
# answers), and a run computes a third of the preset's generations.
SMALL = ("data.pool_size=96", "sampling.chunk_size=32", "sampling.n=4", "train.batch_size=8", "data.test_size=40",
         "data.validation_size=16", "eval.n=2")
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


def run_command(data_dir: Path, experiment: str = "fault", *args: str) -> list[str]:
    """`east run` of the fault tests' configuration (SMALL) into `data_dir`."""
    return [EAST, "run", "--preset", "tiny-test", "--experiment", experiment, "--rounds", "1",
            *(f"--set={s}" for s in SMALL), "--data-dir", str(data_dir), *args]


def run_env(data_dir: Path, home: str, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The run's environment: its own PREFECT_HOME and, unless `api_url` names a server to use (the session's), its
    own ephemeral Prefect server, as a person's `east run` has; no fault hook unless `extra` sets one."""
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_ENV, "PREFECT_API_URL")}
    env.update(PREFECT_HOME=str(data_dir.parent / f"prefect-home-{home}"), PYTHONUNBUFFERED="1", **extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def east_run(data_dir: Path, pause_at: str | None = None, experiment: str = "fault", *args: str,
             env: dict | None = None, home: str | None = None, api_url: str | None = None) -> subprocess.Popen:
    env = run_env(data_dir, home or experiment, api_url, **(env or {}), **({PAUSE_ENV: pause_at} if pause_at else {}))
    command = run_command(data_dir, experiment, *args)
    if pause_at:  # the test reads stderr up to the pause
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = data_dir.parent / f"run-{home or experiment}-{time.monotonic_ns()}.log"  # a file: runs never block on it
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    """The run's exit code and everything it printed."""
    return proc.wait(), proc.log.read_text()


def results(data_dir: Path, experiment: str = "fault") -> dict:
    def rows(df) -> list[dict]:
        return df.astype(object).where(df.notna(), None).to_dict("records")  # NaN (no maj@k) compares as None

    with Store(data_dir / "east.duckdb") as store:
        out = {name: rows(store.query(sql)) for name, sql in RESULT_TABLES.items() if name != "rounds"}
        out["rounds"] = rows(store.query(RESULT_TABLES["rounds"].replace("ORDER BY", "WHERE experiment = ? ORDER BY"),
                                         [experiment]))
    return out
