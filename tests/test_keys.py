"""The keys are the store's compatibility contract: today's key rules give, for the tiny-test experiment, exactly
the keys the store of an earlier version recorded (tests/fixtures/keys_v0.json, from commit 4fc222b, schema v0),
so every result it holds is found. Computed without an engine: a key reads only hashes, configs and templates."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from east_tasks.config import load_config
from east_tasks.data.sources import load_splits
from east_tasks.engines.generation import SampleSpec
from east_tasks.steps import keys, pool_spec, prompter_for
from east_tasks.steps.model import model_ref

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "keys_v0.json").read_text())


def test_todays_key_rules_give_the_recorded_keys(tmp_path) -> None:
    cfg = load_config("tiny-test", data_dir=tmp_path)
    dataset_key = load_splits(cfg.data)[0]
    assert dataset_key == FIXTURE["dataset_key"]
    base = model_ref(cfg.base_model)
    rounds = FIXTURE["rounds"]
    assert base.hash == rounds[0]["model_hash"]
    prompter = prompter_for(cfg, base.path)

    def gen(model_hash: str, split: str, spec: SampleSpec, seed: int) -> str:
        return keys.gen_key(model_hash, dataset_key, split, replace(spec, stop=prompter.stop).__dict__, seed,
                            cfg.backend.engine, prompter.template, keys.style_key(cfg.data.answer_style))

    ev = cfg.eval
    for r in rounds:
        greedy = gen(r["model_hash"], "test", SampleSpec(1, 0.0, 1.0, ev.max_tokens), ev.seed)
        sampled = gen(r["model_hash"], "test", SampleSpec(ev.n, ev.temperature, 1.0, ev.max_tokens), ev.seed)
        validation = gen(r["model_hash"], "validation", SampleSpec(1, 0.0, 1.0, ev.max_tokens), ev.seed)
        assert keys.eval_key(greedy, sampled) == r["eval_key"]
        assert keys.eval_key(validation, None) == r["val_eval_key"]
        if r["round"] == 0:
            continue
        parent = rounds[r["round"] - 1]["model_hash"]
        gen_key = gen(parent, "pool", pool_spec(cfg), cfg.sampling.seed + r["round"])
        weight_key = keys.weight_key(gen_key, keys.weighting_fields(cfg.weighting), cfg.train.loss,
                                     cfg.balance.target_correct)
        earlier = [e["weight_key"] for e in rounds[1:r["round"]]]  # tiny-test accumulates the rounds' data
        ckpt_key = keys.checkpoint_key(parent, weight_key, keys.train_fields(cfg.train), earlier)
        assert (gen_key, weight_key, ckpt_key) == (r["gen_key"], r["weight_key"], r["ckpt_key"])
        assert r["step_keys"] == [gen_key, weight_key, ckpt_key, greedy, sampled, r["eval_key"], validation,
                                  r["val_eval_key"]]
