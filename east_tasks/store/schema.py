"""The store's one schema, its version, and the migration of stores written by earlier versions.

Every step's result is keyed by a fingerprint of what it reads (`east_tasks.steps.keys`), so a key that is present
means "already computed"; `step_status` says which keys are done. Prompts are stored once (`prompts`, keyed by
their md5) and training rows point at the generations they were drawn from, so a round's pool is its samples'
text once. The version lives in `store_info`; a store of an older version is migrated when it is opened, in one
transaction, and one of a newer version is refused.
"""

from __future__ import annotations

import json
import re

from east_tasks.errors import EnvironmentFault, UserError
from east_tasks.io import fingerprint

SCHEMA_VERSION = 5
# A sample's text as the monitor compares responses (Python's str.strip on ASCII whitespace), of generations `g`.
TRIMMED_TEXT = "trim(g.text, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))"

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_info (name VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS problems (
    dataset_key VARCHAR, split VARCHAR, idx INTEGER, problem_id VARCHAR,
    question VARCHAR, answer VARCHAR, tier INTEGER,
    PRIMARY KEY (dataset_key, split, problem_id));
-- Rows of real data left out under data.on_invalid = "skip": where (file and line or row) and why.
CREATE TABLE IF NOT EXISTS data_findings (
    dataset_key VARCHAR, location VARCHAR, kind VARCHAR, detail VARCHAR);
-- Every prompt once, keyed by md5(prompt): a question's n samples share it.
CREATE TABLE IF NOT EXISTS prompts (
    prompt_key VARCHAR PRIMARY KEY, prompt VARCHAR);
CREATE TABLE IF NOT EXISTS generations (
    gen_key VARCHAR, problem_id VARCHAR, sample_idx INTEGER, prompt_key VARCHAR, text VARCHAR,
    pred_answer VARCHAR, correct BOOLEAN, num_tokens INTEGER,
    steps_valid BOOLEAN,  -- embedded task: every `x op y = z` step right and chained to the answer; else NULL
    PRIMARY KEY (gen_key, problem_id, sample_idx));
CREATE TABLE IF NOT EXISTS clusters (
    gen_key VARCHAR, problem_id VARCHAR, answer VARCHAR, size INTEGER, correct BOOLEAN,
    PRIMARY KEY (gen_key, problem_id, answer));
CREATE TABLE IF NOT EXISTS question_stats (
    weight_key VARCHAR, gen_key VARCHAR, problem_id VARCHAR, entropy DOUBLE, frac_correct DOUBLE,
    rejected_share DOUBLE, n_clusters INTEGER, n_correct INTEGER, n_incorrect INTEGER, n_wellformed_incorrect INTEGER,
    drop_reason VARCHAR,  -- NULL = kept; depends on the weighting options, hence keyed by weight_key
    majority_share DOUBLE, n_samples INTEGER,
    PRIMARY KEY (weight_key, problem_id));
-- A round's training rows; their prompt and text are the generations' (gen_key, problem_id, sample_idx).
CREATE TABLE IF NOT EXISTS training_examples (
    weight_key VARCHAR, example_idx INTEGER, gen_key VARCHAR, problem_id VARCHAR, sample_idx INTEGER,
    label BOOLEAN,  -- KTO: desirable (correct) or not; SFT / DPO rows are TRUE
    rejected_idx INTEGER,  -- DPO: the sample of the incorrect response paired with this one
    uncertainty DOUBLE, weight DOUBLE,
    PRIMARY KEY (weight_key, example_idx));
-- Label-free rounds (weighting.labels = "majority"): each pool question's pseudo-label (NULL: none reached
-- weighting.min_agreement), its agreement, and whether it is the gold answer (NULL where the data has no gold).
CREATE TABLE IF NOT EXISTS pseudo_labels (
    weight_key VARCHAR, problem_id VARCHAR, answer VARCHAR, agreement DOUBLE, label_correct BOOLEAN,
    PRIMARY KEY (weight_key, problem_id));
-- B-STaR's exploration / exploitation monitor of a round's pool and selection (east_tasks.core.monitor), overall
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
-- `path` is relative to the data dir (checkpoints/<ckpt_key>), so a data dir can be moved, copied or mounted elsewhere.
CREATE TABLE IF NOT EXISTS checkpoints (
    ckpt_key VARCHAR PRIMARY KEY, path VARCHAR, model_hash VARCHAR, parent_hash VARCHAR,
    weight_key VARCHAR, train_loss DOUBLE, created_at DOUBLE);
