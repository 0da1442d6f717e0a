"""Chunked generation into the store: a crash loses at most one chunk, and resuming is exact."""

import pandas as pd
import pytest

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.engines.generation import SampleSpec, release_generator
from east_tasks.engines.generation.hf_backend import HFGenerator
from east_tasks.paths import BACKBONE_DIR
from east_tasks.store import Store

SPEC = SampleSpec(n=2, temperature=0.8, top_p=1.0, max_tokens=48)


def _cfg(data_dir):
    return load_config("tiny-test", data_dir=data_dir, backend={"engine": "hf"},
                       data={"pool_size": 12, "test_size": 4}, sampling={"chunk_size": 4, "n": SPEC.n})


def _texts(cfg, gen_key):
    with Store(cfg.store_path) as s:
        return s.query("SELECT problem_id, sample_idx, text FROM generations WHERE gen_key = ? "
                       "ORDER BY problem_id, sample_idx", [gen_key]).values.tolist()


def test_crash_mid_generation_resumes_from_the_last_committed_chunk(tmp_path, monkeypatch) -> None:
    model = steps.model_ref(BACKBONE_DIR)
    crashed, clean = _cfg(tmp_path / "a"), _cfg(tmp_path / "b")
    key = steps.prepare_data(crashed).key

    real, calls = HFGenerator.generate, {"n": 0}

    def dies_on_second_chunk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HFGenerator, "generate", dies_on_second_chunk)
    with pytest.raises(RuntimeError, match="worker killed"):
        steps.generate(crashed, model, key, "pool", SPEC, seed=0, step="gen")
    release_generator()
    with Store(crashed.store_path) as s:
        assert s.query("SELECT count(*) AS n FROM generations").n[0] == 8  # the first chunk was committed
        assert s.query("SELECT status FROM step_status WHERE step = 'gen'").status.tolist() == ["running"]

    resumed = steps.generate(crashed, model, key, "pool", SPEC, seed=0, step="gen")
    assert not resumed.cached
    assert resumed.info == {"rows": 24, "resumed_questions": 4, "new_questions": 8, "engine": resumed.info["engine"]}
    assert resumed.info["engine"].startswith("started in")  # the HF backend is not synced into

    again = steps.generate(crashed, model, key, "pool", SPEC, seed=0, step="gen")
    assert again.cached and again.info == {"rows": 24}

    monkeypatch.setattr(HFGenerator, "generate", real)
    steps.prepare_data(clean)
    uninterrupted = steps.generate(clean, model, key, "pool", SPEC, seed=0, step="gen")
    release_generator()
    assert uninterrupted.key == resumed.key
    assert _texts(crashed, resumed.key) == _texts(clean, uninterrupted.key)  # same seeds, same samples


def test_responses_without_any_answer_are_stored_as_no_answer_and_wrong(tmp_path) -> None:
    """At a high temperature some responses hold no number at all (the study's T = 1.4 probes met them): they are
    stored with no answer and graded wrong, the rest graded as usual."""
    from east_tasks.core.answers import answers_match, extract_answer

    cfg = _cfg(tmp_path)
    key = steps.prepare_data(cfg).key
    hot = SampleSpec(n=2, temperature=5.0, top_p=1.0, max_tokens=3)
    result = steps.generate(cfg, steps.model_ref(BACKBONE_DIR), key, "pool", hot, seed=0, step="gen")
    release_generator()
    with Store(cfg.store_path) as s:
        rows = s.query("SELECT g.text, g.pred_answer, g.correct, p.answer FROM generations g JOIN problems p "
                       "USING (problem_id) WHERE g.gen_key = ? AND p.split = 'pool'", [result.key])
    assert len(rows) == 24 and rows.pred_answer.isna().any() and rows.pred_answer.notna().any()
    for r in rows.itertuples():
        pred = extract_answer(r.text, "gsm8k")
        assert (pred is None) == pd.isna(r.pred_answer) and r.correct == answers_match(pred, r.answer, "gsm8k")
