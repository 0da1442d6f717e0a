"""The store: schema, and the few reads and writes the pipeline needs, on one of two backends.

Every step's result is keyed by a fingerprint of what it reads (see `east_tasks.io.fingerprint`), so a
key that is present means "already computed". Writes happen in transactions; a generation step commits
one chunk of questions at a time, so a crash loses at most that chunk.

Backends: one DuckDB file (`Store`, the default; one writer process at a time) or DuckLake (`LakeStore`, many
writer processes and machines; catalog in PostgreSQL or SQLite, data files under `store.data_path`). DuckLake has
no primary keys, so there the keys hold by construction: one worker computes a step (a `Claim` on its key), a
keyed insert skips the rows already present, and writes that delete retry on DuckLake's conflict.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import pandas as pd

from east_tasks.errors import UserError

if TYPE_CHECKING:
    from east_tasks.config import ExperimentConfig, StoreConfig
    from east_tasks.cost import Cost

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS problems (
    dataset_key VARCHAR, split VARCHAR, idx INTEGER, problem_id VARCHAR,
    question VARCHAR, answer VARCHAR, tier INTEGER,
    PRIMARY KEY (dataset_key, split, problem_id));
-- Rows of real data left out under data.on_invalid = "skip": where (file and line or row) and why.
CREATE TABLE IF NOT EXISTS data_findings (
    dataset_key VARCHAR, location VARCHAR, kind VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS generations (
    gen_key VARCHAR, problem_id VARCHAR, sample_idx INTEGER, prompt VARCHAR, text VARCHAR,
    pred_answer VARCHAR, correct BOOLEAN, num_tokens INTEGER,
    PRIMARY KEY (gen_key, problem_id, sample_idx));
CREATE TABLE IF NOT EXISTS clusters (
    gen_key VARCHAR, problem_id VARCHAR, answer VARCHAR, size INTEGER, correct BOOLEAN,
    PRIMARY KEY (gen_key, problem_id, answer));
CREATE TABLE IF NOT EXISTS question_stats (
    weight_key VARCHAR, gen_key VARCHAR, problem_id VARCHAR, entropy DOUBLE, frac_correct DOUBLE,
    rejected_share DOUBLE, n_clusters INTEGER, n_correct INTEGER, n_incorrect INTEGER, n_wellformed_incorrect INTEGER,
    drop_reason VARCHAR,  -- NULL = kept; depends on the weighting options, hence keyed by weight_key
    PRIMARY KEY (weight_key, problem_id));
CREATE TABLE IF NOT EXISTS training_examples (
    weight_key VARCHAR, example_idx INTEGER, problem_id VARCHAR, sample_idx INTEGER, prompt VARCHAR,
    response VARCHAR,
    label BOOLEAN,  -- KTO: desirable (correct) or not; SFT / DPO rows are TRUE
    rejected_idx INTEGER, rejected VARCHAR,  -- DPO: the incorrect response paired with `response`
    uncertainty DOUBLE, weight DOUBLE,
    PRIMARY KEY (weight_key, example_idx));
-- Label-free rounds (weighting.labels = "majority"): each pool question's pseudo-label (NULL: none reached
-- weighting.min_agreement), its agreement, and whether it is the gold answer (NULL where the data has no gold).
CREATE TABLE IF NOT EXISTS pseudo_labels (
    weight_key VARCHAR, problem_id VARCHAR, answer VARCHAR, agreement DOUBLE, label_correct BOOLEAN,
    PRIMARY KEY (weight_key, problem_id));
-- B-STaR's exploration / exploitation monitor of a round's pool and selection (east_tasks.monitor), overall
-- (tier 'all') and by tier.
CREATE TABLE IF NOT EXISTS round_monitor (
    weight_key VARCHAR, tier VARCHAR, questions INTEGER, pass_at_n DOUBLE, distinct_correct DOUBLE,
    kept_questions INTEGER, accepted INTEGER, precision DOUBLE, recall DOUBLE, balance DOUBLE, labelled INTEGER,
    label_accuracy DOUBLE,
    PRIMARY KEY (weight_key, tier));
-- Auto-balance (balance.auto): every sampling candidate probed before a round, its monitor, and the one chosen.
CREATE TABLE IF NOT EXISTS balance_probes (
    experiment VARCHAR, round INTEGER, temperature DOUBLE, n INTEGER, gen_key VARCHAR, questions INTEGER,
    pass_at_n DOUBLE, distinct_correct DOUBLE, precision DOUBLE, recall DOUBLE, balance DOUBLE, chosen BOOLEAN,
    PRIMARY KEY (experiment, round, temperature, n));
-- Summed log-prob of a sampled response under a model (the sampling model: DPO/KTO reference, `local`).
CREATE TABLE IF NOT EXISTS response_logprobs (
    model_hash VARCHAR, gen_key VARCHAR, problem_id VARCHAR, sample_idx INTEGER, logp_sum DOUBLE,
    n_tokens INTEGER,
    PRIMARY KEY (model_hash, gen_key, problem_id, sample_idx));
CREATE TABLE IF NOT EXISTS checkpoints (
    ckpt_key VARCHAR PRIMARY KEY, path VARCHAR, model_hash VARCHAR, parent_hash VARCHAR,
    weight_key VARCHAR, train_loss DOUBLE, created_at DOUBLE);
CREATE TABLE IF NOT EXISTS evaluations (
    eval_key VARCHAR PRIMARY KEY, model_hash VARCHAR, dataset_key VARCHAR, n_questions INTEGER, k INTEGER,
    greedy_acc DOUBLE, maj_acc DOUBLE, pass_acc DOUBLE, by_tier JSON, created_at DOUBLE);
CREATE TABLE IF NOT EXISTS experiment_rounds (
    experiment VARCHAR, round INTEGER, model_hash VARCHAR, model_path VARCHAR, eval_key VARCHAR,
    gen_key VARCHAR, weight_key VARCHAR, n_kept INTEGER, config JSON, updated_at DOUBLE,
    val_eval_key VARCHAR,  -- greedy accuracy on the validation split, where every choice is made
    PRIMARY KEY (experiment, round));
ALTER TABLE experiment_rounds ADD COLUMN IF NOT EXISTS val_eval_key VARCHAR;  -- stores from before it
-- One row per (sweep, experiment): which grid point an experiment is (results: experiment_rounds).
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep VARCHAR, experiment VARCHAR, seed INTEGER, loss VARCHAR, strategy VARCHAR, mapping VARCHAR,
    a DOUBLE, PRIMARY KEY (sweep, experiment));
CREATE TABLE IF NOT EXISTS step_status (
    step_key VARCHAR PRIMARY KEY, step VARCHAR, experiment VARCHAR, status VARCHAR, wall_s DOUBLE,
    detail JSON, updated_at DOUBLE,
    -- what computing the step cost (east_tasks.cost); NULL in stores from before it was recorded
    cpu_s DOUBLE, gpu_s DOUBLE, tokens_generated BIGINT, tokens_trained BIGINT);
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS cpu_s DOUBLE;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS gpu_s DOUBLE;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS tokens_generated BIGINT;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS tokens_trained BIGINT;
ALTER TABLE experiment_rounds ADD COLUMN IF NOT EXISTS step_keys JSON;  -- every step the round ran or reused
-- Leases on the steps being computed (DuckLake backend, `Claim`): one worker computes a key while others wait.
CREATE TABLE IF NOT EXISTS claims (
    claim_key VARCHAR, holder VARCHAR, expires_at DOUBLE, PRIMARY KEY (claim_key));
"""
TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))


