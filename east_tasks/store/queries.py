"""Every named query of the pipeline, the report and the flows: the only SQL outside `east_tasks.store`'s backends.

A mixin over the backends' `execute` / `query` / `upsert` / `insert_df` (`east_tasks.store.file.Store`), so both
backends answer the same questions; the selection's set-based SQL is `east_tasks.store.selection`.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from east_tasks.store.schema import COLUMNS, TABLES, TRIMMED_TEXT

if TYPE_CHECKING:
    from east_tasks.cost import Cost


# An experiment's rounds (of `rounds`: experiment_rounds, or rejected_rounds with more `columns`) with their test and
# validation accuracy and their pool's monitor; the parameter: the experiment.
_ROUND_TABLE = """
SELECT r.round, r.n_kept, e.greedy_acc, e.maj_acc, e.pass_acc, e.k, e.n_questions, e.by_tier,
       e.pass1, e.pass1_se, e.pass_at_k, e.maj_at_k, r.config,
       v.greedy_acc AS val_greedy_acc, r.model_hash, r.model_path, r.weight_key,
       m.pass_at_n AS pool_pass_at_n, m.balance AS pool_balance, m.label_accuracy{columns}
FROM {rounds} r LEFT JOIN evaluations e USING (eval_key)
LEFT JOIN evaluations v ON v.eval_key = r.val_eval_key
LEFT JOIN round_monitor m ON m.weight_key = r.weight_key AND m.tier = 'all'
WHERE r.experiment = ? {where} ORDER BY r.round"""


# A selection's rows with their text (prompt and response from the generations they name) and a reference model's
# log-probs (NULL without one); parameters: the reference model hash twice, then the weight keys.
_TRAINING_ROWS = """
SELECT t.weight_key, t.example_idx, t.problem_id, t.sample_idx, p.prompt, g.text AS response, t.label,
       t.rejected_idx, r.text AS rejected, t.uncertainty, t.weight, lc.logp_sum AS ref_logp,
       lr.logp_sum AS ref_rejected_logp
FROM training_examples t
JOIN generations g ON g.gen_key = t.gen_key AND g.problem_id = t.problem_id AND g.sample_idx = t.sample_idx
JOIN prompts p ON p.prompt_key = g.prompt_key
LEFT JOIN generations r ON r.gen_key = t.gen_key AND r.problem_id = t.problem_id AND r.sample_idx = t.rejected_idx
LEFT JOIN response_logprobs lc ON lc.model_hash = ? AND lc.gen_key = t.gen_key AND lc.problem_id = t.problem_id
                              AND lc.sample_idx = t.sample_idx
LEFT JOIN response_logprobs lr ON lr.model_hash = ? AND lr.gen_key = t.gen_key AND lr.problem_id = t.problem_id
                              AND lr.sample_idx = t.rejected_idx
