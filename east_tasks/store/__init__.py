"""The store: one schema (`schema`), two backends (`file`: one DuckDB file, the default; `lake`: DuckLake, many
writers), and every named query (`queries`, `selection`). Writes happen in transactions; a step's rows and its
status row commit together (`east_tasks.steps.runner`), and a generation commits one chunk of questions at a time,
so a crash loses at most that chunk.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from east_tasks.errors import UserError
from east_tasks.paths import STORE_FILE
from east_tasks.store.file import FileClaim, Store, as_store_fault
from east_tasks.store.lake import Claim, LakeStore
from east_tasks.store.schema import KEYS, SCHEMA_VERSION, TABLES, SchemaError, StoreFault

if TYPE_CHECKING:
    from east_tasks.config import ExperimentConfig, StoreConfig

__all__ = ["KEYS", "SCHEMA_VERSION", "TABLES", "Claim", "FileClaim", "LakeStore", "SchemaError", "Store", "StoreFault",
           "claim_step", "connect", "connect_existing", "as_store_fault", "open_store", "require_shared_store"]


def require_shared_store(url: str | None, what: str) -> None:
    """Processes that write at once need a lake: the DuckDB file takes one writer process at a time."""
    if url is None:
        raise UserError(f"{what}: the store is the DuckDB file, which one process writes at a time. Point "
                        "EAST_STORE_URL (or store.url) at a DuckLake, ducklake:postgres:... or ducklake:sqlite:... "
                        "(docs: 'Many workers, one store'), here and on every worker")


def connect(store: StoreConfig, data_dir: Path) -> Store:
    """The store `store` describes: the DuckDB file in `data_dir`, or the DuckLake at `store.url`."""
    if store.url is None:
        return Store(data_dir / STORE_FILE, store.lock_timeout_s, store.memory_limit)
    return LakeStore(store.url, store.data_path or str(data_dir / "lake"), store.lock_timeout_s)


def connect_existing(store: StoreConfig, data_dir: Path) -> Store:
    """The store the runs wrote, to read: `connect`, but a DuckDB file not there yet is the user's error (connecting
    would create an empty store, and every question put to it would find nothing)."""
    if store.url is None and not (data_dir / STORE_FILE).exists():
        raise UserError(f"no store at {data_dir / STORE_FILE}: run an experiment there first (`east run`, east.run "
                        "or the self-train deployment)")
    return connect(store, data_dir)


def open_store(cfg: ExperimentConfig) -> Store:
    """The experiment's store, waiting for a lock (or retrying a conflict) as long as its config says."""
    return connect(cfg.store, cfg.data_dir)


def claim_step(cfg: ExperimentConfig, key: str) -> AbstractContextManager:
    """Held while computing step `key`, so other runs wait for it and then reuse it: on a lake, a lease in the lake
    (`Claim`, across machines); on the file, a lock file beside it (`FileClaim`, this machine's processes)."""
    if cfg.store.url is None:
        return FileClaim(cfg.data_dir / ".locks", key)
    return Claim(lambda: open_store(cfg), key, cfg.store.lease_s)
