"""The selection in the store (SQL over the tables, the gsm8k style with gold labels) and the pure rules over
DataFrames (`east_tasks.core.selection`, the path of the math style and label-free rounds) give the same clusters,
stats, drop reasons and training rows bit for bit, and the same monitor up to float summation order."""

from __future__ import annotations

import random
import shutil

import pandas as pd
import pytest

from east_tasks.config import load_config
from east_tasks.core.answers import NO_ANSWER, extract_answer
from east_tasks.steps import ModelRef, select_and_weight
from east_tasks.steps import selection as selection_step
from east_tasks.steps.generation import grade
from east_tasks.store import Store

SPELLINGS = ["1", "1.0", "1,000", "1000", "0.5", "1/2", "-3", "7", NO_ANSWER, None]


def _pool(store: Store, seed: int = 0, questions: int = 120) -> None:
    rng = random.Random(seed)
    problems, rows = [], []
    for q in range(questions):
        pid = f"q{q:03d}"
        gold = "" if q % 17 == 0 else rng.choice(["1", "1000", "1/2", "-3"])  # a few unlabelled questions
        problems.append({"dataset_key": "d", "split": "pool", "idx": q, "problem_id": pid, "question": f"Q{q}",
                         "answer": gold, "tier": q % 3 + 1})
        chains = [f"chain {c}" for c in range(rng.randint(1, 4))]  # repeated texts: distinct counts matter
        for i in range(rng.choice([1, 4, 8, 16])):
            answer = rng.choice(SPELLINGS[: rng.randint(3, len(SPELLINGS))])
            pad = rng.choice(["", " ", "\n", "\t "])
            text = f"{pad}{rng.choice(chains)} #### {answer}{pad}" if answer else f"{rng.choice(chains)} no answer"
            rows.append({"gen_key": "g", "problem_id": pid, "sample_idx": i, "prompt_key": f"p{q}", "text": text,
                         "pred_answer": extract_answer(text, "gsm8k"), "num_tokens": 10, "gold": gold})
    gens = pd.DataFrame(rows)
    gens["correct"] = grade(list(gens.pred_answer.where(gens.pred_answer.notna(), None)), list(gens.gold), "gsm8k")
    store.insert_df("problems", pd.DataFrame(problems))
    store.insert_df("generations", gens.drop(columns="gold"))


def _tables(cfg) -> dict[str, pd.DataFrame]:
    with Store(cfg.store_path) as store:
        return {t: store.query(f"SELECT * EXCLUDE (weight_key) FROM {t} ORDER BY ALL") if t != "clusters" else
                store.query("SELECT * FROM clusters ORDER BY ALL")
                for t in ("clusters", "question_stats", "training_examples", "round_monitor")}


@pytest.mark.parametrize("settings", [
    {},
    {"weighting": {"a": 1.0, "responses_per_question": "all", "mapping": "exp"}},
    {"weighting": {"a": 0.5, "strategy": "accuracy", "drop_all_correct": False}, "train": {"loss": "dpo"}},
    {"weighting": {"a": 2.0, "strategy": "rejected", "require_wellformed_incorrect": False, "seed": 3},
     "train": {"loss": "kto"}},
])
def test_store_and_frames_select_the_same_rows(tmp_path, monkeypatch, settings) -> None:
    sql = load_config("tiny-test", data_dir=tmp_path / "sql", **settings)
    frames = load_config("tiny-test", data_dir=tmp_path / "frames", **settings)
    with Store(sql.store_path) as store:
        _pool(store)
    (tmp_path / "frames").mkdir()
    shutil.copy(sql.store_path, frames.store_path)
    parent = ModelRef(path="unused", hash="h")
    assert selection_step.in_store(sql)
    in_sql = select_and_weight(sql, "g", "d", parent)
    monkeypatch.setattr(selection_step, "in_store", lambda cfg: False)
    in_frames = select_and_weight(frames, "g", "d", parent)
    assert in_sql.key == in_frames.key and in_sql.info == in_frames.info
    got, expected = _tables(sql), _tables(frames)
    for table in ("clusters", "question_stats", "training_examples"):
        pd.testing.assert_frame_equal(got[table], expected[table], check_exact=True, check_dtype=False)
    pd.testing.assert_frame_equal(got["round_monitor"], expected["round_monitor"], check_exact=False, rtol=1e-12,
                                  check_dtype=False)
    stats, examples = got["question_stats"], got["training_examples"]
    assert stats.drop_reason.isna().sum() > 20 and stats.drop_reason.notna().sum() > 20 and len(examples) > 20
    assert examples.weight.mean() == pytest.approx(1.0)
