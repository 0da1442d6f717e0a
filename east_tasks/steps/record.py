"""The round's record: its model, evaluations and every step it ran or reused, as one `experiment_rounds` row
(and, with trackers, the round's metrics, once the row is committed); or, for a round the guard rejects, a
`rejected_rounds` row."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from east_tasks.config import ExperimentConfig
from east_tasks.paths import stored_checkpoint_path
from east_tasks.report import tracking
from east_tasks.steps import guard, keys
from east_tasks.steps.evaluation import EvalKeys
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.store import Store


def _round_row(store: Store, cfg: ExperimentConfig, round_: int, model: ModelRef, evals: EvalKeys,
               gen_key: str | None, weight_key: str | None, steps: list[str]) -> dict:
    """What a round's row says (`experiment_rounds`, or `rejected_rounds` with the guard's verdict)."""
    n_kept = store.count("training_examples", "weight_key", weight_key) if weight_key else None
    # a trained round's checkpoint relative to the data dir (relocatable); round 0's base model as given
    path = stored_checkpoint_path(Path(model.path).name) if round_ > 0 else model.path
    return {"model_hash": model.hash, "model_path": path, "eval_key": evals.test, "val_eval_key": evals.validation,
            "gen_key": gen_key, "weight_key": weight_key, "n_kept": n_kept, "config": cfg.model_dump_json(),
            "step_keys": json.dumps(steps)}


def record_round(cfg: ExperimentConfig, round_: int, model: ModelRef, evals: EvalKeys, gen_key: str | None = None,
                 weight_key: str | None = None, ckpt_key: str | None = None,
                 earlier_keys: Iterable[str] = ()) -> StepResult:
    """Records round `round_` of the experiment (with `earlier_keys`, the steps before its pool's generation:
    auto-balance's probes, an adaptive pool's first pass), unless the guard rejects it
    (`steps.guard`: then it is recorded in `rejected_rounds` and `RoundRejected` raised, before the record step is
    marked running). A round found recorded was accepted by the run that recorded it, and stays so."""
    steps = [k for k in (*earlier_keys, gen_key, weight_key, ckpt_key, *evals.steps) if k]
    key = keys.record_key(cfg.experiment, round_, model.hash, evals.test, evals.validation, gen_key, weight_key,
                          steps)

    def judge(store: Store) -> None:
        """The guard, in the look-up's open (a round found recorded was accepted and is not judged again)."""
        if (verdict := guard.judge(store, cfg, round_, evals)) is not None:
            reason, parent_acc, acc = verdict
            store.record_rejected_round(
                cfg.experiment, round_, **_round_row(store, cfg, round_, model, evals, gen_key, weight_key, steps),
                parent_val_acc=parent_acc, val_acc=acc, max_val_drop=cfg.guard.max_val_drop, reason=reason)
            raise guard.RoundRejected(reason)

    def compute(ctx: StepContext) -> Output[dict[str, float]]:
        metrics: dict[str, float] = {}  # the round's metrics for the trackers, read in the commit (the value)

        def write(store: Store) -> dict:
            row = _round_row(store, cfg, round_, model, evals, gen_key, weight_key, steps)
            store.record_round(cfg.experiment, round_, **row)
            if cfg.tracking.report_to:
                metrics.update(tracking.round_metrics(store, cfg.experiment, round_))
            return {"kept": row["n_kept"]} if row["n_kept"] is not None else {}

        return Output(write, value=metrics)

    def to_trackers(result: StepResult[dict[str, float]]) -> None:
        tracking.log_round(cfg, round_, result.value or {})

    return run_step(cfg, Step(f"record round {round_}", key, compute, check=judge,
                              after_commit=to_trackers if cfg.tracking.report_to else None))
