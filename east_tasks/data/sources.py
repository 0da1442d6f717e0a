"""Turn a DataConfig into the pool and test splits as DataFrames (problem_id, question, answer, tier).

Every real dataset goes through `datasets.load_dataset`: a hub name (`openai/gsm8k`, `HuggingFaceH4/MATH-500`)
or a local directory holding `<split>.jsonl` (or `.json`, `.parquet`, `.csv`). Columns are renamed with the
config's column map; the gold answer is the `answer` column or the final answer of the `solution` column.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from east_tasks.config import ColumnMap, DataConfig
from east_tasks.core.answers import extract_answer, normalize
from east_tasks.data.arith import arith_splits
from east_tasks.data.validation import DataProblems, Finding, LengthLimits, contamination, read_jsonl, too_long
from east_tasks.errors import UserError
from east_tasks.io import fingerprint

if TYPE_CHECKING:
    from datasets import Dataset

COLUMNS = ["problem_id", "question", "answer", "tier"]
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# The final-answer form a reference solution must have for its answer to serve as gold, per answer style
# (stricter than extracting from model output, which falls back to the last number).
GOLD_FORMS = {"gsm8k": "'#### N'", "math": "\\boxed{}", "mcq": "choice-letter"}


def _arith(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    splits = arith_splits(cfg.pool_size, cfg.validation_size, cfg.test_size, seed=cfg.seed,
                          pool_tiers=cfg.pool_tiers, pool_answers=cfg.pool_answers)
    return {name: pd.DataFrame([{**{c: getattr(p, c) for c in COLUMNS}, "location": f"arith {name} question {i}"}
                                for i, p in enumerate(rows, 1)], columns=[*COLUMNS, "location"])
            for name, rows in (("pool", splits.pool), ("validation", splits.validation), ("test", splits.test))}


def _load(path: str, split: str, hub_config: str | None) -> tuple[Dataset, str, list[str], list[Finding]]:
    """One split as a `datasets.Dataset`, where it came from, where each row came from ("line 7" of a JSONL
    file, else "row 7") and the lines that could not be read."""
    from datasets import Dataset, load_dataset

    local = Path(path)
    if local.exists():
        files = [local / f"{split}{ext}" for ext in LOCAL_FORMATS]
        found = next((f for f in files if f.exists()), None)
        if found is None:
            raise UserError(f"{local}: no file for split {split!r} (looked for {', '.join(f.name for f in files)})")
        if found.suffix == ".jsonl":  # read here, so a bad line is named instead of failing inside `datasets`
            rows, lines, bad = read_jsonl(found)
            return Dataset.from_list(rows), str(found), [f"line {n}" for n in lines], bad
        ds = load_dataset(LOCAL_FORMATS[found.suffix], data_files={split: str(found)}, split=split)
        return ds, str(found), [f"row {i}" for i in range(len(ds))], []
    ds = load_dataset(path, hub_config, split=split)
    return ds, f"{path} ({hub_config or 'default'}) split {split!r}", [f"row {i}" for i in range(len(ds))], []


def _tier(value: object) -> int:
    """MATH's `level` is 'Level 3' in some releases and 3 in others; anything else is tier 0."""
    found = re.search(r"\d+", str(value)) if value is not None else None
    return int(found.group()) if found else 0


