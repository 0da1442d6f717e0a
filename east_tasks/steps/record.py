"""The round's record: its model, evaluations and every step it ran or reused, as one `experiment_rounds` row
(and, with trackers, the round's metrics, once the row is committed)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from east_tasks.config import ExperimentConfig
from east_tasks.paths import stored_checkpoint_path
from east_tasks.report import tracking
from east_tasks.steps import keys
from east_tasks.steps.evaluation import EvalKeys
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.store import Store


def record_round(cfg: ExperimentConfig, round_: int, model: ModelRef, evals: EvalKeys, gen_key: str | None = None,
                 weight_key: str | None = None, ckpt_key: str | None = None,
                 probe_keys: Iterable[str] = ()) -> StepResult:
    """Records round `round_` of the experiment (auto-balance's probe steps too)."""
    steps = [k for k in (*probe_keys, gen_key, weight_key, ckpt_key, *evals.steps) if k]
    key = keys.record_key(cfg.experiment, round_, model.hash, evals.test, evals.validation, gen_key, weight_key,
                          steps)

    def compute(ctx: StepContext) -> Output[dict[str, float]]:
        metrics: dict[str, float] = {}  # the round's metrics for the trackers, read in the commit (the value)

        def write(store: Store) -> dict:
            n_kept = store.count("training_examples", "weight_key", weight_key) if weight_key else None
            # a trained round's checkpoint relative to the data dir (relocatable); round 0's base model as given
            path = stored_checkpoint_path(Path(model.path).name) if round_ > 0 else model.path
            store.record_round(cfg.experiment, round_, model_hash=model.hash, model_path=path,
                               eval_key=evals.test, val_eval_key=evals.validation, gen_key=gen_key,
                               weight_key=weight_key, n_kept=n_kept, config=cfg.model_dump_json(),
                               step_keys=json.dumps(steps))
            if cfg.tracking.report_to:
                metrics.update(tracking.round_metrics(store, cfg.experiment, round_))
            return {"kept": n_kept} if n_kept is not None else {}

        return Output(write, value=metrics)

    def to_trackers(result: StepResult[dict[str, float]]) -> None:
        tracking.log_round(cfg, round_, result.value or {})

    return run_step(cfg, Step(f"record round {round_}", key, compute,
                              after_commit=to_trackers if cfg.tracking.report_to else None))
