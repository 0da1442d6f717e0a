"""An adaptive pool end to end on the transformers backend: the first pass, the top-up of what it left undecided,
the selection over each question's own count, resuming a top-up cut short, and a rerun that computes nothing."""

from __future__ import annotations

import pandas as pd

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.core.budget import sample_counts
from east_tasks.engines.generation import release_generator
from east_tasks.paths import BACKBONE_DIR
from east_tasks.store import Store

N0, N = 2, 4


def _samples(store: Store, gen_key: str) -> pd.DataFrame:
    return store.query("SELECT problem_id, sample_idx, text, correct FROM generations WHERE gen_key = ? "
                       "ORDER BY problem_id, sample_idx", [gen_key])


def test_adaptive_pool_stops_the_decided_tops_up_the_rest_resumes_and_reruns_from_cache(tmp_path) -> None:
    cfg = load_config("tiny-test", data_dir=tmp_path, backend={"engine": "hf"},
                      data={"pool_size": 12, "validation_size": 4, "test_size": 4},
                      sampling={"n": N, "n0": N0, "adaptive": True, "stop_none_correct": True, "chunk_size": 4,
                                "max_tokens": 48})
    dataset_key = steps.prepare_data(cfg).key
    model = steps.model_ref(BACKBONE_DIR)
    pool = steps.sample_pool(cfg, model, dataset_key, 1, steps.pool_spec(cfg))
    first, topped = pool.parts
    assert pool.key == topped.key != first.key and not pool.cached
    with Store(cfg.store_path) as store:
        planned = store.correct_counts(first.key)
        got = store.correct_counts(pool.key)
        first_rows, rows = _samples(store, first.key), _samples(store, pool.key)
    counts = sample_counts(planned.n_correct.to_numpy(), N0, N, stop_none_correct=True)
    stopped = int((counts == N0).sum())
    assert 0 < stopped < 12  # some questions were decided by their first two samples, some were not
    assert got.n.tolist() == counts.tolist() and got.problem_id.tolist() == planned.problem_id.tolist()
    # the pool holds the first pass's samples as they were, and the new ones numbered on from n0
    pd.testing.assert_frame_equal(rows[rows.sample_idx < N0].reset_index(drop=True), first_rows)
    assert topped.info["rows"] == counts.sum() == len(rows)
    assert (topped.info["new_samples"], topped.info["stopped_early"], topped.info["topped_up"]) == (
        counts.sum() - 2 * 12, stopped, 12 - stopped)

    # the selection sees each question's own samples: a stopped question is dropped (all or none correct)
    selected = steps.select_and_weight(cfg, pool.key, dataset_key, model)
    with Store(cfg.store_path) as store:
        stats = store.query("SELECT problem_id, n_samples, n_correct, drop_reason FROM question_stats "
                            "WHERE weight_key = ? ORDER BY problem_id", [selected.key])
    assert stats.n_samples.tolist() == counts.tolist() and stats.n_correct.tolist() == got.n_correct.tolist()
    assert set(stats.drop_reason[counts == N0]) <= {"all_correct", "no_correct"}

    # a top-up cut short after its first chunk resumes from there and ends with the same samples
    with Store(cfg.store_path) as store:
        order = store.problems(dataset_key, "pool").problem_id.tolist()  # the chunks': the pool's order
        store.execute("DELETE FROM generations WHERE gen_key = ? AND list_contains(?, problem_id)",
                      [pool.key, order[4:]])
        store.execute("UPDATE step_status SET status = 'running' WHERE step_key = ?", [pool.key])
    resumed = steps.sample_pool(cfg, model, dataset_key, 1, steps.pool_spec(cfg))
    release_generator()
    assert resumed.parts[0].cached and not resumed.parts[1].cached and resumed.parts[1].info["resumed_questions"] == 4
    with Store(cfg.store_path) as store:
        pd.testing.assert_frame_equal(_samples(store, pool.key), rows)
        before = store.query("SELECT step_key, status, wall_s FROM step_status ORDER BY step_key")

    # a rerun: both steps found, nothing computed or written
    again = steps.sample_pool(cfg, model, dataset_key, 1, steps.pool_spec(cfg))
    assert again.cached and [p.cached for p in again.parts] == [True, True] and again.key == pool.key
    assert again.parts[1].info == resumed.parts[1].info  # the log details it was computed with
    with Store(cfg.store_path) as store:
        pd.testing.assert_frame_equal(store.query("SELECT step_key, status, wall_s FROM step_status "
                                                  "ORDER BY step_key"), before)
        assert (before.status == "done").all()
