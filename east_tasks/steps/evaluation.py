"""Evaluation: greedy (and n-sample) generations of a split, then greedy accuracy, and pass@1, pass@k and maj@k
into `evaluations`."""

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

METRICS = ("greedy_acc", "pass1", "maj_acc", "pass_acc")


class EvalKeys(BaseModel):
    """The evaluation keys of one model: test, and validation where the data has that split."""

    model_config = ConfigDict(frozen=True)
    test: str
    validation: str | None = None
    steps: tuple[str, ...] = ()  # every step key the evaluation ran or reused (generations included)


def _rounded(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), digits)


def evaluate_split(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, n: int) -> list[StepResult]:
    """Greedy (and, with n > 0, n-sample) generations on `split`, then metrics into `evaluations`. The key is the
    generations' alone: pass@k and maj@k are stored for every k in 1..n, whichever eval.ks reports."""
    ev = cfg.eval
    generated = [generate(cfg, model, dataset_key, split, SampleSpec(1, 0.0, 1.0, ev.max_tokens), ev.seed,
                          f"generate {split} greedy")]
    if n:
        generated.append(generate(cfg, model, dataset_key, split, SampleSpec(n, ev.temperature, 1.0, ev.max_tokens),
                                  ev.seed, f"generate {split} n={n}"))
    greedy, sampled = generated[0], (generated[1] if n else None)
    eval_key = keys.eval_key(greedy.key, sampled.key if sampled else None)

    def prepare(store: Store) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
        return {s.key: store.generation_rows(s.key) for s in generated}, store.problems(dataset_key, split)

    def compute(ctx: StepContext) -> Output:
        gens, problems = ctx.prepared
        result = evaluate(gens[greedy.key], gens[sampled.key] if sampled else None, problems, n,
                          cfg.data.answer_style)
        row = {"eval_key": eval_key, "model_hash": model.hash, "dataset_key": dataset_key,
               "n_questions": result.n_questions, "k": result.n, "greedy_acc": result.greedy_acc,
               "maj_acc": result.maj_acc, "pass_acc": result.pass_acc, "by_tier": json.dumps(result.by_tier),
               "created_at": time.time(), "pass1": result.pass1, "pass1_se": result.pass1_se,
               **{m: json.dumps(getattr(result, m)) if n else None for m in ("pass_at_k", "maj_at_k")}}
        # an upsert: a concurrent run's row is equal, and a stored row without pass@1 (`invalid`) is completed
        return Output(lambda store: store.upsert("evaluations", row),
                      {m: _rounded(getattr(result, m)) for m in METRICS})

    def load(store: Store) -> tuple[None, dict]:
        row = store.evaluation(eval_key) or {}
        return None, {m: _rounded(row.get(m)) for m in METRICS}

    def invalid(store: Store) -> str | None:
        row = store.evaluation(eval_key)
        if sampled and row is not None and row["pass1"] is None:
            return "stored before pass@1 and pass@k were (schema 2): computing them from its stored samples"
        return None

    return [*generated, run_step(cfg, Step(f"evaluate {split}", eval_key, compute, load=load, invalid=invalid,
                                           prepare=prepare))]


def evaluate_model(cfg: ExperimentConfig, model: ModelRef, dataset_key: str) -> StepResult[EvalKeys]:
    """The test split (greedy; pass@1, pass@k, maj@k) and, when there is one, the validation split (greedy only):
    their generations and metrics, as one result whose value is the evaluation keys."""
    test = evaluate_split(cfg, model, dataset_key, "test", cfg.eval.n)
    validation = evaluate_split(cfg, model, dataset_key, "validation", 0) if cfg.data.validation_size else []
    evals = EvalKeys(test=test[-1].key, validation=validation[-1].key if validation else None,
                     steps=tuple(r.key for r in test + validation))
    return StepResult.of("evaluate", test + validation, evals)
