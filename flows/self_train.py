"""`self-train` (bootstrap if needed, evaluate the base model, R rounds) and the `east-round` subflow.

The DuckDB store is the cache (keys in `east_tasks.steps.keys`), so Prefect's own task caching is off:
a retried or re-triggered run recomputes nothing the store already holds, and each task logs whether it
computed or skipped, and ends Cached when it skipped (`flows.states`). A task that runs steps returns their
`StepResult` (its caller takes it with `.result()`); publishing an artifact is a task of its own (`flows.artifacts`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.runtime import flow_run
from prefect.states import Completed, State

from east_tasks import steps
from east_tasks.config import ExperimentConfig
from east_tasks.engines.generation import SampleSpec, release_generator
from east_tasks.paths import DEFAULT_DATA_DIR
from east_tasks.report.frames import round_results, to_records
from east_tasks.steps import EvalKeys, ModelRef, StepResult
from east_tasks.store import open_store
from flows.artifacts import (
    RoundProgress,
    publish_dropped_rows,
    publish_probes,
    publish_results,
    publish_round,
    publish_selection,
)
from flows.faults import fail_once_if_asked
from flows.interrupts import interrupted
from flows.operate import run_deployments
from flows.states import CACHED, ended, supersede_earlier_attempts


def _retry_unless_user_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry crashes, not bad input (`east_tasks.steps.runner.retryable`), nor what a Ctrl-C became."""
    return not interrupted() and (not isinstance(state.data, BaseException) or steps.retryable(state.data))


RETRY = {"retries": 1, "retry_delay_seconds": 5, "retry_condition_fn": _retry_unless_user_error}


_known_failures: set[str] = set()  # the first line of each known failure the runs of this process logged


class _KnownFailuresInOneLine(logging.Filter):
    """Prefect logs a failed task or flow run with its traceback; bad input, a full disk or a damaged store is not a
    crash (`steps.known_failure`), so the run's logs in the UI show the one line the CLI prints instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        known = steps.known_failure(err, DEFAULT_DATA_DIR) if isinstance(err, Exception) else None
        if known is not None:
            record.msg, record.args, record.exc_info, record.exc_text = str(known), (), None, None
            _known_failures.add(str(known).splitlines()[0])
        elif err is not None and interrupted():  # what a Ctrl-C became: the CLI says how to resume
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.flow_runs", "prefect.task_runs"):  # where Prefect's engines log run failures
    logging.getLogger(_name).addFilter(_KnownFailuresInOneLine())


class _CommandConsole(logging.Filter):
    """The console of a command that prints a known failure itself as its last line (`east run`, `east sweep`): the
    runs' copies of it (the task's and the flow's error and their `Finished in state Failed(...)`) are left out, so
    the terminal shows it once, and so is `Finished in state Completed()`: a step's own line says it is done."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        message = record.getMessage()
        if message == "Finished in state Completed()":
            return False
        return not any(known in message or repr(known)[1:-1] in message for known in _known_failures)


@contextmanager
def command_console() -> Iterator[None]:
    """Around a command's flow runs: its console as `_CommandConsole` says. The runs' logs in the UI keep it all."""
    console = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    terse = _CommandConsole()
    for handler in console:
        handler.addFilter(terse)
    try:
        yield
    finally:
        for handler in console:
            handler.removeFilter(terse)


def _log(result: StepResult) -> None:
    """A line per step the result is made of."""
    logger = get_run_logger()
    for step in result.parts or (result,):
        logger.info(step.describe())


@task(name="ensure-backbone", cache_policy=NO_CACHE)
def ensure_backbone(cfg: ExperimentConfig) -> State[StepResult]:
    result = steps.ensure_backbone(cfg)
    _log(result)
    return ended(result)


@task(name="prepare-data", cache_policy=NO_CACHE)
def prepare_data(cfg: ExperimentConfig) -> State[StepResult]:
    """The splits into the store; its key is the dataset key."""
    result = steps.prepare_data(cfg)
    _log(result)
    return ended(result)


def data_in_store(cfg: ExperimentConfig) -> str:
    """The data in the store (a task) and, where data.on_invalid = "skip" left rows out, which, where the run is
    seen (a task); the dataset key."""
    data = prepare_data(cfg).result()
    if "dropped" in data.info:
        publish_dropped_rows(cfg, data.key)
    return data.key


@task(name="resolve-model", cache_policy=NO_CACHE)
def resolve_model(path: str) -> ModelRef:
    ref = steps.model_ref(path)
    get_run_logger().info(f"model {ref.path} hash={ref.hash}")
    return ref


@task(name="choose-sampling", cache_policy=NO_CACHE, **RETRY)
def choose_sampling(cfg: ExperimentConfig, model: ModelRef, dataset_key: str,
                    round_: int) -> State[StepResult[tuple[SampleSpec, list[str]]]]:
    """Auto-balance's probes and choice (balance.auto): the round's sampling and the probes' keys."""
    result = steps.choose_sampling(cfg, model, dataset_key, round_)
    _log(result)
    spec, _ = result.value
    get_run_logger().info(f"auto-balance chose temperature {spec.temperature:g}, n = {spec.n}")
    return ended(result)


SHARD_DEPLOYMENT = "east-generate-shard/generate-shard"  # flows/entrypoints.py:generate_shard


