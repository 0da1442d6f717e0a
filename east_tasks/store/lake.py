"""DuckLake: the same tables in a lake that many processes and machines write at once.

Catalog in PostgreSQL or SQLite, data files under `store.data_path`. DuckLake has no primary keys, so there the
keys hold by construction: one worker computes a step (a `Claim` on its key), a keyed insert skips the rows
already present, and writes that delete retry on DuckLake's conflict.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd

from east_tasks.config import StoreConfig
from east_tasks.errors import UserError
from east_tasks.io import mask_url
from east_tasks.store.file import Store
from east_tasks.store.schema import KEYS

log = logging.getLogger(__name__)
T = TypeVar("T")

_CONFLICT = re.compile(r"conflict|database is locked|could not serialize", re.I)  # worth another try
# extension -> (the PyPI package shipping DuckDB's signed build, the file's canonical name: it carries the entry point)
_PACKAGED_EXTENSIONS = {"ducklake": ("duckdb_extension_ducklake", "ducklake"),
                        "postgres": ("duckdb_extension_postgres", "postgres_scanner"),
                        "sqlite": ("duckdb_extension_sqlite", "sqlite_scanner")}


@functools.cache
def packaged_extension_dir() -> Path | None:
    """DuckDB's extensions from their PyPI packages (pinned with DuckDB in pyproject.toml), laid out as DuckDB's own
    extension directory (`<dir>/v<version>/<platform>/<name>.duckdb_extension`), so LOAD finds them without a
    network. None where the packages are not installed: then DuckDB's own INSTALL fetches them."""
    try:
        sources = {name: next(Path(importlib.import_module(pkg).__file__).parent.glob("extensions/*/*.duckdb_*"))
                   for pkg, name in _PACKAGED_EXTENSIONS.values()}
    except (ImportError, StopIteration):
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "east" / "duckdb-extensions"
    target = root / f"v{duckdb.__version__}" / duckdb.execute("PRAGMA platform").fetchone()[0]
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        link = target / f"{name}.duckdb_extension"
        if not link.exists() or link.resolve() != source.resolve():
            tmp = link.with_name(f".{link.name}.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(source)
            tmp.replace(link)  # atomic: a concurrent process sees the old link or the new one
    return root


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_FIRST_ATTACH_RACE = re.compile(r"initialize DuckLake|already exists|duplicate key", re.I)


def _attach_lake(url: str, data_path: str, attempts: int = 8) -> duckdb.DuckDBPyConnection:
    catalog = url.split(":")[1]  # postgres | sqlite (StoreConfig checks the form)
    packaged = packaged_extension_dir()
    for attempt in range(attempts):
        con = duckdb.connect(config={"extension_directory": str(packaged), "autoinstall_known_extensions": False}
                             if packaged else {})
        try:
            for extension in (catalog, "ducklake"):
                con.execute(f"{'' if packaged else f'INSTALL {extension}; '}LOAD {extension}")
            con.execute(f"ATTACH {_quoted(url)} AS lake (DATA_PATH {_quoted(data_path)})")
            con.execute("USE lake")
            return con
        except duckdb.Error as err:
            con.close()
            # workers attaching a new catalog at once race to create its tables: the losers attach to the winner's
            if (_FIRST_ATTACH_RACE.search(str(err)) or _CONFLICT.search(str(err))) and attempt + 1 < attempts:
                time.sleep(0.1 * 2**attempt * random.uniform(0.5, 1.5))
                continue
            reason = mask_url(str(err).strip().splitlines()[0])
            raise UserError(f"store.url {mask_url(url)}: cannot open the DuckLake catalog ({reason})") from err
    raise AssertionError("unreachable")


_ATTACHED: dict[tuple[str, str], duckdb.DuckDBPyConnection] = {}  # this process's lakes, attached once
_ATTACHING = threading.Lock()


def _lake_connection(url: str, data_path: str) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A connection of this process's attached lake, and whether the lake was attached just now. Attaching is slow
    (loading the extensions, the catalog's round trips) and a cursor of the attached database cheap, so a process
    attaches once; each cursor has its own transactions and sees what other processes committed."""
    with _ATTACHING:
        root = _ATTACHED.get((url, data_path))
        new = root is None
        if new:
            root = _ATTACHED[(url, data_path)] = _attach_lake(url, data_path)
    con = root.cursor()
    con.execute("USE lake")
    return con, new


class LakeStore(Store):
    """The same tables in DuckLake: many processes and machines write one store. DuckLake enforces no keys and
    fails the later of two concurrent transactions that delete rows of one table, so: keyed inserts skip present
    keys, replacing writes (upserts, rewrites) run in `atomically` and retry, and a step is computed under a
    `Claim`. Inserts alone never conflict, so generation chunks from many workers commit side by side."""

    backend = "ducklake"

    def __init__(self, url: str, data_path: str, retry_s: float | None = None):
        """`retry_s` None: StoreConfig's `lock_timeout_s` default."""
        if retry_s is None:
            retry_s = StoreConfig.model_fields["lock_timeout_s"].default
        self.url, self.data_path, self.retry_s = url, data_path, retry_s
        self.path = Path(data_path)
        if "://" not in data_path:  # a local or shared directory (object storage needs none)
            self.path.mkdir(parents=True, exist_ok=True)
        self.con, attached = _lake_connection(url, data_path)
        Store.opened += 1
        self._in_transaction = False
        if attached:  # once a process: a new lake (or one of an older version) gets the schema; workers may race
            self._ensure_schema(lake=True)  # here: the losers' commits conflict and retry

    @property
    def location(self) -> str:
        return f"{mask_url(self.url)} (data {self.data_path})"

    def atomically(self, fn: Callable[[Store], T]) -> T:
        if self._in_transaction:  # the outer `atomically` retries the whole transaction
            return fn(self)
        deadline, delay = time.monotonic() + self.retry_s, 0.02
        while True:
            try:
                with self.transaction():
                    return fn(self)
            except duckdb.Error as err:
                if not _CONFLICT.search(str(err)) or time.monotonic() + delay > deadline:
                    raise
                log.debug("store write conflicted with another writer; retrying: %s", str(err).splitlines()[-1])
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)

    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        if self._in_transaction:  # the caller's `atomically` retries the whole transaction
            super().insert_df(table, df)
        else:  # a SQLite catalog answers "database is locked" while another process commits: try again
            self.atomically(lambda store: Store.insert_df(store, table, df))

    def _insert_sql(self, table: str, cols: list[str], source: str = "_incoming") -> str:
        names = ", ".join(cols)
        keys = KEYS.get(table, ())
        absent = (f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE "
                  + " AND ".join(f"t.{k} IS NOT DISTINCT FROM i.{k}" for k in keys) + ")") if keys else ""
        return f"INSERT INTO {table} ({names}) SELECT {names} FROM {source} i{absent}"

    def insert_select(self, table: str, cols: list[str], select: str, params: Iterable[Any] = ()) -> None:
        if self._in_transaction:
            super().insert_select(table, cols, select, params)
        else:
            self.atomically(lambda store: Store.insert_select(store, table, cols, select, params))

    def upsert(self, table: str, fields: dict[str, Any]) -> None:
        keys = KEYS[table]

        def replace(store: Store) -> None:
            store.execute(f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = ?" for k in keys),
                          [fields[k] for k in keys])
            store.execute(f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({', '.join('?' for _ in fields)})",
                          fields.values())

        if self._in_transaction:  # the caller's `atomically` retries the whole transaction
            replace(self)
        else:
            self.atomically(replace)


class Claim:
    """A lease on one step key in a lake, so that one worker computes the step while others wait for it.

    Taking the key replaces its rows (a free token, or a lease that expired) by ours in one transaction. Of two
    workers taking one key, both delete the same row, so DuckLake fails the later commit; that one retries, sees
    the lease and waits. The holder renews it every lease_s / 3; a worker that dies stops renewing, its lease
    expires, and the next worker takes the step over and resumes from what was committed."""

    def __init__(self, connect: Callable[[], Store], key: str, lease_s: float):
        self.connect, self.key, self.lease_s = connect, key, lease_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.took_over: str | None = None  # the expired holder whose step this one resumed
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> Claim:
        waiting_for = None
        while True:
            with self.connect() as store:
                holder = store.atomically(self._take)
            if holder is None:
                break
            if holder and holder != waiting_for:
                log.info("step %s is being computed by %s; waiting for it", self.key, holder)
                waiting_for = holder
            if holder:  # "" = a token was just laid down: take it at once
                time.sleep(min(self.lease_s / 3, 2.0) * random.uniform(0.5, 1.0))
        if self.took_over:
            log.warning("step %s: the lease of %s expired; taking the step over", self.key, self.took_over)
        self._renewer = threading.Thread(target=self._renew_until_released, name=f"claim-{self.key[:12]}",
                                         daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join()
        with self.connect() as store:
            store.atomically(self._release)

    def _take(self, store: Store) -> str | None:
        """None: the lease is ours; "": a free token was laid down, try again; otherwise who holds the lease."""
        rows = store.execute("SELECT holder, expires_at FROM claims WHERE claim_key = ?", [self.key])
        now = time.time()
        live = [holder for holder, expires in rows if holder and holder != self.holder and expires > now]
        if live:
            return live[0]
        if not rows:  # a token first: taking it is then a delete, which is what makes two takers conflict
            store.execute("INSERT INTO claims VALUES (?, NULL, 0)", [self.key])
            return ""
        self.took_over = next((h for h, _ in rows if h and h != self.holder), None)
        store.execute("DELETE FROM claims WHERE claim_key = ?", [self.key])
        store.execute("INSERT INTO claims VALUES (?, ?, ?)", [self.key, self.holder, now + self.lease_s])
        return None

    def _held(self, store: Store) -> bool:
        return bool(store.execute("SELECT count(*) FROM claims WHERE claim_key = ? AND holder = ?",
                                  [self.key, self.holder])[0][0])

    def _renew(self, store: Store) -> bool:
        if not self._held(store):
            return False
        store.execute("DELETE FROM claims WHERE claim_key = ? AND holder = ?", [self.key, self.holder])
        store.execute("INSERT INTO claims VALUES (?, ?, ?)", [self.key, self.holder, time.time() + self.lease_s])
        return True

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.connect() as store:
                    if not store.atomically(self._renew):
                        log.warning("step %s: lost the lease (another worker took it over)", self.key)
                        return
            except Exception as err:  # noqa: BLE001 - a missed renewal is retried; the lease outlives two
                log.warning("step %s: could not renew the lease: %s", self.key, err)

    def _release(self, store: Store) -> None:
        if self._held(store):
            store.execute("DELETE FROM claims WHERE claim_key = ? AND holder = ?", [self.key, self.holder])
            store.execute("INSERT INTO claims VALUES (?, NULL, 0)", [self.key])
