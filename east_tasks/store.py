"""The one DuckDB store: schema, and the few reads and writes the pipeline needs.

Every step's result is keyed by a fingerprint of what it reads (see `east_tasks.io.fingerprint`), so a
key that is present means "already computed". Writes happen in transactions; a generation step commits
one chunk of questions at a time, so a crash loses at most that chunk.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from east_tasks.errors import UserError

if TYPE_CHECKING:
    from east_tasks.config import ExperimentConfig
    from east_tasks.cost import Cost

log = logging.getLogger(__name__)

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
"""
TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))


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

    def __init__(self, path: Path | str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect_waiting(self.path, lock_timeout_s)
        self.execute(SCHEMA)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    # --- generic helpers -------------------------------------------------------------------------------
    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        """Appends a DataFrame whose columns are a subset of the table's, by name. Rows whose primary key is
        already there are skipped: keys are content hashes, so two runs computing one step at the same time
        write the same rows, and the second adds nothing (`data_findings`, unkeyed, is rewritten whole)."""
        if df.empty:
            return
        self.con.register("_incoming", df)
        try:
            cols = ", ".join(df.columns)
            keyed = self.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND "
                                 "constraint_type = 'PRIMARY KEY'", [table])[0][0]
            self.execute(f"INSERT {'OR IGNORE ' if keyed else ''}INTO {table} ({cols}) SELECT {cols} FROM _incoming")
        finally:
            self.con.unregister("_incoming")

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Runs a statement and drains its result (DuckDB 2 refuses new work while a result is pending)."""
        return self.con.execute(sql, list(params)).fetchall()

    def upsert(self, table: str, fields: dict[str, Any]) -> None:
        """One row by column name; replaces the row with the same primary key."""
        cols, marks = ", ".join(fields), ", ".join("?" for _ in fields)
        self.execute(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", fields.values())

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


def open_store(cfg: ExperimentConfig) -> Store:
    """The experiment's store, waiting for a lock as long as its config says."""
    return Store(cfg.store_path, cfg.store.lock_timeout_s)
