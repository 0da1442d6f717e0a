"""A store as the version before schema versions wrote it (v0): the same rows in that version's tables, so a test
can prove that such a store is migrated on open and found complete. v0 kept a prompt per sample in `generations`,
copied prompt and response text into `training_examples`, and marked data and records done by their rows alone."""

from __future__ import annotations

from pathlib import Path

import duckdb

V0_SCHEMA = (Path(__file__).parent / "fixtures" / "store_schema_v0.sql").read_text()
_CONVERTED = {
    "generations": "SELECT g.gen_key, g.problem_id, g.sample_idx, p.prompt, g.text, g.pred_answer, g.correct, "
                   "g.num_tokens FROM new.generations g JOIN new.prompts p USING (prompt_key)",
    "training_examples": "SELECT t.weight_key, t.example_idx, t.problem_id, t.sample_idx, p.prompt, g.text, t.label, "
                         "t.rejected_idx, r.text, t.uncertainty, t.weight FROM new.training_examples t "
                         "JOIN new.generations g USING (gen_key, problem_id, sample_idx) "
                         "JOIN new.prompts p ON p.prompt_key = g.prompt_key "
                         "LEFT JOIN new.generations r ON r.gen_key = t.gen_key AND r.problem_id = t.problem_id "
                         "AND r.sample_idx = t.rejected_idx",
    "evaluations": "SELECT * EXCLUDE (pass1, pass1_se, pass_at_k, maj_at_k) FROM new.evaluations",  # from v3
    # v0 had no status row for these steps: their rows were what said "done"
    "step_status": "SELECT * FROM new.step_status WHERE step != 'data' AND step NOT LIKE 'record%'",
}


def downgrade_to_v0(path: Path) -> None:
    """Rewrites the store at `path` (the current schema) as v0 would have written the same results."""
    old = path.with_name(path.name + ".v1")
    path.rename(old)
    con = duckdb.connect(str(path))
    try:
        con.execute(V0_SCHEMA)
        con.execute(f"ATTACH '{old}' AS new (READ_ONLY)")
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE "
                                            "table_catalog = current_database() AND table_schema = 'main'").fetchall()]
        for table in tables:
            columns = ", ".join(c for (c,) in con.execute(  # v0's columns: later ones (schema v4's) are left out
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_catalog = "
                "current_database() AND table_schema = 'main' ORDER BY ordinal_position", [table]).fetchall())
            select = _CONVERTED.get(table, f"SELECT {columns} FROM new.{table}")
            by_name = "" if table in ("generations", "training_examples") else "BY NAME "
            con.execute(f"INSERT INTO {table} {by_name}{select}")
        data_dir = str(path.parent.resolve())  # v0 recorded checkpoints by absolute path
        con.execute("UPDATE checkpoints SET path = ? || '/' || path", [data_dir])
        con.execute("UPDATE experiment_rounds SET model_path = ? || '/' || model_path WHERE round > 0", [data_dir])
    finally:
        con.close()
    old.unlink()