-- k: samples per question, eval.n (0 = greedy only); the column keeps its first name, as a rename would need a
-- migration. maj_acc and pass_acc are maj@k and pass@k at k = n.
-- pass1 (± pass1_se), pass_at_k and maj_at_k ({"k": value} for every k in 1..n) are NULL for greedy-only rows,
-- and in migrated rows until a run reaches them again (then computed from the stored samples).
CREATE TABLE IF NOT EXISTS evaluations (
    eval_key VARCHAR PRIMARY KEY, model_hash VARCHAR, dataset_key VARCHAR, n_questions INTEGER, k INTEGER,
    greedy_acc DOUBLE, maj_acc DOUBLE, pass_acc DOUBLE, by_tier JSON, created_at DOUBLE,
    pass1 DOUBLE, pass1_se DOUBLE, pass_at_k JSON, maj_at_k JSON);
-- One configuration per experiment name, claimed atomically before a run's first step (`claim_experiment`).
CREATE TABLE IF NOT EXISTS experiments (
    experiment VARCHAR PRIMARY KEY, config JSON, created_at DOUBLE);
-- `model_path`: round 0's base model as given; later rounds' checkpoints relative to the data dir.
CREATE TABLE IF NOT EXISTS experiment_rounds (
    experiment VARCHAR, round INTEGER, model_hash VARCHAR, model_path VARCHAR, eval_key VARCHAR,
    gen_key VARCHAR, weight_key VARCHAR, n_kept INTEGER, config JSON, updated_at DOUBLE,
    val_eval_key VARCHAR,  -- greedy accuracy on the validation split, where every choice is made
    step_keys JSON,  -- every step the round ran or reused
    PRIMARY KEY (experiment, round));
-- Rounds the guard rejected (guard.max_val_drop): trained and evaluated, but not recorded in experiment_rounds, so
-- the experiment stays at its last accepted round and every later run builds on that. The row says what the
-- experiment_rounds row would have said, and why not: its validation greedy accuracy (val_acc) against its
-- parent's, under the limit in points, and the line the run stopped with.
CREATE TABLE IF NOT EXISTS rejected_rounds (
    experiment VARCHAR, round INTEGER, model_hash VARCHAR, model_path VARCHAR, eval_key VARCHAR,
    gen_key VARCHAR, weight_key VARCHAR, n_kept INTEGER, config JSON, updated_at DOUBLE,
    val_eval_key VARCHAR, step_keys JSON,
    parent_val_acc DOUBLE, val_acc DOUBLE, max_val_drop DOUBLE, reason VARCHAR,
    PRIMARY KEY (experiment, round));
-- One row per (sweep, experiment): which grid point an experiment is (results: experiment_rounds).
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep VARCHAR, experiment VARCHAR, seed INTEGER, loss VARCHAR, strategy VARCHAR, mapping VARCHAR,
    a DOUBLE, keep_pass_rate VARCHAR,  -- '[lo, hi]', or NULL for every pass rate
    PRIMARY KEY (sweep, experiment));
-- The one rule for "done": a step's key is here with status 'done', written with its rows in one transaction.
CREATE TABLE IF NOT EXISTS step_status (
    step_key VARCHAR PRIMARY KEY, step VARCHAR, experiment VARCHAR, status VARCHAR, wall_s DOUBLE,
    detail JSON, updated_at DOUBLE,
    -- what computing the step cost (east_tasks.cost); NULL in stores from before it was recorded
    cpu_s DOUBLE,
    -- the wall time of a step that computes on the GPU (generation, scoring, training) where one is visible; for
    -- another step, that of the GPU steps it computed inside it (east_tasks.cost)
    gpu_s DOUBLE,
    -- what computing the step cost (east_tasks.cost); NULL in stores from before it was recorded
    tokens_generated BIGINT, tokens_trained BIGINT);
-- Leases on the steps being computed (DuckLake backend, `Claim`): one worker computes a key while others wait.
CREATE TABLE IF NOT EXISTS claims (
    claim_key VARCHAR, holder VARCHAR, expires_at DOUBLE, PRIMARY KEY (claim_key));
