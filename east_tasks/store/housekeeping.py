"""Housekeeping: checkpoints the store no longer needs and temp dirs killed runs left (`east gc`), the store's
integrity and its checkpoints' hashes (`east store check`) and a consistent copy of it (`east store backup`).

`east gc` never removes what a run may be using: a live (or, for another host's writer, recently active) writer's
temp dir, or the checkpoint of any recorded round, trained step, or started or claimed training step."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from east_tasks.io import hash_dir, is_model_file, temp_target, writer_may_be_alive
from east_tasks.paths import CHECKPOINTS, STORE_FILE
from east_tasks.store import SCHEMA_VERSION, TABLES, Store, as_store_fault
from east_tasks.store.schema import stored_version


def removable(store: Store, checkpoint_dir: Path, keep_last: int | None = None) -> list[Path]:
    """What `east gc --delete` removes under `checkpoint_dir` (and its dry run lists); with `keep_last`, also the
    checkpoints of every round before each experiment's last `keep_last`."""
    if not checkpoint_dir.is_dir():
        return []
    keep = store.referenced_checkpoints(keep_last)

    def stale(p: Path) -> bool:
        if temp_target(p) is not None:
            return not writer_may_be_alive(p)
        return p.is_dir() and p.name not in keep

    return sorted(p for p in checkpoint_dir.iterdir() if stale(p))


def remove(paths: list[Path]) -> int:
    """Deletes them (a temp dir only if its writer is still gone: it may have been a slow one); the bytes freed."""
    freed = 0
    for path in paths:
        if temp_target(path) is not None and writer_may_be_alive(path):
            continue
        files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
        freed += sum(f.stat().st_size for f in files if f.exists())
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return freed


def check(store: Store, data_dir: Path) -> list[tuple[bool, str]]:
    """(ok, what) per check: every table's every block read back (DuckDB verifies each block's checksum as it reads
    it, so a damaged file fails here), the rows in each, and the checkpoints the store records present on disk.
    The schema version and columns were checked when the store was opened."""
    out = [(True, f"{store.backend} store {store.location}: schema version {SCHEMA_VERSION}, every table and column")]
    for table in TABLES:
        try:
            rows = store.execute(f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM {table}")[0][0]
        except Exception as err:  # noqa: BLE001 - a damaged block: say which table, go on to the next
            out.append((False, f"table {table}: cannot be read ({str(err).strip().splitlines()[0]})"))
        else:
            out.append((True, f"table {table}: {rows} rows read"))
    recorded = store.referenced_checkpoints() - store.started_steps()  # those not written yet
    missing = sorted(k for k in recorded if not (data_dir / CHECKPOINTS / k).is_dir())
    out.append((not missing, f"checkpoints: {len(recorded) - len(missing)} of {len(recorded)} the store records are "
                             f"under {data_dir / CHECKPOINTS}" + (f"; missing: {', '.join(missing[:5])}" if missing
                                                                   else "")))
    return out


def verify_checkpoints(recorded: list[tuple[str, str, str]], data_dir: Path) -> list[tuple[bool, str]]:
    """(ok, what) for the checkpoints of `recorded` (`Store.checkpoint_hashes`, read beforehand: hashing may take
    minutes, and the store is not held meanwhile) that are on disk: each one's files hashed as the run that wrote
    it hashed them (`io.hash_dir`). The last line says how many were hashed, how much, and in how long."""
    t0, size, out, present = time.monotonic(), 0, [], 0
    for key, stored, rounds in recorded:
        where = data_dir / CHECKPOINTS / key
        if not where.is_dir():  # `check` lists the missing ones
            continue
        present += 1
        size += sum(f.stat().st_size for f in where.rglob("*") if is_model_file(f))
        if (found := hash_dir(where)) != stored:
            used = f" ({rounds})" if rounds else ""
            out.append((False, f"checkpoint {where}{used}: its files hash to {found}, not the {stored} the store "
                               "recorded (changed or damaged on disk); the next run of its experiment trains it "
                               "again, or restore the directory from a backup"))
    out.append((not out, f"checkpoint hashes: {present - len(out)} of {present} match the store ({size / 1e6:.1f} MB "
                         f"hashed in {time.monotonic() - t0:.1f}s)"))
    return out


def backup(store: Store, dest: Path) -> Path:
    """A consistent copy of the store as one DuckDB file, `dest/east.duckdb`, written beside its place and renamed
    into it: DuckDB copies the tables in one transaction, so the copy is the store as of one instant, whatever
    writes go on (a lake is copied into a file store too)."""
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / STORE_FILE
    tmp = dest / f".{STORE_FILE}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    source = store.execute("SELECT current_database()")[0][0]
    try:
        store.execute(f"ATTACH '{tmp}' AS east_backup")
        try:
            store.execute(f"COPY FROM DATABASE \"{source}\" TO east_backup")
        finally:
            store.execute("DETACH east_backup")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return final


@dataclass(frozen=True)
class Glance:
    """What a look at a store file found without writing to it or waiting for it (`east doctor`)."""

    version: int | None = None  # the schema version; None for an empty store
    holder: str | None = None  # the process writing to it, where one is
    damage: str | None = None  # why it cannot be read, where it cannot


def glance(path: Path) -> Glance:
    """Opens the store file read-only, once: its schema version, or who holds it (DuckDB lets one process write a
    file, and then no other open it), or the damage that keeps it from being read."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        if fault := as_store_fault(err, str(path)):
            return Glance(damage=str(fault))
        if holder := re.search(r"held in (.*?\(PID \d+\))", str(err)):
            return Glance(holder=holder.group(1))
        return Glance(damage=str(err).strip().splitlines()[0])
    try:
        return Glance(version=stored_version(lambda sql, params=(): con.execute(sql, params).fetchall()))
    except duckdb.Error as err:
        fault = as_store_fault(err, str(path))
        return Glance(damage=str(fault) if fault else str(err).strip().splitlines()[0])
    finally:
        con.close()
