"""Turn a DataConfig into the pool and test splits as DataFrames (problem_id, question, answer, tier)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from east_tasks.answers import extract_answer
from east_tasks.config import DataConfig
from east_tasks.data.arith import arith_splits
from east_tasks.io import fingerprint

COLUMNS = ["problem_id", "question", "answer", "tier"]


def _arith(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    splits = arith_splits(cfg.pool_size, cfg.test_size, seed=cfg.seed)
    return {name: pd.DataFrame([{c: getattr(p, c) for c in COLUMNS} for p in rows], columns=COLUMNS)
            for name, rows in (("pool", splits.pool), ("test", splits.test))}


def _gsm8k_frame(rows, split: str, limit: int) -> pd.DataFrame:
    out = []
    for i, row in enumerate(rows):
        if i == limit:
            break
        answer = extract_answer(row["answer"])
        if answer is None:
            raise ValueError(f"gsm8k {split} row {i}: field 'answer' has no '#### N' final answer")
        pid = hashlib.sha1(row["question"].encode()).hexdigest()[:12]
        out.append({"problem_id": pid, "question": row["question"], "answer": answer, "tier": 0})
    return pd.DataFrame(out, columns=COLUMNS).drop_duplicates("problem_id")


def _gsm8k(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    """Hub name (`openai/gsm8k`, config `main`) or a local dir with train.jsonl / test.jsonl."""
    from datasets import load_dataset

    local = Path(cfg.path)
    if local.exists():
        files = {s: str(local / f"{s}.jsonl") for s in ("train", "test")}
        missing = [f for f in files.values() if not Path(f).exists()]
        if missing:
            raise FileNotFoundError(f"gsm8k: expected {', '.join(missing)}")
        ds = load_dataset("json", data_files=files)
    else:
        ds = load_dataset(cfg.path, "main")
    for split in ("train", "test"):
        absent = {"question", "answer"} - set(ds[split].column_names)
        if absent:
            raise ValueError(f"gsm8k {split}: missing columns {sorted(absent)}")
    return {"pool": _gsm8k_frame(ds["train"], "train", cfg.pool_size),
            "test": _gsm8k_frame(ds["test"], "test", cfg.test_size)}


def load_splits(cfg: DataConfig) -> tuple[str, dict[str, pd.DataFrame]]:
    """Returns (dataset_key, splits). The key hashes the rows themselves, so edited data gets a new key."""
    splits = _arith(cfg) if cfg.source == "arith" else _gsm8k(cfg)
    key = fingerprint({s: df[["problem_id", "question", "answer"]].values.tolist() for s, df in splits.items()})
    return key, splits
