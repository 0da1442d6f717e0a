"""The single-file store under concurrent processes: a locked file is waited for, with a bound."""

import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from east_tasks.errors import UserError
from east_tasks.io import temp_prefix
from east_tasks.store import SCHEMA_VERSION, Store

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("INSERT INTO held VALUES (1)")
con.close()
"""


def _hold(path, seconds: float) -> subprocess.Popen:
    """Another process with the file open for writing for `seconds` (as a run does during one step's write)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_store_is_waited_for_then_opened(tmp_path) -> None:
    path = tmp_path / "east.duckdb"
    holder = _hold(path, 2.0)
    t0 = time.monotonic()
    with Store(path, lock_timeout_s=30) as store:
        waited = time.monotonic() - t0
        assert store.execute("SELECT count(*) FROM held")[0][0] == 1  # the holder's write is there, whole
    assert holder.wait(5) == 0 and waited > 1.0  # it waited for the holder, short of its 30 s timeout


def test_a_store_locked_too_long_is_a_clear_error_naming_the_holder(tmp_path) -> None:
    path = tmp_path / "east.duckdb"
    holder = _hold(path, 60.0)  # far longer than the timeout: the refusal cannot be the holder letting go
    t0 = time.monotonic()
    try:
        with pytest.raises(UserError, match=rf"store {path} stayed locked by .*\(PID {holder.pid}\) for more than "
                                            r"0.5s \(store.lock_timeout_s\)"):
            Store(path, lock_timeout_s=0.5)
        assert time.monotonic() - t0 < 0.5 + 20  # its timeout, with a loaded 2-core machine's margin
    finally:
        holder.kill()
        holder.wait(10)


def test_a_failure_inside_the_flow_is_told_once_on_the_console(tmp_path, prefect_server) -> None:
    """Refused by the flow's data step, where the task's log, the flow's, both runs' `Finished in state Failed(...)`
    and the command each had a copy of the line: the console shows it once, the command's (the UI keeps the runs').
    The run reports to the session's Prefect server."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _east("run", "--preset", "tiny-test", "--data-dir", str(tmp_path / "data"), "--set", "data.source=gsm8k",
                "--set", f"data.path={empty}", env={**os.environ, "PREFECT_API_URL": prefect_server})
    both = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in both and "| ERROR" not in both, both
    assert both.count(f"{empty}: no file for split 'train'") == 1, both
    assert "Beginning flow run" in both  # refused inside the flow, not before it


def test_doctor_names_the_process_writing_to_the_store_and_fails_on_a_damaged_one(tmp_path) -> None:
    from typer.testing import CliRunner

    from east_tasks.report.doctor import check_store
    from flows.cli import app

    path = tmp_path / "east.duckdb"
    Store(path).close()
    assert check_store(tmp_path).found == f"{path}: schema version {SCHEMA_VERSION}"
    holder = _hold(path, 3.0)
    held = check_store(tmp_path)
    assert held.status == "warn" and re.search(rf"{path} is being written by .*\(PID {holder.pid}\)", held.found)
    holder.wait(10)
    os.truncate(path, path.stat().st_size // 2)
    out = CliRunner().invoke(app, ["doctor", "--data-dir", str(tmp_path)])
    line = next(line for line in out.output.splitlines() if line[6:16].strip() == "store")
    assert out.exit_code == 1 and line.startswith("FAIL") and "corrupt or truncated" in line
    assert "restore it from a backup" in line


def _store_with_rounds(tmp_path):
    """Rounds 1-3 recorded (relative paths, as the store records them); a stray checkpoint; temp dirs of a killed
    local writer, of one from before writers were named (idle for two hours), of this live process and of a
    recently active writer on another host; a started training step's checkpoint."""
    data = tmp_path / "data"
    ckpts = data / "checkpoints"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    names = ("r1", "r2", "r3", "stray", "training", ".r4.tmp-abc", f".r5.{temp_prefix('r5')[4:]}live",
             f".r6.tmp-{socket.gethostname()}-{dead.stdout.strip()}-dead", ".r7.tmp-elsewhere-12-busy")
    for name in names:
        (ckpts / name).mkdir(parents=True)
        (ckpts / name / "model.safetensors").write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    for f in (ckpts / ".r4.tmp-abc", ckpts / ".r4.tmp-abc" / "model.safetensors"):
        os.utime(f, (two_hours_ago, two_hours_ago))
    with Store(data / "east.duckdb") as store:
        for r, name in ((0, None), (1, "r1"), (2, "r2"), (3, "r3")):
            store.record_round("exp", r, model_path=None if name is None else f"checkpoints/{name}", n_kept=r)
        store.mark_step("training", "train", "exp", "running")
    return data, ckpts


def test_gc_lists_then_removes_only_what_no_run_may_use(tmp_path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    data, ckpts = _store_with_rounds(tmp_path)
    dry = CliRunner().invoke(app, ["gc", "--data-dir", str(data)])
    listed = sorted(Path(line.split()[-1]).name for line in dry.output.splitlines() if "would remove" in line)
    assert dry.exit_code == 0 and "3 directories; run with --delete" in dry.output
    assert listed == sorted([".r4.tmp-abc", next(p.name for p in ckpts.iterdir() if p.name.endswith("-dead")),
                             "stray"])
    assert len(list(ckpts.iterdir())) == 9  # a dry run removes nothing
    older = CliRunner().invoke(app, ["gc", "--data-dir", str(data), "--keep-last", "1"])
    assert "5 directories" in older.output and "r1" in older.output and "r2" in older.output
    done = CliRunner().invoke(app, ["gc", "--data-dir", str(data), "--delete"])
    assert done.exit_code == 0 and "removed 3 directories, 0.0 MB" in done.output
    removed = [Path(line.split()[-1]).name for line in done.output.splitlines() if line.startswith("removing")]
    assert sorted(removed) == listed  # exactly what the dry run listed
    assert sorted(p.name for p in ckpts.iterdir() if not p.name.startswith(".")) == ["r1", "r2", "r3", "training"]
    assert {p.name[:4] for p in ckpts.iterdir() if p.name.startswith(".")} == {".r5.", ".r7."}


def _records(df) -> list[dict]:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def test_export_writes_every_table_to_parquet_equal_to_the_store(tmp_path) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from east_tasks.store import TABLES
    from flows.cli import app

    data, _ = _store_with_rounds(tmp_path)
    with Store(data / "east.duckdb") as store:
        store.mark_step("k1", "train", "exp", "done", 1.5, {"examples": 3})
    out = CliRunner().invoke(app, ["export", "--parquet", str(tmp_path / "pq"), "--data-dir", str(data)])
    assert out.exit_code == 0, out.output
    assert sorted(p.stem for p in (tmp_path / "pq").glob("*.parquet")) == sorted(TABLES)
    with Store(data / "east.duckdb") as store:
        for table in ("experiment_rounds", "step_status", "generations"):
            stored = store.query(f"SELECT * FROM {table}")
            assert _records(pd.read_parquet(tmp_path / "pq" / f"{table}.parquet")) == _records(stored)
    assert len(pd.read_parquet(tmp_path / "pq" / "experiment_rounds.parquet")) == 4


def _east(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "east"), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def _a_store(data: Path) -> Path:
    with Store(data / "east.duckdb") as store:
        store.execute("INSERT INTO problems SELECT 'k', 'test', i, 'p' || i, repeat('question ', 200), 'a', 1 "
                      "FROM range(3000) t(i)")
        store.claim_experiment("exp", "{}")
    return data / "east.duckdb"


def test_a_schema_2_store_is_migrated_keeping_its_evaluations(tmp_path) -> None:
    """v2 evaluations had greedy, maj@k and pass@k ("any of the k samples"): they are pass@n and maj@n now, and the
    sampled pass@1 and the other k are NULL until a run reaches the evaluation (its step computes them then)."""
    import duckdb

    from east_tasks.store import SCHEMA_VERSION

    path = tmp_path / "east.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))  # the same store as schema 2 wrote it
    for column in ("pass1", "pass1_se", "pass_at_k", "maj_at_k"):
        con.execute(f"ALTER TABLE evaluations DROP COLUMN {column}")
    con.execute("UPDATE store_info SET value = '2' WHERE name = 'schema_version'")
    con.execute("INSERT INTO evaluations VALUES ('sampled', 'm', 'd', 90, 4, 0.4, 0.45, 0.7, '{}', 1.0), "
                "('greedy', 'm', 'd', 40, 0, 0.5, NULL, NULL, '{}', 1.0)")
    con.close()
    with Store(path) as store:  # migrated through v3 to today's version
        assert store.execute("SELECT value FROM store_info WHERE name = 'schema_version'") == [(str(SCHEMA_VERSION),)]
        assert store.evaluation("sampled") == {"n_questions": 90, "k": 4, "greedy_acc": 0.4, "maj_acc": 0.45,
                                               "pass_acc": 0.7, "pass1": None, "pass1_se": None,
                                               "pass_at_k": {"4": 0.7}, "maj_at_k": {"4": 0.45}}
        greedy = store.evaluation("greedy")
        assert (greedy["maj_acc"], greedy["pass1"], greedy["pass_at_k"], greedy["maj_at_k"]) == (None,) * 4
    with Store(path) as store:  # and opened again, it is found whole
        assert store.execute("SELECT count(*) FROM evaluations WHERE pass_at_k IS NOT NULL") == [(1,)]


def _one_red_line(out: subprocess.CompletedProcess) -> str:
    prefect = ("| INFO    | prefect", "See https://docs.prefect.io")  # the run's own server starting and stopping
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip() and not line.startswith(prefect)
             and not any(p in line for p in prefect)]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stdout + out.stderr
    return lines[0]


@pytest.mark.parametrize("damage", ["truncated", "corrupt block", "missing column", "newer schema"])
def test_a_damaged_store_is_one_line_with_its_own_exit_code(tmp_path, damage, prefect_server) -> None:
    """Before anything loads: `east run` names the store in one line and exits 3 (2 for a store of a newer east).
    The run is pointed at the session's Prefect server, which it would otherwise start before its first check."""
    import duckdb

    path = _a_store(tmp_path)
    if damage == "truncated":
        os.truncate(path, path.stat().st_size // 2)
    elif damage == "corrupt block":
        blob, noise = bytearray(path.read_bytes()), random.Random(0)
        for at in range(20_000, len(blob), 4096):  # inside blocks, whose checksums DuckDB then finds wrong
            blob[at:at + 16] = noise.randbytes(16)
        path.write_bytes(bytes(blob))
    else:
        con = duckdb.connect(str(path))
        con.execute("ALTER TABLE checkpoints DROP COLUMN train_loss" if damage == "missing column" else
                    "UPDATE store_info SET value = '99' WHERE name = 'schema_version'")
        con.close()
    for command in (["run", "--preset", "tiny-test"], *([["store", "check"]] if damage == "truncated" else [])):
        out = _east(*command, "--data-dir", str(tmp_path), env={**os.environ, "PREFECT_API_URL": prefect_server})
        line = _one_red_line(out)
        if damage == "newer schema":  # east is too old for it: the user upgrades east
            assert out.returncode == 2 and "schema version 99, written by a newer east" in line
        else:
            assert out.returncode == 3, out.stdout + out.stderr
            expected = "lacks checkpoints.train_loss" if damage == "missing column" else "corrupt or truncated"
            assert f"store {path}" in line and expected in line and "restore it from a backup" in line
    debug = _east("--debug", "report", "--data-dir", str(tmp_path))
    assert "Traceback" in debug.stdout + debug.stderr and debug.returncode in (2, 3)


def test_store_check_reads_every_table_and_backup_is_an_equal_store(tmp_path) -> None:
    path = _a_store(tmp_path / "data")
    checked = _east("store", "check", "--data-dir", str(tmp_path / "data"))
    assert checked.returncode == 0 and "table problems: 3000 rows read" in checked.stdout
    backed = _east("store", "backup", str(tmp_path / "copy"), "--data-dir", str(tmp_path / "data"))
    assert backed.returncode == 0, backed.stdout + backed.stderr
    with Store(path) as original, Store(tmp_path / "copy" / "east.duckdb") as copy:
        for table in ("problems", "experiments", "store_info"):
            assert _records(copy.query(f"SELECT * FROM {table} ORDER BY ALL")) == \
                   _records(original.query(f"SELECT * FROM {table} ORDER BY ALL"))
        copy.insert_df("problems", original.query("SELECT * FROM problems LIMIT 5"))  # keys hold in the copy
        assert copy.execute("SELECT count(*) FROM problems")[0][0] == 3000
    assert not [p for p in (tmp_path / "copy").iterdir() if p.name != "east.duckdb"]


@pytest.mark.parametrize(("setting", "expected"), [
    ("experiment=" + "x" * 200, "experiment: String should have at most 128 characters"),
    ("experiment=../up", "experiment: String should match pattern"),
    ("data_dir=/", "data_dir: data_dir '/' is a file system root or the home directory"),
])
def test_names_and_paths_that_cannot_work_are_refused_in_one_line(tmp_path, setting, expected) -> None:
    out = _east("run", "--preset", "tiny-test", "--set", setting)
    assert out.returncode == 2 and expected in _one_red_line(out)