def _primary_keys(schema: str) -> dict[str, tuple[str, ...]]:
    keys = {}
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\);", schema, re.S):
        if m := re.search(r"PRIMARY KEY \(([^)]*)\)", body):
            keys[table] = tuple(c.strip() for c in m.group(1).split(","))
        elif m := re.search(r"(\w+) \w+ PRIMARY KEY", body):
            keys[table] = (m.group(1),)
    return keys


KEYS = _primary_keys(SCHEMA)  # table -> its primary key columns
# DuckLake has no constraints: the same tables without them (the keys then hold as the module docstring says).
LAKE_SCHEMA = re.sub(r" PRIMARY KEY", "", re.sub(r",(\s*--[^\n]*)?\s*PRIMARY KEY \([^)]*\)", r"\1\n", SCHEMA))


DEFAULT_LOCK_TIMEOUT_S = 600.0  # the default of store.lock_timeout_s (east_tasks.config.StoreConfig)


def _connect_waiting(path: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """DuckDB lets one process write a file; another run's process that holds it (for one step's write, a
    second or so) is waited for, with backoff, up to `timeout_s`, logging who holds it."""
    deadline, delay, warned = time.monotonic() + timeout_s, 0.05, False
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
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


class Store:
    """A thin wrapper over one DuckDB file; open it per step (DuckDB allows one writer process)."""

    backend = "duckdb"

    def __init__(self, path: Path | str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect_waiting(self.path, lock_timeout_s)
        self._in_transaction = False
        self.execute(SCHEMA)

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
        with self.transaction():
            return fn(self)

    # --- generic helpers -------------------------------------------------------------------------------
    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        """Appends a DataFrame whose columns are a subset of the table's, by name. Rows whose primary key is
        already there are skipped: keys are content hashes, so two runs computing one step at the same time
        write the same rows, and the second adds nothing (`data_findings`, unkeyed, is rewritten whole)."""
        if df.empty:
            return
        self.con.register("_incoming", df)
        try:
            self.execute(self._insert_sql(table, list(df.columns)))
        finally:
            self.con.unregister("_incoming")

    def _insert_sql(self, table: str, cols: list[str]) -> str:
        names = ", ".join(cols)
        return f"INSERT {'OR IGNORE ' if table in KEYS else ''}INTO {table} ({names}) SELECT {names} FROM _incoming"

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

    def count(self, table: str, key_col: str, key: str) -> int:
        return self.execute(f"SELECT count(*) FROM {table} WHERE {key_col} = ?", [key])[0][0]

    # --- step status ------------------------------------------------------------------------------------
    def step_done(self, step_key: str) -> bool:
        rows = self.execute("SELECT status FROM step_status WHERE step_key = ?", [step_key])
        return bool(rows) and rows[0][0] == "done"

    def mark_step(self, step_key: str, step: str, experiment: str, status: str, wall_s: float = 0.0,
                  detail: dict | None = None, cost: Cost | None = None) -> None:
        """`experiment` is the one that computed the step; any experiment with the same key reuses it."""
        c = cost.as_dict() if cost else {}
        self.upsert("step_status", {"step_key": step_key, "step": step, "experiment": experiment, "status": status,
                                    "wall_s": c.get("wall_s", wall_s), "detail": json.dumps(detail or {}),
                                    "updated_at": time.time(), **{k: v for k, v in c.items() if k != "wall_s"}})

    # --- problems ---------------------------------------------------------------------------------------
    def problems(self, dataset_key: str, split: str) -> pd.DataFrame:
        return self.query(
            "SELECT * FROM problems WHERE dataset_key = ? AND split = ? ORDER BY idx", [dataset_key, split]
        )

    # --- rounds -----------------------------------------------------------------------------------------
    def record_round(self, experiment: str, round_: int, **fields: Any) -> None:
        self.upsert("experiment_rounds", {"experiment": experiment, "round": round_, "updated_at": time.time(),
                                          **fields})

    def round_table(self, experiment: str) -> pd.DataFrame:
        return self.query(
            """SELECT r.round, r.n_kept, e.greedy_acc, e.maj_acc, e.pass_acc, e.k, e.n_questions, e.by_tier,
                      v.greedy_acc AS val_greedy_acc, r.model_hash, r.model_path, r.weight_key,
                      m.pass_at_n AS pool_pass_at_n, m.balance AS pool_balance, m.label_accuracy
               FROM experiment_rounds r LEFT JOIN evaluations e USING (eval_key)
               LEFT JOIN evaluations v ON v.eval_key = r.val_eval_key
               LEFT JOIN round_monitor m ON m.weight_key = r.weight_key AND m.tier = 'all'
               WHERE r.experiment = ? ORDER BY r.round""",
            [experiment],
        )

    def record_sweep_run(self, **fields: Any) -> None:
        self.upsert("sweep_runs", fields)

    def sweep_table(self, sweep: str) -> pd.DataFrame:
        """Every round of every experiment of a sweep, with its grid point, test and validation accuracy."""
        return self.query(
            """SELECT s.*, r.round, r.n_kept, r.gen_key, r.weight_key, e.greedy_acc, e.maj_acc, e.pass_acc, e.by_tier,
                      v.greedy_acc AS val_greedy_acc
               FROM sweep_runs s JOIN experiment_rounds r USING (experiment)
               LEFT JOIN evaluations e USING (eval_key)
               LEFT JOIN evaluations v ON v.eval_key = r.val_eval_key
               WHERE s.sweep = ? ORDER BY s.experiment, r.round""",
            [sweep],
        )

    def sweeps(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT DISTINCT sweep FROM sweep_runs ORDER BY sweep")]

    def experiments(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT DISTINCT experiment FROM experiment_rounds ORDER BY experiment")]

    # --- housekeeping -----------------------------------------------------------------------------------
    def export_parquet(self, out_dir: Path) -> dict[str, int]:
        """Every table of the schema as `<table>.parquet` (written beside, then renamed); rows per table."""
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = {}
        for table in TABLES:
            final = out_dir / f"{table}.parquet"
            tmp = out_dir / f".{table}.parquet.tmp"
            self.execute(f"COPY {table} TO '{tmp}' (FORMAT parquet)")
            tmp.replace(final)
            rows[table] = self.execute(f"SELECT count(*) FROM {table}")[0][0]
        return rows

    def referenced_checkpoints(self, keep_last: int | None = None) -> set[Path]:
        """Checkpoint directories the store points at; with `keep_last`, only those of each experiment's last
        `keep_last` rounds (and every one a `checkpoints` row has no experiment round for is kept)."""
        rounds = self.query("SELECT experiment, round, model_path FROM experiment_rounds WHERE round > 0")
        if keep_last is not None:
            last = rounds.groupby("experiment")["round"].transform("max")
            rounds = rounds[rounds["round"] > last - keep_last]
        in_rounds = set(self.query("SELECT model_path FROM experiment_rounds").model_path.dropna())
        orphans = set(self.query("SELECT path FROM checkpoints").path) - in_rounds  # trained, round not recorded
        return {Path(p).resolve() for p in set(rounds.model_path.dropna()) | orphans}


# --- DuckLake ----------------------------------------------------------------------------------------------
_CONFLICT = re.compile(r"conflict|database is locked|could not serialize", re.I)  # worth another try
# extension -> (the PyPI package shipping DuckDB's signed build, the file's canonical name: it carries the entry point)
_PACKAGED_EXTENSIONS = {"ducklake": ("duckdb_extension_ducklake", "ducklake"),
                        "postgres": ("duckdb_extension_postgres", "postgres_scanner"),
                        "sqlite": ("duckdb_extension_sqlite", "sqlite_scanner")}


def mask_url(text: str) -> str:
    """`text` with any password in a libpq conninfo or URL replaced, to show in logs, reports and artifacts."""
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


@functools.cache
def packaged_extension_dir() -> Path | None:
    """DuckDB's extensions from their PyPI packages (pinned with DuckDB; ENVIRONMENT.md), laid out as DuckDB's own
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
    """A connection of this process's attached lake, and whether the lake was attached just now. Attaching costs
    ~0.6 s (loading the extensions, the catalog's round trips), a cursor of the attached database ~0.03 s; each
    cursor has its own transactions and sees what other processes committed."""
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

    def __init__(self, url: str, data_path: str, retry_s: float = DEFAULT_LOCK_TIMEOUT_S):
        self.url, self.data_path, self.retry_s = url, data_path, retry_s
        self.path = Path(data_path)
        if "://" not in data_path:  # a local or shared directory (object storage needs none)
            self.path.mkdir(parents=True, exist_ok=True)
        self.con, attached = _lake_connection(url, data_path)
        self._in_transaction = False
        if attached:  # once a process: a new lake (or one from before a table was added) gets the schema
            present = {r[0] for r in self.execute("SELECT table_name FROM information_schema.tables "
                                                  "WHERE table_catalog = 'lake'")}
            if not set(TABLES) <= present:  # workers may race here: the losers' commits conflict and retry
                self.atomically(lambda store: store.execute(LAKE_SCHEMA))

    @property
    def location(self) -> str:
        return f"{mask_url(self.url)} (data {self.data_path})"

    def atomically(self, fn: Callable[[Store], T]) -> T:
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

    def _insert_sql(self, table: str, cols: list[str]) -> str:
        names = ", ".join(cols)
        keys = KEYS.get(table, ())
        absent = (f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE "
                  + " AND ".join(f"t.{k} IS NOT DISTINCT FROM i.{k}" for k in keys) + ")") if keys else ""
        return f"INSERT INTO {table} ({names}) SELECT {names} FROM _incoming i{absent}"

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


def require_shared_store(url: str | None, what: str) -> None:
    """Processes that write at once need a lake: the DuckDB file takes one writer process at a time."""
    if url is None:
        raise UserError(f"{what}: the store is the DuckDB file, which one process writes at a time. Point "
                        "EAST_STORE_URL (or store.url) at a DuckLake, ducklake:postgres:... or ducklake:sqlite:... "
                        "(README, 'Many workers, one store'), here and on every worker")


def connect(store: StoreConfig, data_dir: Path) -> Store:
    """The store `store` describes: the DuckDB file in `data_dir`, or the DuckLake at `store.url`."""
    if store.url is None:
        return Store(data_dir / "east.duckdb", store.lock_timeout_s)
    return LakeStore(store.url, store.data_path or str(data_dir / "lake"), store.lock_timeout_s)


def open_store(cfg: ExperimentConfig) -> Store:
    """The experiment's store, waiting for a lock (or retrying a conflict) as long as its config says."""
    return connect(cfg.store, cfg.data_dir)


def claim_step(cfg: ExperimentConfig, key: str) -> AbstractContextManager:
    """Held while computing step `key`: on a lake, other workers wait for it (see `Claim`); on the file, nothing."""
    if cfg.store.url is None:
        return nullcontext()
    return Claim(lambda: open_store(cfg), key, cfg.store.lease_s)
