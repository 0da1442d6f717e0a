"""Experiment trackers (MLflow, W&B, TensorBoard), wired the way TRL users expect them.

Each round's training curve goes through transformers' own `report_to` callbacks (under MLflow, as a run nested
in the experiment's run); each finished round logs its metrics (accuracy by tier, kept questions, answer
entropy, compute) at step = round to one run per experiment. A rerun that resumes from the cache logs no
round twice. Everything is read back from the store, so a tracker sees what `east report` shows.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.cost import COST_FIELDS
from east_tasks.errors import UserError
from east_tasks.io import fingerprint, flatten
from east_tasks.report.frames import round_costs, round_results
from east_tasks.store import Store

PACKAGES = {"mlflow": ("mlflow", "mlflow-skinny"), "wandb": ("wandb", "wandb"),
            "tensorboard": ("tensorboard", "tensorboard")}  # tracker: (module, what to pip install)


def check_trackers(cfg: ExperimentConfig) -> None:
    """Before any work: every tracker asked for can be imported."""
    for name in cfg.tracking.report_to:
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"tracking.report_to includes {name!r}, but {module} is not installed "
                            f"(pip install {package})")


def round_metrics(store: Store, experiment: str, round_: int) -> dict[str, float]:
    """One round of one experiment as flat numbers: accuracies (overall, validation, by tier), kept questions,
    the pool's answer entropy, and what the round's steps cost."""
    rounds = round_results(store, experiment)
    r = rounds[rounds["round"] == round_].iloc[0]
    metrics = {c: r[c] for c in ("greedy_acc", "pass1", "pass1_se", "maj_acc", "pass_acc", "val_greedy_acc",
                                 "n_kept")}
    metrics |= {f"greedy_acc_tier_{t}": v["greedy_acc"] for t, v in r.by_tier.items()}
    if isinstance(r.weight_key, str):
        entropy = store.question_stats(r.weight_key, "entropy").entropy
        metrics |= {"entropy_mean": entropy.mean(), "entropy_median": entropy.median(),
                    "entropy_share_positive": (entropy > 0).mean()}
    costs = round_costs(store, [experiment])
    cost = costs[costs["round"] == round_].iloc[0]
    if cost.costed:
        metrics |= {f: cost[f] for f in COST_FIELDS}
    return {k: float(v) for k, v in metrics.items() if v is not None and not pd.isna(v)}


def log_round(cfg: ExperimentConfig, round_: int, metrics: dict[str, float]) -> None:
    """Logs a finished round's `round_metrics` to every tracker of `cfg.tracking.report_to`."""
    for name in cfg.tracking.report_to:
        _ROUND_LOGGERS[name](cfg, round_, metrics)


@contextmanager
def training_run(cfg: ExperimentConfig, run_name: str) -> Iterator[dict]:
    """TrainingArguments for one round's fine-tune (`report_to`, `run_name`), with what each tracker's
    transformers callback reads from the environment set for the duration."""
    trackers = list(cfg.tracking.report_to)
    if not trackers:
        yield {"report_to": []}
        return
    env: dict[str, str] = {}
    with ExitStack() as stack:
        if "mlflow" in trackers:
            mlflow, run_id = _mlflow_run(cfg)
            stack.enter_context(mlflow.start_run(run_id=run_id))  # the callback nests its run in it
            env |= {"MLFLOW_NESTED_RUN": "TRUE"}
        if "wandb" in trackers:
            env |= {"WANDB_PROJECT": cfg.tracking.project, "WANDB_RUN_GROUP": cfg.experiment}
        if "tensorboard" in trackers:
            env |= {"TENSORBOARD_LOGGING_DIR": str(_tensorboard_dir(cfg) / run_name)}
        stack.enter_context(_environ(env))
        yield {"report_to": trackers, "run_name": run_name}


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- MLflow -----------------------------------------------------------------------------------------------------
EXPERIMENT_TAG = "east.experiment"


def mlflow_uri(cfg: ExperimentConfig) -> str:
    return cfg.tracking.mlflow_uri or f"sqlite:///{Path(cfg.data_dir).resolve() / 'mlflow.db'}"


def _mlflow_run(cfg: ExperimentConfig):
    """The mlflow module, pointed at the configured store and project (artifacts beside a local store), and the
    experiment's run: found by tag (a resumed experiment logs into the run it started), else created with the
    configuration as params."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri(cfg))
    project = mlflow.get_experiment_by_name(cfg.tracking.project)
    if project is None:
        artifacts = None if cfg.tracking.mlflow_uri else (Path(cfg.data_dir).resolve() / "mlartifacts").as_uri()
        mlflow.create_experiment(cfg.tracking.project, artifact_location=artifacts)
        project = mlflow.get_experiment_by_name(cfg.tracking.project)
    mlflow.set_experiment(experiment_id=project.experiment_id)
    client = mlflow.MlflowClient()
    found = client.search_runs([project.experiment_id], f"tags.`{EXPERIMENT_TAG}` = '{cfg.experiment}'",
                               max_results=1, order_by=["attributes.start_time ASC"])
    if found:
        return mlflow, found[0].info.run_id
    run = client.create_run(project.experiment_id, run_name=cfg.experiment, tags={EXPERIMENT_TAG: cfg.experiment})
    params = flatten(json.loads(cfg.model_dump_json(exclude={"data_dir", "store", "tracking"})))
    for batch in _batches(sorted(params.items()), 100):  # MLflow takes at most 100 params per call
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in batch])
    client.set_terminated(run.info.run_id)
    return mlflow, run.info.run_id


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _mlflow_round(cfg: ExperimentConfig, round_: int, metrics: dict[str, float]) -> None:
    mlflow, run_id = _mlflow_run(cfg)
    client = mlflow.MlflowClient()
    if any(m.step == round_ for m in client.get_metric_history(run_id, "greedy_acc")):
        return  # logged by the run that computed this round
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, 0, round_) for k, v in metrics.items()])


# --- W&B and TensorBoard -----------------------------------------------------------------------------------------
def _wandb_round(cfg: ExperimentConfig, round_: int, metrics: dict[str, float]) -> None:
    import wandb

    run = wandb.init(project=cfg.tracking.project, group=cfg.experiment, name=cfg.experiment,
                     id=f"east-{fingerprint([cfg.tracking.project, cfg.experiment])}", resume="allow",
                     reinit="create_new")
    run.define_metric("*", step_metric="round")
    run.log({**metrics, "round": round_})
    run.finish()


def _tensorboard_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.tracking.tensorboard_dir or Path(cfg.data_dir) / "tensorboard") / cfg.experiment


def _tensorboard_round(cfg: ExperimentConfig, round_: int, metrics: dict[str, float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(_tensorboard_dir(cfg) / "rounds")) as writer:
        for name, value in metrics.items():
            writer.add_scalar(f"round/{name}", value, round_)


_ROUND_LOGGERS = {"mlflow": _mlflow_round, "wandb": _wandb_round, "tensorboard": _tensorboard_round}
