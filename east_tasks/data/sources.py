"""Turn a DataConfig into the pool and test splits as DataFrames (problem_id, question, answer, tier).

Every real dataset goes through `datasets.load_dataset`: a hub name (`openai/gsm8k`, `HuggingFaceH4/MATH-500`)
or a local directory holding `<split>.jsonl` (or `.json`, `.parquet`, `.csv`). Columns are renamed with the
config's column map; the gold answer is the `answer` column or the final answer of the `solution` column.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from east_tasks.answers import extract_answer
from east_tasks.config import ColumnMap, DataConfig
from east_tasks.data.arith import arith_splits
from east_tasks.io import fingerprint

COLUMNS = ["problem_id", "question", "answer", "tier"]
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# The final-answer form a reference solution must have for its answer to serve as gold, per answer style
# (stricter than extracting from model output, which falls back to the last number).
GOLD_FORMS = {"gsm8k": "'#### N'", "math": "\\boxed{}"}


def _arith(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    splits = arith_splits(cfg.pool_size, cfg.validation_size, cfg.test_size, seed=cfg.seed)
    return {name: pd.DataFrame([{c: getattr(p, c) for c in COLUMNS} for p in rows], columns=COLUMNS)
            for name, rows in (("pool", splits.pool), ("validation", splits.validation), ("test", splits.test))}


def _load(path: str, split: str, hub_config: str | None):
    """One split as a `datasets.Dataset`, and a description of where it came from for error messages."""
    from datasets import load_dataset

    local = Path(path)
    if local.exists():
        files = [local / f"{split}{ext}" for ext in LOCAL_FORMATS]
        found = next((f for f in files if f.exists()), None)
        if found is None:
            raise FileNotFoundError(f"{local}: no file for split {split!r} (looked for "
                                    f"{', '.join(f.name for f in files)})")
        return load_dataset(LOCAL_FORMATS[found.suffix], data_files={split: str(found)}, split=split), str(found)
    return load_dataset(path, hub_config, split=split), f"{path} ({hub_config or 'default'}) split {split!r}"


def _tier(value: object) -> int:
    """MATH's `level` is 'Level 3' in some releases and 3 in others; anything else is tier 0."""
    found = re.search(r"\d+", str(value)) if value is not None else None
    return int(found.group()) if found else 0


def _gold(row: dict, columns: ColumnMap, style: str, where: str, i: int) -> str:
    if columns.answer in row and row[columns.answer] not in (None, ""):
        return str(row[columns.answer]).strip()
    solution = row.get(columns.solution) if columns.solution else None
    if solution is None:
        raise ValueError(f"{where} row {i}: no gold answer (column {columns.answer!r} absent or empty, and no "
                         f"solution column to take it from)")
    answer = extract_answer(str(solution), style)
    if answer is None or (style == "gsm8k" and "####" not in str(solution)):
        raise ValueError(f"{where} row {i}: column {columns.solution!r} has no {GOLD_FORMS[style]} final answer")
    return answer


def _frame(path: str, split: str, cfg: DataConfig, hub_config: str | None, limit: int) -> pd.DataFrame:
    ds, where = _load(path, split, hub_config)
    cols = cfg.columns or ColumnMap()
    available = set(ds.column_names)
    wanted = {"question": cols.question, "tier": cols.tier}
    if cols.answer not in available:  # the answer column is optional when a solution column can stand in
        wanted["solution"] = cols.solution
    for field, name in wanted.items():
        if name is not None and name not in available:
            raise ValueError(f"{where}: no column {name!r} (data.columns.{field}); available columns: "
                             f"{', '.join(sorted(available))}")
    if cols.answer not in available and cols.solution is None:
        raise ValueError(f"{where}: no column {cols.answer!r} (data.columns.answer) and no data.columns.solution "
                         f"to derive the answer from; available columns: {', '.join(sorted(available))}")
    out = []
    for i, row in enumerate(ds.select(range(min(limit, len(ds))))):
        question = str(row[cols.question])
        out.append({"problem_id": hashlib.sha1(question.encode()).hexdigest()[:12], "question": question,
                    "answer": _gold(row, cols, cfg.answer_style, where, i),
                    "tier": _tier(row[cols.tier]) if cols.tier else 0})
    return pd.DataFrame(out, columns=COLUMNS).drop_duplicates("problem_id")


def load_splits(cfg: DataConfig) -> tuple[str, dict[str, pd.DataFrame]]:
    """Returns (dataset_key, splits). The key hashes the rows themselves, so edited data gets a new key."""
    if cfg.source == "arith":
        splits = _arith(cfg)
    else:
        test_path, test_config = (cfg.test_path, None) if cfg.test_path else (cfg.path, cfg.hub_config)
        pool = _frame(cfg.path, cfg.pool_split, cfg, cfg.hub_config, cfg.pool_size + cfg.validation_size)
        splits = {"pool": pool.iloc[:cfg.pool_size].reset_index(drop=True),
                  "validation": pool.iloc[cfg.pool_size:].reset_index(drop=True),
                  "test": _frame(test_path, cfg.test_split, cfg, test_config, cfg.test_size)}
    # Empty splits stay out of the key, so data without a validation split keeps the key it had before.
    key = fingerprint({s: df[["problem_id", "question", "answer"]].values.tolist() for s, df in splits.items()
                       if len(df)})
    return key, splits