def _text(value: object) -> str | None:
    """A cell as text; None for a missing or blank one (a JSON null must not become the question "None")."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value) if str(value).strip() else None


def _gold(row: dict, columns: ColumnMap, style: str) -> tuple[str | None, str]:
    """The gold answer, or None and why there is none."""
    if (answer := _text(row.get(columns.answer))) is not None:
        return answer.strip(), ""
    solution = _text(row.get(columns.solution)) if columns.solution else None
    if solution is None:
        empty = ([f"column {columns.answer!r} absent or empty"] if columns.answer else []) + \
            ([f"column {columns.solution!r} empty"] if columns.solution else [])
        return None, f"no gold answer ({', and '.join(empty)})"
    answer = extract_answer(solution, style)
    if answer is None or (style == "gsm8k" and "####" not in solution):
        form = f"{GOLD_FORMS[style]} final answer" if style in GOLD_FORMS else \
            f"final answer that answer style {style!r} extracts"
        return None, f"column {columns.solution!r} has no {form}"
    return answer, ""


def _frame(path: str, split: str, cfg: DataConfig, hub_config: str | None, limit: int,
           gold_required: bool = True) -> tuple[pd.DataFrame, list[Finding]]:
    """Up to `limit` usable rows, in file order, each with where it came from; and what was wrong with the rest.
    A question given twice with one gold answer is kept once; with two different ones, not at all. Without
    `gold_required`, a row without a gold answer is kept with answer "" (an unlabelled question)."""
    ds, where, locations, findings = _load(path, split, hub_config)
    cols = cfg.columns or ColumnMap()
    available = set(ds.column_names)
    wanted = {"question": cols.question, "tier": cols.tier}
    if cols.answer not in available and gold_required:  # optional when a solution column can stand in
        wanted["solution"] = cols.solution
    for field, name in wanted.items():
        if name is not None and name not in available:
            raise UserError(f"{where}: no column {name!r} (data.columns.{field}); available columns: "
                            f"{', '.join(sorted(available))}")
    if cols.answer not in available and cols.solution is None and gold_required:
        raise UserError(f"{where}: no column {cols.answer!r} (data.columns.answer) and no data.columns.solution "
                        f"to derive the answer from; available columns: {', '.join(sorted(available))}")
    def same(answer: str) -> str:  # two gold answers agree when the style compares them exactly equal
        return normalize(answer, str(cfg.answer_style))

    kept: dict[str, dict] = {}
    conflicting: set[str] = set()
    for row, location in zip(ds, locations, strict=True):
        if len(kept) - len(conflicting) >= limit:
            break
        at = f"{where} {location}"
        if (question := _text(row.get(cols.question))) is None:
            findings.append(Finding(at, "empty_question", f"empty question (column {cols.question!r})"))
            continue
        answer, why = _gold(row, cols, cfg.answer_style)
        if answer is None and gold_required:
            findings.append(Finding(at, "no_gold", why))
            continue
        answer = answer or ""
        pid = hashlib.sha1(question.encode()).hexdigest()[:12]
        if pid in kept:
            first = kept[pid]
            if not first["answer"]:  # the same question again, now with its gold answer
                first["answer"] = answer
            elif answer and same(first["answer"]) != same(answer):
                findings.append(Finding(at, "conflicting_gold", f"the question of {first['location']} again, with "
                                        f"gold answer {answer!r} there {first['answer']!r}"))
                conflicting.add(pid)
            continue
        kept[pid] = {"problem_id": pid, "question": question, "answer": answer,
                     "tier": _tier(row[cols.tier]) if cols.tier else 0, "location": at}
    rows = [r for pid, r in kept.items() if pid not in conflicting]
    return pd.DataFrame(rows, columns=[*COLUMNS, "location"]), findings


class LoadedSplits(NamedTuple):
    key: str  # hashes the rows themselves, so edited data gets a new key
    splits: dict[str, pd.DataFrame]  # pool, validation, test: problem_id, question, answer, tier
    dropped: list[Finding]  # rows left out under data.on_invalid = "skip"


def load_splits(cfg: DataConfig, pool_gold_required: bool = True, lengths: LengthLimits | None = None,
                ) -> LoadedSplits:
    """The splits, checked: with data.on_invalid = "error" (the default) any finding raises `DataProblems`.
    Without `pool_gold_required` (label-free rounds), pool questions may lack a gold answer (answer ""); the
    validation and test questions never may. With `lengths`, every prompt must fit them too (`too_long`)."""
    findings: list[Finding] = []
    if cfg.source == "arith":
        splits = _arith(cfg)
    else:
        test_path, test_config = (cfg.test_path, None) if cfg.test_path else (cfg.path, cfg.hub_config)
        pool, pool_findings = _frame(cfg.path, cfg.pool_split, cfg, cfg.hub_config,
                                     cfg.pool_size + cfg.validation_size, pool_gold_required)
        test, findings = _frame(test_path, cfg.test_split, cfg, test_config, cfg.test_size)
        leaked = contamination(pool, test)
        unlabelled = [Finding(r.location, "no_gold", "no gold answer, which a validation question needs (only "
                              "pool questions may go without one, under weighting.labels=majority)")
                      for r in pool.iloc[cfg.pool_size:].itertuples() if not r.answer]
        findings = pool_findings + findings + leaked + unlabelled
        pool = pool[~pool["location"].isin({f.where for f in leaked + unlabelled})]
        splits = {"pool": pool.iloc[:cfg.pool_size], "validation": pool.iloc[cfg.pool_size:], "test": test}
    cut: dict[str, list[list[str]]] = {}  # split -> [problem_id, why] of each row too long for `lengths`
    if lengths is not None:
        for name, df in list(splits.items()):
            long = {f.where: f for f in too_long(df, name, lengths)}
            gone = df["location"].isin(long)
            findings += long.values()
            cut[name] = [[pid, long[where].detail]
                         for pid, where in zip(df.problem_id[gone], df.location[gone], strict=True)]
            splits[name] = df[~gone]
    splits = {name: df[COLUMNS].reset_index(drop=True) for name, df in splits.items()}
    if findings and cfg.on_invalid == "error":
        raise DataProblems(findings)
    # Empty splits stay out of the key, so data without a validation split keeps the key it had before. Rows cut
    # for length depend on the tokenizer and the limits: which were cut, with their counts, join the key then.
    payload = {s: df[["problem_id", "question", "answer"]].values.tolist() for s, df in splits.items() if len(df)}
    too_long_rows = {s: rows for s, rows in cut.items() if rows}
    key = fingerprint({**payload, **({"too_long": too_long_rows} if too_long_rows else {})})
    return LoadedSplits(key, splits, findings)