"""
TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))


# table -> the text between its parentheses, comments removed (a comment may hold a ";" or a ")")
_BODIES = dict(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\);", re.sub(r"--[^\n]*", "", SCHEMA), re.S))


def _primary_key(body: str) -> tuple[str, ...]:
    if m := re.search(r"PRIMARY KEY \(([^)]*)\)", body):
        return tuple(c.strip() for c in m.group(1).split(","))
    m = re.search(r"(\w+) \w+ PRIMARY KEY", body)
    return (m.group(1),) if m else ()


KEYS = {t: key for t, body in _BODIES.items() if (key := _primary_key(body))}  # table -> its key columns
COLUMNS = {t: {m.group(1) for m in re.finditer(r"(?:^|,)\s*(\w+) [A-Z]", body) if m.group(1) != "PRIMARY"}
           for t, body in _BODIES.items()}  # table -> its columns
# DuckLake has no constraints: the same tables without them (the keys then hold by construction, `LakeStore`).
LAKE_SCHEMA = re.sub(r" PRIMARY KEY", "", re.sub(r",(\s*--[^\n]*)?\s*PRIMARY KEY \([^)]*\)", r"\1\n", SCHEMA))



class SchemaError(UserError):
    """A store this version cannot read (written by a newer one)."""


class StoreFault(EnvironmentFault):
    """A store that is corrupt, truncated or altered: it cannot be read as it is, and retrying cannot help."""

    def __init__(self, location: str, problem: str):
        super().__init__(f"store {location} {problem}; restore it from a backup (`east store backup` makes one), or "
                         "move it aside and rerun to compute its results again (`east store check` examines it)")


def record_key(experiment: str, round_: int, model_hash: str, eval_key: str | None, val_eval_key: str | None,
               gen_key: str | None, weight_key: str | None, step_keys: list[str]) -> str:
    """The key of a round's record: what the round's row says (computable from the row, so a migration can mark
    the records of an old store done)."""
    return fingerprint({"record": experiment, "round": round_, "model": model_hash, "eval": eval_key,
                        "validation": val_eval_key, "gen": gen_key, "weights": weight_key, "steps": step_keys})


def _columns(execute, table: str) -> set[str]:
    return {r[0] for r in execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? AND "
                                  "table_catalog = current_database() AND table_schema = current_schema()", [table])}


# v0 -> v1: prompts stored once, training rows pointing at their generations, every done step in `step_status`
# (docs/changelog.md says what each version held). The two tables are renamed aside and rebuilt by SCHEMA: DuckDB
# cannot drop a column of a table with a key.
_V0_ASIDE = """
ALTER TABLE experiment_rounds ADD COLUMN IF NOT EXISTS val_eval_key VARCHAR;
ALTER TABLE experiment_rounds ADD COLUMN IF NOT EXISTS step_keys JSON;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS cpu_s DOUBLE;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS gpu_s DOUBLE;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS tokens_generated BIGINT;
ALTER TABLE step_status ADD COLUMN IF NOT EXISTS tokens_trained BIGINT;
ALTER TABLE generations RENAME TO generations_v0;
ALTER TABLE training_examples RENAME TO training_examples_v0
"""
_V0_TO_V1 = """
INSERT INTO prompts SELECT DISTINCT md5(prompt), prompt FROM generations_v0;
INSERT INTO generations (gen_key, problem_id, sample_idx, prompt_key, text, pred_answer, correct, num_tokens)
    SELECT gen_key, problem_id, sample_idx, md5(prompt), text, pred_answer, correct, num_tokens
    FROM generations_v0 ORDER BY gen_key, problem_id, sample_idx;
DROP TABLE generations_v0;
INSERT INTO training_examples SELECT t.weight_key, t.example_idx, s.gen_key, t.problem_id, t.sample_idx, t.label,
    t.rejected_idx, t.uncertainty, t.weight
    FROM training_examples_v0 t LEFT JOIN question_stats s USING (weight_key, problem_id)
    ORDER BY t.weight_key, t.example_idx;
DROP TABLE training_examples_v0;
INSERT INTO step_status (step_key, step, status, wall_s, detail, updated_at)
    SELECT DISTINCT dataset_key, 'data', 'done', 0, '{}', epoch(now()) FROM problems
    WHERE dataset_key NOT IN (SELECT step_key FROM step_status);
INSERT INTO step_status (step_key, step, status, wall_s, detail, updated_at)
    SELECT eval_key, 'evaluate', 'done', 0, '{}', created_at FROM evaluations
    WHERE eval_key NOT IN (SELECT step_key FROM step_status)
"""


# v1 -> v2: one configuration per experiment (`experiments`), checkpoint paths relative to the data dir.
_V1_TO_V2 = """
INSERT INTO experiments SELECT experiment, arg_min(config, round), min(updated_at) FROM experiment_rounds
    WHERE experiment NOT IN (SELECT experiment FROM experiments) GROUP BY experiment;
UPDATE checkpoints SET path = regexp_replace(path, '^.*/(checkpoints/[^/]+)/?$', '\\1') WHERE path LIKE '/%';
UPDATE experiment_rounds SET model_path = regexp_replace(model_path, '^.*/(checkpoints/[^/]+)/?$', '\\1')
    WHERE round > 0 AND model_path LIKE '/%'
