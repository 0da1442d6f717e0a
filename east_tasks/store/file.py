"""The default backend: one DuckDB file, opened per step (DuckDB lets one process write a file at a time)."""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa

from east_tasks.config import StoreConfig
from east_tasks.errors import UserError
from east_tasks.store.queries import Queries
from east_tasks.store.schema import KEYS, StoreFault, ensure_schema
from east_tasks.store.selection import SelectionQueries

log = logging.getLogger(__name__)
T = TypeVar("T")


_UNREADABLE = re.compile(r"corrupt|checksum|could not read enough bytes|not a valid duckdb|truncat|serializ.*"
                         r"(fail|error)|invalid.*(block|magic|header)|failed to read", re.I)


def as_store_fault(err: BaseException, location: str | None = None) -> StoreFault | None:
    """A DuckDB error that says the store's file is damaged, as a StoreFault (None for any other error)."""
    if isinstance(err, StoreFault):
        return err
    if isinstance(err, duckdb.Error) and _UNREADABLE.search(str(err)):
        first = str(err).strip().splitlines()[0]
        return StoreFault(location or "file", f"cannot be read: it is corrupt or truncated ({first})")
    return None


def _connect_waiting(path: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """DuckDB lets one process write a file; another run's process that holds it (for one step's write, a
    second or so) is waited for, with backoff, up to `timeout_s`, logging who holds it."""
    deadline, delay, warned = time.monotonic() + timeout_s, 0.05, False
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as err:
            if not re.search(r"\block\b", str(err), re.I):  # not "... block at location ...": a checksum's
                fault = as_store_fault(err, str(path))  # a damaged file: one line saying so
                if fault:
                    raise fault from err
                raise
            holder = re.search(r"held in (.*?\(PID \d+\))", str(err))
            who = holder.group(1) if holder else "another process"
            if time.monotonic() + delay > deadline:
                raise UserError(f"store {path} stayed locked by {who} for more than {timeout_s:g}s "
                                f"(store.lock_timeout_s); is another run still writing to it?") from err
            if not warned:
                log.info("store %s is locked by %s; waiting up to %gs", path, who, timeout_s)
                warned = True
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


class FileClaim:
    """A step key held by one process of this machine while it computes the step (an exclusive `flock` on
    `<data_dir>/.locks/<key>`): another run reaching the same step waits for it and then finds it done, instead of
    computing it a second time. The kernel releases it when its holder dies, however it dies."""

    def __init__(self, lock_dir: Path, key: str):
        self.path, self.key = lock_dir / key, key
        self._fd: int | None = None

    def __enter__(self) -> FileClaim:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            log.info("step %s is being computed by %s; waiting for it", self.key, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


class Store(Queries, SelectionQueries):
    """A thin wrapper over one DuckDB file; open it per step (DuckDB allows one writer process)."""

    backend = "duckdb"
    opened = 0  # connections made by this process (both backends), which a test counts per round

    def __init__(self, path: Path | str, lock_timeout_s: float | None = None, memory_limit: str | None = None):
        """`lock_timeout_s` None: StoreConfig's default; `memory_limit` None: DuckDB's own."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if lock_timeout_s is None:
            lock_timeout_s = StoreConfig.model_fields["lock_timeout_s"].default
        self.con = _connect_waiting(self.path, lock_timeout_s)
        Store.opened += 1
        if memory_limit:  # beyond it DuckDB spills to disk beside the store instead of growing
            self.execute(f"SET memory_limit = '{memory_limit}'")
        self._in_transaction = False
        self._ensure_schema()

    def _ensure_schema(self, lake: bool = False) -> None:
        def migrate(store: Store) -> None:
            if ensure_schema(store.execute, store.location, lake):
                log.debug("store %s: schema brought up to date", store.location)

        self.atomically(migrate)

    @property
    def location(self) -> str:
        """Where the store is, fit to show (a lake's URL without secrets)."""
        return str(self.path)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield self.con
        except BaseException:
            with suppress(duckdb.Error):  # a statement that failed may have aborted the transaction already
                self.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False
        self.execute("COMMIT")

    def atomically(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)` in one transaction (on DuckLake: run again when a concurrent writer's commit conflicts)."""
        if self._in_transaction:
            return fn(self)
        with self.transaction():
            return fn(self)

    # --- generic helpers -------------------------------------------------------------------------------
    def insert_df(self, table: str, df: pd.DataFrame | pa.Table) -> None:
        """Appends a DataFrame whose columns are a subset of the table's, by name. Rows whose primary key is
        already there are skipped: keys are content hashes, so two runs computing one step at the same time
        write the same rows, and the second adds nothing (`data_findings`, unkeyed, is rewritten whole)."""
        if not len(df):
            return
        self.register("_incoming", df)
        try:
            self.execute(self._insert_sql(table, list(df.columns if isinstance(df, pd.DataFrame) else
                                                      df.column_names)))
        finally:
            self.unregister("_incoming")

    def insert_select(self, table: str, cols: list[str], select: str, params: Iterable[Any] = ()) -> None:
        """`INSERT ... SELECT`: the rows of a query into `table`, skipping keys already present (as `insert_df`)."""
        self.execute(self._insert_sql(table, cols, f"({select})"), params)

    def _insert_sql(self, table: str, cols: list[str], source: str = "_incoming") -> str:
        names = ", ".join(cols)
        return f"INSERT {'OR IGNORE ' if table in KEYS else ''}INTO {table} ({names}) SELECT {names} FROM {source}"

    def register(self, name: str, data: Any) -> None:
        self.con.register(name, data)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Runs a statement and drains its result (DuckDB refuses new work on a connection while one is pending)."""
        return self.con.execute(sql, list(params)).fetchall()

    def upsert(self, table: str, fields: dict[str, Any]) -> None:
        """One row by column name; replaces the row with the same primary key."""
        cols, marks = ", ".join(fields), ", ".join("?" for _ in fields)
        self.execute(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", fields.values())

    def insert_row(self, table: str, fields: dict[str, Any]) -> None:
        """One row by column name, unless a row with its primary key is there (keys are content hashes)."""
        self.insert_df(table, pd.DataFrame([fields]))

    def query(self, sql: str, params: Iterable[Any] = ()) -> pd.DataFrame:
        return self.con.execute(sql, list(params)).df()

    def batches(self, sql: str, params: Iterable[Any] = (), rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """A query's result as Arrow record batches, read as they are consumed (nothing is held whole)."""
        reader = self.con.execute(sql, list(params)).to_arrow_reader(rows)
        yield from reader
