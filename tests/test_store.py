"""The single-file store under concurrent processes: a locked file is waited for, with a bound."""

import subprocess
import sys
import time

import pytest

from east_tasks.errors import UserError
from east_tasks.store import Store

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
    assert holder.wait(5) == 0 and 1.0 < waited < 10


def test_a_store_locked_too_long_is_a_clear_error_naming_the_holder(tmp_path) -> None:
    path = tmp_path / "east.duckdb"
    holder = _hold(path, 3.0)
    t0 = time.monotonic()
    with pytest.raises(UserError, match=rf"store {path} stayed locked by .*\(PID {holder.pid}\) for more than "
                                        r"0.5s \(store.lock_timeout_s\)"):
        Store(path, lock_timeout_s=0.5)
    assert time.monotonic() - t0 < 2.0
    holder.wait(10)


def _store_with_rounds(tmp_path):
    data = tmp_path / "data"
    ckpts = data / "checkpoints"
    for name in ("r1", "r2", "r3", "stray", ".r4.tmp-abc"):
        (ckpts / name).mkdir(parents=True)
        (ckpts / name / "model.safetensors").write_bytes(b"x" * 1000)
    with Store(data / "east.duckdb") as store:
        for r, name in ((0, None), (1, "r1"), (2, "r2"), (3, "r3")):
            store.record_round("exp", r, model_path=None if name is None else str(ckpts / name), n_kept=r)
    return data, ckpts


def test_gc_lists_then_removes_what_the_store_does_not_reference(tmp_path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    data, ckpts = _store_with_rounds(tmp_path)
    dry = CliRunner().invoke(app, ["gc", "--data-dir", str(data)])
    assert dry.exit_code == 0 and "2 directories; run with --delete" in dry.output
    assert "would remove" in dry.output and "stray" in dry.output and ".r4.tmp-abc" in dry.output
    assert len(list(ckpts.iterdir())) == 5  # a dry run removes nothing
    older = CliRunner().invoke(app, ["gc", "--data-dir", str(data), "--keep-last", "1"])
    assert "4 directories" in older.output and "r1" in older.output and "r2" in older.output
    done = CliRunner().invoke(app, ["gc", "--data-dir", str(data), "--delete"])
    assert done.exit_code == 0 and "removed 2 directories, 0.0 MB" in done.output
    assert sorted(p.name for p in ckpts.iterdir()) == ["r1", "r2", "r3"]


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
