"""Evaluation: greedy (and k-sample) generations of a split, then accuracy, maj@k and pass@k into `evaluations`."""

from __future__ import annotations

import json
import time

import pandas as pd
from pydantic import BaseModel, ConfigDict

from east_tasks.config import ExperimentConfig
from east_tasks.core.metrics import evaluate
from east_tasks.engines.generation import SampleSpec
from east_tasks.steps import keys
from east_tasks.steps.generation import generate
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.store import Store

METRICS = ("greedy_acc", "maj_acc", "pass_acc")


class EvalKeys(BaseModel):
    """The evaluation keys of one model: test, and validation where the data has that split."""

    model_config = ConfigDict(frozen=True)
    test: str
    validation: str | None = None
    steps: tuple[str, ...] = ()  # every step key the evaluation ran or reused (generations included)


def _rounded(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), digits)


def evaluate_split(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, k: int) -> list[StepResult]:
    """Greedy (and, with k > 0, k-sample) generations on `split`, then metrics into `evaluations`."""
    ev = cfg.eval
    generated = [generate(cfg, model, dataset_key, split, SampleSpec(1, 0.0, 1.0, ev.max_tokens), ev.seed,
                          f"generate {split} greedy")]
    if k:
        generated.append(generate(cfg, model, dataset_key, split, SampleSpec(k, ev.temperature, 1.0, ev.max_tokens),
                                  ev.seed, f"generate {split} k={k}"))
    greedy, sampled = generated[0], (generated[1] if k else None)
    eval_key = keys.eval_key(greedy.key, sampled.key if sampled else None)

    def prepare(store: Store) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
        return {s.key: store.generation_rows(s.key) for s in generated}, store.problems(dataset_key, split)

    def compute(ctx: StepContext) -> Output:
        gens, problems = ctx.prepared
        result = evaluate(gens[greedy.key], gens[sampled.key] if sampled else None, problems, k,
                          cfg.data.answer_style)
        row = {"eval_key": eval_key, "model_hash": model.hash, "dataset_key": dataset_key,
               "n_questions": result.n_questions, "k": result.k, "greedy_acc": result.greedy_acc,
               "maj_acc": result.maj_acc, "pass_acc": result.pass_acc, "by_tier": json.dumps(result.by_tier),
               "created_at": time.time()}
        # a concurrent run's row, if there is one, is equal
        return Output(lambda store: store.insert_row("evaluations", row),
                      {m: _rounded(getattr(result, m)) for m in METRICS})

    def load(store: Store) -> tuple[None, dict]:
        row = store.evaluation(eval_key) or {}
        return None, {m: _rounded(row.get(m)) for m in METRICS}

    return [*generated, run_step(cfg, Step(f"evaluate {split}", eval_key, compute, load=load, prepare=prepare))]


def evaluate_model(cfg: ExperimentConfig, model: ModelRef, dataset_key: str) -> tuple[list[StepResult], EvalKeys]:
    """The test split (greedy, maj@k, pass@k) and, when there is one, the validation split (greedy only)."""
    test = evaluate_split(cfg, model, dataset_key, "test", cfg.eval.k)
    validation = evaluate_split(cfg, model, dataset_key, "validation", 0) if cfg.data.validation_size else []
    return test + validation, EvalKeys(test=test[-1].key, validation=validation[-1].key if validation else None,
                                       steps=tuple(r.key for r in test + validation))