"""


# v2 -> v3: pass@1 and pass@k, maj@k for every k. A row keeps what it had as pass@n and maj@n; the evaluation step
# computes the rest from the stored samples when a run reaches it (`invalid`).
_V2_TO_V3 = """
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS pass1 DOUBLE;
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS pass1_se DOUBLE;
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS pass_at_k JSON;
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS maj_at_k JSON;
UPDATE evaluations SET pass_at_k = json_object(k::VARCHAR, pass_acc), maj_at_k = json_object(k::VARCHAR, maj_acc)
    WHERE k > 0 AND pass_at_k IS NULL
"""


# v3: no per-sample check of the steps, the two newest question statistics, or a sweep's pass-rate band. Old rows
# stay NULL: their lucky share is unknown, and their statistics are computed again when a run reaches them.
_V3_TO_V4 = """
ALTER TABLE generations ADD COLUMN IF NOT EXISTS steps_valid BOOLEAN;
ALTER TABLE question_stats ADD COLUMN IF NOT EXISTS majority_share DOUBLE;
ALTER TABLE question_stats ADD COLUMN IF NOT EXISTS n_samples INTEGER;
ALTER TABLE sweep_runs ADD COLUMN IF NOT EXISTS keep_pass_rate VARCHAR
"""


# v4: no guard, so no rejected rounds; `rejected_rounds` is created by SCHEMA (CREATE TABLE IF NOT EXISTS), and the
# rows of every other table are what v5 writes.


def _run(execute, script: str) -> None:
    for statement in filter(str.strip, script.split(";")):
        execute(statement)


def stored_version(execute) -> int | None:
    """The store's schema version: None for a new (empty) store, 0 for one from before versions were recorded."""
    if "store_info" in _tables(execute):
        rows = execute("SELECT value FROM store_info WHERE name = 'schema_version'")
        if rows:
            return int(rows[0][0])
    return 0 if "generations" in _tables(execute) else None


def _tables(execute) -> set[str]:
    return {r[0] for r in execute("SELECT table_name FROM information_schema.tables "
                                  "WHERE table_catalog = current_database() AND table_schema = current_schema()")}


def ensure_schema(execute, location: str, lake: bool = False) -> bool:
    """Brings the store at `location` to SCHEMA_VERSION; `execute(sql, params)` runs inside the caller's
    transaction. Returns whether anything changed."""
    version = stored_version(execute)
    if version == SCHEMA_VERSION:
        check_columns(execute, location)
        return False
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(f"store {location} has schema version {version}, written by a newer east; this one reads "
                          f"version {SCHEMA_VERSION} and older: upgrade east to open it")
    schema = LAKE_SCHEMA if lake else SCHEMA
    if version == 0 and "prompt" in _columns(execute, "generations"):
        _run(execute, _V0_ASIDE)
        execute(schema)
        _run(execute, _V0_TO_V1)
        _mark_records_done(execute)
    else:
        execute(schema)
    if version is not None and version < 2:
        _run(execute, _V1_TO_V2)
    if version is not None and version < 3:
        _run(execute, _V2_TO_V3)
    if version is not None and version < 4:
        _run(execute, _V3_TO_V4)
    execute("DELETE FROM store_info WHERE name = 'schema_version'")
    execute("INSERT INTO store_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    return True


def check_columns(execute, location: str) -> None:
    """Every table and column of SCHEMA is there (one catalog query): a store someone altered is refused when it is
    opened, not by the first query that needs what is missing, minutes into a run."""
    rows = execute("SELECT table_name, column_name FROM information_schema.columns "
                   "WHERE table_catalog = current_database() AND table_schema = current_schema()")
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    missing = []
    for table, columns in COLUMNS.items():
        missing += [f"{table}.{c}" for c in sorted(columns - present[table])] if table in present else [table]
    if missing:
        raise StoreFault(location, f"has schema version {SCHEMA_VERSION} but lacks {', '.join(missing[:5])}"
                                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))


def _mark_records_done(execute) -> None:
    rows = execute("SELECT experiment, round, model_hash, eval_key, val_eval_key, gen_key, weight_key, step_keys, "
                   "updated_at FROM experiment_rounds")
    for exp, round_, model_hash, eval_key, val_key, gen_key, weight_key, steps, at in rows:
        key = record_key(exp, round_, model_hash, eval_key, val_key, gen_key, weight_key, json.loads(steps or "[]"))
        execute("INSERT INTO step_status (step_key, step, experiment, status, wall_s, detail, updated_at) "
                "SELECT ?, 'record', ?, 'done', 0, '{}', ? WHERE ? NOT IN (SELECT step_key FROM step_status)",
                [key, exp, at, key])
