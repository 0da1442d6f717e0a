"""`self-train` (bootstrap if needed, evaluate the base model, R rounds) and the `east-round` subflow.

The DuckDB store is the cache (keys in `east_tasks.steps.keys`), so Prefect's own task caching is off:
a retried or re-triggered run recomputes nothing the store already holds, and each task logs whether it
computed or skipped, and ends Cached when it skipped (`flows.states`; its caller takes the value with `.result()`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
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
from east_tasks.report.markdown import embedded_plots, probes_markdown, selection_markdown, to_markdown
from east_tasks.report.plots import plot_entropy_histogram, plot_rounds
from east_tasks.report.statistics import selection_summary
from east_tasks.steps import EvalKeys, ModelRef, StepResult
from east_tasks.store import open_store
from flows.artifacts import RoundProgress, artifact_key, entropy_plot_path, publish_round
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


def _log(results: StepResult | list[StepResult]) -> None:
    logger = get_run_logger()
    for r in results if isinstance(results, list) else [results]:
        logger.info(r.describe())


@task(name="ensure-backbone", cache_policy=NO_CACHE)
def ensure_backbone(cfg: ExperimentConfig) -> State[None]:
    result = steps.ensure_backbone(cfg)
    _log(result)
    return ended(result, None)


@task(name="prepare-data", cache_policy=NO_CACHE)
def prepare_data(cfg: ExperimentConfig) -> State[str]:
    result = steps.prepare_data(cfg)
    _log(result)
    if "dropped" in result.info:  # data.on_invalid = "skip" left rows out: say which, where the run is seen
        with open_store(cfg) as store:
            dropped = store.data_findings(result.key)
        create_markdown_artifact(
            key=f"{artifact_key(cfg.experiment)}-dropped-rows",
            markdown="\n".join([f"### {cfg.experiment}: {len(dropped)} data rows left out (data.on_invalid = skip)",
                                 "", "| where | problem | detail |", "|---|---|---|",
                                 *(f"| {r.location} | {r.kind} | {r.detail} |" for r in dropped.itertuples())]),
            description="Rows of the data that failed validation and were dropped")
    return ended(result, result.key)


@task(name="resolve-model", cache_policy=NO_CACHE)
def resolve_model(path: str) -> ModelRef:
    ref = steps.model_ref(path)
    get_run_logger().info(f"model {ref.path} hash={ref.hash}")
    return ref


@task(name="choose-sampling", cache_policy=NO_CACHE, **RETRY)
def choose_sampling(cfg: ExperimentConfig, model: ModelRef, dataset_key: str,
                    round_: int) -> State[tuple[SampleSpec, list[str]]]:
    """Auto-balance's probes and choice (balance.auto), published as the round's probe artifact."""
    spec, probes = steps.choose_sampling(cfg, model, dataset_key, round_)
    _log(probes)
    with open_store(cfg) as store:
        rows = store.balance_probes(cfg.experiment, round_)
    name = f"{cfg.experiment}-round-{round_}"
    get_run_logger().info(f"auto-balance chose temperature {spec.temperature:g}, n = {spec.n}")
    create_markdown_artifact(key=f"{artifact_key(name)}-auto-balance", markdown=probes_markdown(rows, name),
                             description=f"The sampling candidates probed before round {round_}, and the choice")
    return ended(probes, (spec, [p.key for p in probes]))


SHARD_DEPLOYMENT = "east-generate-shard/generate-shard"  # flows/entrypoints.py:generate_shard


def run_shard_flow_runs(jobs: list[dict]) -> str:
    """sampling.shards: each shard of a generation a flow run that any worker of the pool takes."""
    run_deployments(SHARD_DEPLOYMENT, {f"{job['config']['experiment']}-{job['step']}-shard-{job['shard'][0] + 1}"
                                       f"-of-{job['shard'][1]}".replace(" ", "-"): {"job": job} for job in jobs})
    return f"{len(jobs)} shard flow runs of {SHARD_DEPLOYMENT}"


@task(name="generate-pool", cache_policy=NO_CACHE, **RETRY)
def generate_pool(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, round_: int,
                  spec: SampleSpec) -> State[str]:
    result = steps.generate(cfg, model, dataset_key, "pool", spec, cfg.sampling.seed + round_,
                               f"generate pool round {round_}", run_shards=run_shard_flow_runs)
    _log(result)
    return ended(result, result.key)


@task(name="select-and-weight", cache_policy=NO_CACHE)
def select_and_weight(cfg: ExperimentConfig, gen_key: str, dataset_key: str, round_: int,
                      parent: ModelRef) -> State[str]:
    fail_once_if_asked("select-and-weight", cfg.data_dir)  # test hook, see flows/faults.py
    result = steps.select_and_weight(cfg, gen_key, dataset_key, parent)
    _log(result)
    steps.check_collapse(cfg, round_, result.key)  # label-free: refuses before training on a collapsed pool
    with open_store(cfg) as store:
        stats = store.question_stats(result.key)
        examples = store.example_weights(result.key)
    name = f"{cfg.experiment}-round-{round_}"
    png = plot_entropy_histogram(stats, name, entropy_plot_path(cfg, round_))
    create_markdown_artifact(
        key=f"{artifact_key(name)}-selection",
        markdown=selection_markdown(selection_summary(stats, examples), name, png),
        description=f"Which pool questions round {round_} trained on, and their weights",
    )
    return ended(result, result.key)


@task(name="train", cache_policy=NO_CACHE, **RETRY)
def train(cfg: ExperimentConfig, parent: ModelRef, weight_key: str, round_: int) -> State[StepResult[ModelRef]]:
    result = steps.train(cfg, parent, weight_key, steps.earlier_weight_keys(cfg, round_),
                         run_name=f"{cfg.experiment}-round-{round_}")
    _log(result)
    return ended(result, result)


@task(name="evaluate", cache_policy=NO_CACHE, **RETRY)
def evaluate(cfg: ExperimentConfig, model: ModelRef, dataset_key: str) -> State[EvalKeys]:
    """Cached only when every split's generations and scores were."""
    results, keys = steps.evaluate_model(cfg, model, dataset_key)
    _log(results)
    return ended(results, keys)