WHERE list_contains(?, t.weight_key)"""
# The same rows for export (`east export data`): with each question's answer entropy and the round of its weight
# key; parameters: the rounds and their weight keys, then _TRAINING_ROWS' (no reference model), then the keys again.
_EXPORT_ROWS = f"""
SELECT x.*, s.entropy, list_extract(?, list_position(?, x.weight_key)) AS round
FROM ({_TRAINING_ROWS}) x LEFT JOIN question_stats s USING (weight_key, problem_id)
ORDER BY list_position(?, x.weight_key), x.example_idx"""


class Queries:
    """Named reads and writes; `self` is a backend (`execute`, `query`, `upsert`, `insert_df`, `register`)."""

    def count(self, table: str, key_col: str, key: str) -> int:
        return self.execute(f"SELECT count(*) FROM {table} WHERE {key_col} = ?", [key])[0][0]

    # --- step status ------------------------------------------------------------------------------------
    def step_done(self, step_key: str) -> bool:
        rows = self.execute("SELECT status FROM step_status WHERE step_key = ?", [step_key])
        return bool(rows) and rows[0][0] == "done"

    def step_detail(self, step_key: str) -> dict:
        rows = self.execute("SELECT detail FROM step_status WHERE step_key = ?", [step_key])
        return json.loads(rows[0][0] or "{}") if rows else {}

    def mark_step(self, step_key: str, step: str, experiment: str, status: str, wall_s: float = 0.0,
                  detail: dict | None = None, cost: Cost | None = None) -> None:
        """`experiment` is the one that computed the step; any experiment with the same key reuses it."""
        c = cost.as_dict() if cost else {}
        self.upsert("step_status", {"step_key": step_key, "step": step, "experiment": experiment, "status": status,
                                    "wall_s": c.get("wall_s", wall_s), "detail": json.dumps(detail or {}),
                                    "updated_at": time.time(), **{k: v for k, v in c.items() if k != "wall_s"}})

    def replace_rows(self, table: str, key_col: str, key: str, rows: pd.DataFrame | None) -> None:
        """A keyed step's rows of `table`, whole (inside the step's transaction)."""
        self.execute(f"DELETE FROM {table} WHERE {key_col} = ?", [key])
        if rows is not None:
            self.insert_df(table, rows)

    # --- problems and data findings ---------------------------------------------------------------------
    def problems(self, dataset_key: str, split: str) -> pd.DataFrame:
        return self.query(
            "SELECT * FROM problems WHERE dataset_key = ? AND split = ? ORDER BY idx", [dataset_key, split]
        )

    def data_findings(self, dataset_key: str) -> pd.DataFrame:
        return self.query("SELECT location, kind, detail FROM data_findings WHERE dataset_key = ? "
                          "ORDER BY kind, location", [dataset_key])

    # --- generations ------------------------------------------------------------------------------------
    def generated_questions(self, gen_key: str) -> set[str]:
        return {r[0] for r in self.execute("SELECT DISTINCT problem_id FROM generations WHERE gen_key = ?",
                                           [gen_key])}

    def generation_totals(self, gen_key: str) -> tuple[int, int]:
        """Rows and generated tokens of a generation."""
        n, tokens = self.execute("SELECT count(*), coalesce(sum(num_tokens), 0) FROM generations WHERE gen_key = ?",
                                 [gen_key])[0]
        return int(n), int(tokens)

    def generation_rows(self, gen_key: str, text: str = "none") -> pd.DataFrame:
        """A generation's samples in sample order (a majority tie goes to the earliest sample, whatever order they
        were written in). `text`: "none" (what the selection reads), "hash" (`text` as the md5 of the trimmed text:
        enough to count distinct responses), or "full" (`prompt` and `text`)."""
        extra = {"none": "", "hash": f", md5({TRIMMED_TEXT}) AS text", "full": ", p.prompt, g.text"}[text]
        join = " JOIN prompts p USING (prompt_key)" if text == "full" else ""
        return self.query(f"SELECT g.problem_id, g.sample_idx, g.pred_answer, g.correct{extra} FROM generations g"
                          f"{join} WHERE g.gen_key = ? ORDER BY g.problem_id, g.sample_idx", [gen_key])

    def correct_counts(self, gen_key: str) -> pd.DataFrame:
        """Per question of a generation (problem_id order): its samples `n` and gold-correct ones `n_correct`."""
        return self.query("SELECT problem_id, count(*)::INTEGER AS n, (count(*) FILTER (correct))::INTEGER AS "
                          "n_correct FROM generations WHERE gen_key = ? GROUP BY problem_id ORDER BY problem_id",
                          [gen_key])

    def copy_samples(self, source: str, target: str, problem_ids: list[str]) -> None:
        """The samples of `problem_ids` under generation `source` also under `target` (an adaptive pool holds its
        first pass's samples)."""
        cols = sorted(COLUMNS["generations"] - {"gen_key"})
        self.insert_select("generations", ["gen_key", *cols], f"SELECT ? AS gen_key, {', '.join(cols)} FROM "
                           "generations WHERE gen_key = ? AND list_contains(?, problem_id)",
                           [target, source, problem_ids])

    def response_texts(self, gen_key: str, rows: pd.DataFrame) -> pd.DataFrame:
        """prompt and text of `rows`' (problem_id, sample_idx) samples of a generation, in their order."""
        self.register("_wanted", rows[["problem_id", "sample_idx"]].reset_index(drop=True).assign(pos=range(len(rows))))
        try:
            return self.query("SELECT p.prompt, g.text FROM _wanted w JOIN generations g ON g.gen_key = ? AND "
                              "g.problem_id = w.problem_id AND g.sample_idx = w.sample_idx JOIN prompts p "
                              "USING (prompt_key) ORDER BY w.pos", [gen_key])
        finally:
            self.unregister("_wanted")

    # --- reference log-probs ----------------------------------------------------------------------------
    def logprobs(self, model_hash: str, gen_key: str) -> pd.DataFrame:
        return self.query("SELECT problem_id, sample_idx, logp_sum, n_tokens FROM response_logprobs "
                          "WHERE model_hash = ? AND gen_key = ?", [model_hash, gen_key])

    # --- selection --------------------------------------------------------------------------------------
    def question_stats(self, weight_key: str, columns: str = "*") -> pd.DataFrame:
        return self.query(f"SELECT {columns} FROM question_stats WHERE weight_key = ? ORDER BY problem_id",
                          [weight_key])

    def drop_reasons(self, weight_key: str) -> dict[str, int]:
        """Questions per drop reason ("kept" for the kept ones), most common first."""
        rows = self.execute("SELECT coalesce(drop_reason, 'kept'), count(*) AS n FROM question_stats "
                            "WHERE weight_key = ? GROUP BY ALL ORDER BY n DESC, 1", [weight_key])
        return {r: int(n) for r, n in rows}

    def selection_summary(self, weight_key: str) -> dict[str, Any]:
        """What a selection step reports: its examples, kept entropy and the pool's monitor."""
        (examples,), = self.execute("SELECT count(*) FROM training_examples WHERE weight_key = ?", [weight_key])
        (entropy,), = self.execute("SELECT avg(entropy) FROM question_stats WHERE weight_key = ? AND drop_reason "
                                   "IS NULL", [weight_key])
        monitor = self.execute("SELECT pass_at_n, balance, label_accuracy FROM round_monitor WHERE weight_key = ? "
                               "AND tier = 'all'", [weight_key])
        info = {"examples": int(examples), **self.drop_reasons(weight_key),
                "mean_entropy_kept": None if entropy is None else round(float(entropy), 3)}
        if monitor:
            info |= {m: round(float(v), 3) for m, v in zip(("pass_at_n", "balance", "label_accuracy"), monitor[0],
                                                           strict=True) if v is not None}
        return info

    def lucky_shares(self, weight_keys: list[str]) -> pd.DataFrame:
        """Per round's weight key, overall (tier 'all') and by tier: its training rows (the chosen response of each:
        SFT rows, DPO's chosen, KTO's desirable), those right by luck (correct against gold, steps not valid), and
        their share, by count and by training weight (`lucky_weight_share`: where the weighting puts the lucky
        rows). Rows without a steps check (real data, stores from before it) are not counted."""
        return self.query(
            """WITH r AS (
                 SELECT t.weight_key, p.tier::VARCHAR AS tier, t.weight, g.correct AND NOT g.steps_valid AS lucky
                 FROM training_examples t
                 JOIN generations g USING (gen_key, problem_id, sample_idx)
                 JOIN (SELECT DISTINCT problem_id, tier FROM problems WHERE split = 'pool') p USING (problem_id)
                 WHERE list_contains(?, t.weight_key) AND t.label AND g.steps_valid IS NOT NULL)
               SELECT weight_key, tier, count(*)::INTEGER AS rows, (count(*) FILTER (lucky))::INTEGER AS lucky,
                      avg(lucky::INTEGER) AS lucky_share,
                      coalesce(sum(weight) FILTER (lucky), 0) / sum(weight) AS lucky_weight_share
               FROM (SELECT * FROM r UNION ALL SELECT weight_key, 'all' AS tier, weight, lucky FROM r)
               GROUP BY weight_key, tier ORDER BY weight_key, tier != 'all', tier""",
            [weight_keys])

    def example_weights(self, weight_key: str) -> pd.DataFrame:
        return self.query("SELECT weight FROM training_examples WHERE weight_key = ? ORDER BY example_idx",
                          [weight_key])

    def example_samples(self, weight_keys: list[str]) -> pd.DataFrame:
        """The samples training rows name: problem_id, sample_idx, rejected_idx and their generation."""
        return self.query("SELECT gen_key, problem_id, sample_idx, rejected_idx FROM training_examples "
                          "WHERE list_contains(?, weight_key) ORDER BY weight_key, example_idx", [weight_keys])

    def write_training_rows(self, weight_keys: list[str], reference_hash: str | None, path: Path) -> int:
        """The training rows of `weight_keys` (in that order, each in example order) with their text and, given a
        reference model, its log-probs of each response, into an Arrow IPC file at `path`, batch by batch (a
        round's rows never sit in Python whole); the number of rows."""
        batches = self.batches(_TRAINING_ROWS + " ORDER BY list_position(?, t.weight_key), t.example_idx",
                               [reference_hash, reference_hash, weight_keys, weight_keys], rows=10_000)
        first = next(batches, None)
        if first is None:
            return 0
        n = 0
        with pa.ipc.new_file(str(path), first.schema) as sink:
            for batch in itertools.chain([first], batches):
                sink.write_batch(batch)
                n += batch.num_rows
        return n

    def export_training_rows(self, rounds: dict[int, str]) -> pa.Table | None:
        """The training rows of the weight keys of `rounds` ({round: weight_key}, in round order, each in example
        order) with their text, the question's answer entropy and `round`: what `east export data` writes (None:
        no rows)."""
        order = sorted(rounds)
        keys = [rounds[r] for r in order]
        batches = list(self.batches(_EXPORT_ROWS, [order, keys, None, None, keys, keys], rows=10_000))
        return pa.Table.from_batches(batches) if batches else None

    def label_free_state(self, weight_key: str, experiment: str, round_: int) -> tuple[float | None, ...]:
        """Mean pool entropy, pseudo-label accuracy now and the round before (label-free collapse)."""
        (entropy,), = self.execute("SELECT avg(entropy) FROM question_stats WHERE weight_key = ?", [weight_key])
        now = self.execute("SELECT label_accuracy FROM round_monitor WHERE weight_key = ? AND tier = 'all'",
                           [weight_key])
        before = self.execute("SELECT m.label_accuracy FROM experiment_rounds r JOIN round_monitor m USING "
                              "(weight_key) WHERE r.experiment = ? AND r.round = ? AND m.tier = 'all'",
                              [experiment, round_ - 1])
        return entropy, now[0][0] if now else None, before[0][0] if before else None

    def pool_answers(self, weight_key: str) -> tuple[int, int]:
        """Responses of the pool generation a selection read, and how many of them had an extractable answer."""
        (n, answered), = self.execute(
            "SELECT count(*), count(nullif(trim(pred_answer), '')) FROM generations WHERE gen_key IN "
            "(SELECT gen_key FROM question_stats WHERE weight_key = ?)", [weight_key])
        return int(n), int(answered)

    def balance_probes(self, experiment: str, round_: int) -> pd.DataFrame:
        return self.query("SELECT * FROM balance_probes WHERE experiment = ? AND round = ? ORDER BY n, temperature",
                          [experiment, round_])

    def balance_probes_of(self, experiments: list[str]) -> pd.DataFrame:
        return self.query("SELECT * FROM balance_probes WHERE list_contains(?, experiment)", [experiments])

    def pool_entropies(self, gen_keys: list[str]) -> pd.DataFrame:
        """Each pool question's entropy once per generation (every weighting of a pool clusters it alike)."""
        return self.query("SELECT DISTINCT ON (gen_key, problem_id) gen_key, entropy FROM question_stats "
                          "WHERE list_contains(?, gen_key)", [gen_keys])

    def first_pool_stats(self, gen_key: str) -> pd.DataFrame:
        return self.query("SELECT DISTINCT ON (problem_id) entropy, frac_correct, n_incorrect FROM question_stats "
                          "WHERE gen_key = ? ORDER BY problem_id", [gen_key])

    # --- checkpoints and evaluations ----------------------------------------------------------------------
    def checkpoint(self, ckpt_key: str) -> dict | None:
        rows = self.query("SELECT * FROM checkpoints WHERE ckpt_key = ?", [ckpt_key])
        return rows.iloc[0].to_dict() if len(rows) else None

    def evaluation(self, eval_key: str) -> dict | None:
        rows = self.query("SELECT n_questions, k, greedy_acc, maj_acc, pass_acc, pass1, pass1_se, pass_at_k, maj_at_k "
                          "FROM evaluations WHERE eval_key = ?", [eval_key])
        if not len(rows):
            return None
        row = {c: None if pd.isna(v) else v for c, v in rows.astype(object).iloc[0].items()}  # NULL: None, not NaN
        return row | {c: json.loads(row[c]) for c in ("pass_at_k", "maj_at_k") if row[c] is not None}

    # --- experiments and rounds ---------------------------------------------------------------------------
    def record_round(self, experiment: str, round_: int, **fields: Any) -> None:
        self.upsert("experiment_rounds", {"experiment": experiment, "round": round_, "updated_at": time.time(),
                                          **fields})

    def recorded_config(self, experiment: str) -> str | None:
        rows = self.execute("SELECT config FROM experiments WHERE experiment = ?", [experiment])
        return rows[0][0] if rows else None

    def claim_experiment(self, experiment: str, config: str) -> str:
        """The configuration recorded for `experiment`; `config`, recorded now, if the name is new. Call it in one
        transaction (on a lake: under a claim on the name), so of two runs starting at once one records first."""
        recorded = self.recorded_config(experiment)
        if recorded is None:
            self.execute("INSERT INTO experiments VALUES (?, ?, ?)", [experiment, config, time.time()])
        return recorded or config

    def experiment_round(self, experiment: str, round_: int | None = None) -> tuple | None:
        """(round, model_path, model_hash, config) of `round_`, or of the latest round."""
        rows = self.execute(
            "SELECT round, model_path, model_hash, config FROM experiment_rounds WHERE experiment = ?"
            + (" AND round = ?" if round_ is not None else "") + " ORDER BY round DESC LIMIT 1",
            [experiment] if round_ is None else [experiment, round_])
        return rows[0] if rows else None

    def round_weight_keys(self, experiment: str, before: int) -> list[tuple[int, str]]:
        return [(r, k) for r, k in self.execute(
            "SELECT round, weight_key FROM experiment_rounds WHERE experiment = ? AND round >= 1 AND round < ? "
            "ORDER BY round", [experiment, before])]

    def round_table(self, experiment: str) -> pd.DataFrame:
        return self.query(_ROUND_TABLE.format(columns="", rounds="experiment_rounds", where=""), [experiment])

    def rejected_round_table(self, experiment: str) -> pd.DataFrame:
        """The rounds the guard rejected, as `round_table` shows rounds, with why (`reason`) and the validation
        accuracy they fell from; one a later run accepted (the guard relaxed) is a round of `round_table` instead."""
        return self.query(_ROUND_TABLE.format(
            columns=", r.reason, r.parent_val_acc, r.max_val_drop", rounds="rejected_rounds",
            where="AND NOT EXISTS (SELECT 1 FROM experiment_rounds a WHERE a.experiment = r.experiment AND "
                  "a.round = r.round)"), [experiment])

    def record_rejected_round(self, experiment: str, round_: int, **fields: Any) -> None:
        self.upsert("rejected_rounds", {"experiment": experiment, "round": round_, "updated_at": time.time(),
                                        **fields})

    def validation_accuracy(self, experiment: str, round_: int) -> float | None:
        """The validation greedy accuracy of a recorded round; None without a validation split (or that round)."""
        rows = self.execute("SELECT v.greedy_acc FROM experiment_rounds r JOIN evaluations v ON v.eval_key = "
                            "r.val_eval_key WHERE r.experiment = ? AND r.round = ?", [experiment, round_])
        return rows[0][0] if rows else None

    def experiment_origin(self, experiment: str) -> tuple[str | None, str | None]:
        """The content behind an experiment's round 0: its base model's hash and its data's dataset_key (None where
        round 0 is not recorded), which a moved checkout or data directory keeps."""
        rows = self.execute("SELECT r.model_hash, e.dataset_key FROM experiment_rounds r LEFT JOIN evaluations e "
                            "USING (eval_key) WHERE r.experiment = ? AND r.round = 0", [experiment])
        return rows[0] if rows else (None, None)

    def monitor_rounds(self, experiments: list[str]) -> pd.DataFrame:
        return self.query("SELECT r.experiment, r.round, m.* EXCLUDE (weight_key) FROM experiment_rounds r JOIN "
                          "round_monitor m USING (weight_key) WHERE list_contains(?, r.experiment) ORDER BY "
                          "r.experiment, r.round, m.tier != 'all', length(m.tier), m.tier", [experiments])

    def round_steps(self, experiments: list[str]) -> pd.DataFrame:
        return self.query("SELECT r.experiment, r.round, r.step_keys, e.greedy_acc FROM experiment_rounds r "
                          "LEFT JOIN evaluations e USING (eval_key) WHERE list_contains(?, r.experiment) "
                          "ORDER BY r.experiment, r.round", [experiments])

    def step_costs(self) -> pd.DataFrame:
        return self.query("SELECT step_key, wall_s, cpu_s, gpu_s, tokens_generated, tokens_trained FROM step_status")

    def record_sweep_run(self, **fields: Any) -> None:
        self.upsert("sweep_runs", fields)

    def sweep_runs(self, sweep: str) -> pd.DataFrame:
        return self.query("SELECT * FROM sweep_runs WHERE sweep = ?", [sweep])

    def sweep_table(self, sweep: str) -> pd.DataFrame:
        """Every round of every experiment of a sweep, with its grid point, test and validation accuracy."""
        return self.query(
            """SELECT s.*, r.round, r.n_kept, r.gen_key, r.weight_key, e.greedy_acc, e.maj_acc, e.pass_acc, e.by_tier,
                      e.pass1, v.greedy_acc AS val_greedy_acc
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

    def referenced_checkpoints(self, keep_last: int | None = None) -> set[str]:
        """Names of the checkpoint directories the store may still need: each experiment round's (with `keep_last`,
        only those of each experiment's last `keep_last` rounds), every trained one no round records yet, and every
        training step a run has started (it may be renaming its checkpoint into place) or holds a claim on."""
        rounds = self.query("SELECT experiment, round, model_path FROM experiment_rounds WHERE round > 0")
        if keep_last is not None:
            last = rounds.groupby("experiment")["round"].transform("max")
            rounds = rounds[rounds["round"] > last - keep_last]
        in_rounds = set(self.query("SELECT model_path FROM experiment_rounds").model_path.dropna())
        orphans = set(self.query("SELECT path FROM checkpoints").path) - in_rounds  # trained, round not recorded
        return {Path(p).name for p in set(rounds.model_path.dropna()) | orphans} | self.started_steps()

    def checkpoint_hashes(self) -> list[tuple[str, str, str]]:
        """(ckpt_key, stored model hash, the rounds that use it as "experiment:round, ...", or "") of every
        checkpoint a training step finished."""
        return [tuple(r) for r in self.execute(
            "SELECT c.ckpt_key, c.model_hash, coalesce(string_agg(r.experiment || ':' || r.round, ', ' ORDER BY "
            "r.experiment, r.round), '') FROM checkpoints c LEFT JOIN experiment_rounds r ON r.round > 0 AND "
            "r.model_path = c.path GROUP BY ALL ORDER BY c.ckpt_key")]

    def started_steps(self) -> set[str]:
        """Keys of the training steps a run has started and not finished, and of every step a live claim holds:
        their checkpoints may be being written."""
        return {k for (k,) in self.execute(
            "SELECT step_key FROM step_status WHERE step = 'train' AND status != 'done' UNION "
            "SELECT claim_key FROM claims WHERE holder IS NOT NULL AND expires_at > epoch(now())")}