def run_shard_flow_runs(jobs: list[dict]) -> str:
    """sampling.shards: each shard of a generation a flow run that any worker of the pool takes."""
    run_deployments(SHARD_DEPLOYMENT, {f"{job['config']['experiment']}-{job['step']}-shard-{job['shard'][0] + 1}"
                                       f"-of-{job['shard'][1]}".replace(" ", "-"): {"job": job} for job in jobs})
    return f"{len(jobs)} shard flow runs of {SHARD_DEPLOYMENT}"


@task(name="generate-pool", cache_policy=NO_CACHE, **RETRY)
def generate_pool(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, round_: int,
                  spec: SampleSpec) -> State[StepResult]:
    """The round's pool (with sampling.adaptive: its first pass, then its top-up, two steps)."""
    result = steps.sample_pool(cfg, model, dataset_key, round_, spec, run_shards=run_shard_flow_runs)
    _log(result)
    return ended(result)


@task(name="select-and-weight", cache_policy=NO_CACHE)
def select_and_weight(cfg: ExperimentConfig, gen_key: str, dataset_key: str, parent: ModelRef) -> State[StepResult]:
    fail_once_if_asked("select-and-weight", cfg.data_dir)  # test hook, see flows/faults.py
    result = steps.select_and_weight(cfg, gen_key, dataset_key, parent)
    _log(result)
    return ended(result)


@task(name="train", cache_policy=NO_CACHE, **RETRY)
def train(cfg: ExperimentConfig, parent: ModelRef, weight_key: str, round_: int) -> State[StepResult[ModelRef]]:
    """Label-free, the collapse gate refuses a collapsed pool here, before anything is trained."""
    result = steps.train(cfg, parent, weight_key, round_)
    _log(result)
    return ended(result)


@task(name="evaluate", cache_policy=NO_CACHE, **RETRY)
def evaluate(cfg: ExperimentConfig, model: ModelRef, dataset_key: str) -> State[StepResult[EvalKeys]]:
    """Cached only when every split's generations and scores were."""
    result = steps.evaluate_model(cfg, model, dataset_key)
    _log(result)
    return ended(result)


def _round_run_name() -> str:
    params = flow_run.parameters
    return f"{params['cfg'].experiment}-round-{params['round_']}"


@flow(name="east-round", flow_run_name=_round_run_name)
def east_round(cfg: ExperimentConfig, round_: int, parent: ModelRef, dataset_key: str) -> ModelRef | State[ModelRef]:
    """One EAST round: sample the pool with the parent (at the auto-balanced temperature with balance.auto),
    weight (entropy or a baseline), fine-tune, evaluate. Ends Cached when the round's record was found in the
    store (its key holds every step key of the round); the caller gets the model either way. Fails with the
    guard's line when its record step rejects it (`east_tasks.steps.guard`)."""
    supersede_earlier_attempts()  # a retried parent run: this run replaces the round's failed one
    if cfg.balance.auto:
        spec, probe_keys = choose_sampling(cfg, parent, dataset_key, round_).result().value
        publish_probes(cfg, round_)
    else:
        spec, probe_keys = steps.pool_spec(cfg), []
    pool = generate_pool(cfg, parent, dataset_key, round_, spec).result()
    gen_key = pool.key
    weight_key = select_and_weight(cfg, gen_key, dataset_key, parent).result().key
    publish_selection(cfg, round_, weight_key)
    trained = train(cfg, parent, weight_key, round_).result()
    model = trained.value
    evals = evaluate(cfg, model, dataset_key).result().value
    record = steps.record_round(cfg, round_, model, evals, gen_key, weight_key, trained.key,
                                [*probe_keys, *(part.key for part in pool.parts[:-1])])
    _log(record)
    publish_round(cfg, round_, weight_key)
    return Completed(data=model, name=CACHED) if record.cached else model


def experiment_records(cfg: ExperimentConfig) -> list[dict]:
    """The experiment's rounds as the flow returns them (`east_tasks.report.results.to_records`)."""
    with open_store(cfg) as store:
        return to_records(round_results(store, cfg.experiment))


@flow(name="self-train", flow_run_name="{cfg.experiment}")
def self_train(cfg: ExperimentConfig, keep_engine: bool = False) -> list[dict]:
    """Evaluates the base model (round 0), then runs `cfg.rounds` EAST rounds, each from the last.

    `keep_engine` leaves the sampling engine up for a caller that runs more experiments (a sweep)."""
    steps.preflight(cfg)  # before anything is loaded or written
    try:
        dataset_key = data_in_store(cfg)  # bad data is refused before any model is built or loaded
        # the name is this configuration's now, also against runs started with it; a moved model or data compares
        # by content
        steps.claim_experiment(cfg, dataset_key)
        if off := steps.guard_off(cfg):  # no validation split to guard the rounds with: said once
            get_run_logger().warning(off)
        ensure_backbone(cfg)
        model = resolve_model(cfg.base_model)
        evals = evaluate(cfg, model, dataset_key).result().value
        _log(steps.record_round(cfg, 0, model, evals))
        progress = RoundProgress(cfg.experiment, 0, cfg.rounds)
        for r in range(1, cfg.rounds + 1):
            model = east_round(cfg, r, model, dataset_key)
            progress.update(r)
    finally:
        if not keep_engine:
            release_generator()
    publish_results(cfg)
    return experiment_records(cfg)