def _round_run_name() -> str:
    params = flow_run.parameters
    return f"{params['cfg'].experiment}-round-{params['round_']}"


@flow(name="east-round", flow_run_name=_round_run_name)
def east_round(cfg: ExperimentConfig, round_: int, parent: ModelRef, dataset_key: str) -> ModelRef | State[ModelRef]:
    """One EAST round: sample the pool with the parent (at the auto-balanced temperature with balance.auto),
    weight (entropy or a baseline), fine-tune, evaluate. Ends Cached when the round's record was found in the
    store (its key holds every step key of the round); the caller gets the model either way."""
    supersede_earlier_attempts()  # a retried parent run: this run replaces the round's failed one
    spec, probe_keys = (choose_sampling(cfg, parent, dataset_key, round_).result() if cfg.balance.auto
                        else (steps.pool_spec(cfg), []))
    gen_key = generate_pool(cfg, parent, dataset_key, round_, spec).result()
    weight_key = select_and_weight(cfg, gen_key, dataset_key, round_, parent).result()
    trained = train(cfg, parent, weight_key, round_).result()
    model = trained.value
    evals = evaluate(cfg, model, dataset_key).result()
    record = steps.record_round(cfg, round_, model, evals, gen_key, weight_key, trained.key, probe_keys)
    _log(record)
    publish_round(cfg, round_, weight_key)
    return Completed(data=model, name=CACHED) if record.cached else model


def publish_results(cfg: ExperimentConfig) -> list[dict]:
    with open_store(cfg) as store:
        df = round_results(store, cfg.experiment)
    records = to_records(df)
    key = artifact_key(cfg.experiment)
    table = [{c: v for c, v in r.items() if c not in ("by_tier", "pass_at_k", "maj_at_k")}
             | {f"pass@{k}": v for k, v in r["pass_at_k"].items()} | {f"maj@{k}": v for k, v in r["maj_at_k"].items()}
             for r in records]
    create_table_artifact(key=f"{key}-accuracy", table=table,
                          description=f"Test accuracy per round of {cfg.experiment}")
    png = plot_rounds(df, cfg.experiment, cfg.data_dir / "plots" / f"{cfg.experiment}-rounds.png")
    create_markdown_artifact(key=f"{key}-summary",
                             markdown=to_markdown(df, cfg.experiment) + "\n\n" + embedded_plots({"accuracy": png}))
    return records


@flow(name="self-train", flow_run_name="{cfg.experiment}")
def self_train(cfg: ExperimentConfig, keep_engine: bool = False) -> list[dict]:
    """Evaluates the base model (round 0), then runs `cfg.rounds` EAST rounds, each from the last.

    `keep_engine` leaves the sampling engine up for a caller that runs more experiments (a sweep)."""
    steps.preflight(cfg)  # before anything is loaded or written
    try:
        dataset_key = prepare_data(cfg).result()  # bad data is refused before any model is built or loaded
        steps.claim_experiment(cfg)  # the name is this configuration's now, also against runs started with it
        ensure_backbone(cfg)
        model = resolve_model(cfg.base_model)
        evals = evaluate(cfg, model, dataset_key).result()
        _log(steps.record_round(cfg, 0, model, evals))
        progress = RoundProgress(cfg.experiment, 0, cfg.rounds)
        for r in range(1, cfg.rounds + 1):
            model = east_round(cfg, r, model, dataset_key)
            progress.update(r)
    finally:
        if not keep_engine:
            release_generator()
    return publish_results(cfg)
