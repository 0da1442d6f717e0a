"""The flows the deployments run: typed, documented parameters that the Prefect UI renders as a form.

Each builds an `ExperimentConfig` (validated before any model loads) and hands it to the same flows that
`east run` uses, so the UI, schedules and the CLI share every cached step. Parameter types and bounds are
taken from the config models (one source of truth); `Literal` types render as drop-downs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from east_tasks import steps
from east_tasks.config import (
    PRESETS,
    BackendConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    SamplingConfig,
    TrainConfig,
    WeightingConfig,
    checked_config,
)
from east_tasks.core.weighting import MAPPINGS, MEASURES
from east_tasks.engines.generation import release_generator
from east_tasks.paths import DEFAULT_DATA_DIR
from east_tasks.steps.experiments import round_checkpoint
from east_tasks.store import open_store
from flows.artifacts import RoundProgress, artifact_key, publish_results
from flows.self_train import data_in_store, east_round, evaluate, resolve_model, self_train


def _like(model: type[BaseModel], name: str) -> Any:
    """The type of a config field with its bounds, so the form rejects what the config would."""
    info = model.model_fields[name]
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


def _given(**fields: Any) -> dict:
    """The fields a form filled in; empty ones keep the preset's value."""
    return {k: v for k, v in fields.items() if v is not None}


# Choices default to the config models' defaults (no preset changes them), numbers to the preset's (None).
_WEIGHTING, _TRAIN, _BACKEND = WeightingConfig(), TrainConfig(), BackendConfig()
PresetName = Literal[tuple(PRESETS)]
ExperimentName = _like(ExperimentConfig, "experiment")
Rounds = _like(ExperimentConfig, "rounds")
Sharpness = _like(WeightingConfig, "a")
MappingName = Literal[tuple(MAPPINGS)]  # the registries' built-ins (a user's own: `east run --set`)
StrategyName = Literal[tuple(MEASURES)]
PassBand = _like(WeightingConfig, "keep_pass_rate")
LossName = _like(TrainConfig, "loss")
EngineName = _like(BackendConfig, "engine")
SourceName = _like(DataConfig, "source")
PromptName = _like(DataConfig, "prompt")
PoolSize = _like(DataConfig, "pool_size")
ValidationSize = _like(DataConfig, "validation_size")
TestSize = _like(DataConfig, "test_size")
SamplesPerQuestion = _like(SamplingConfig, "n")
Temperature = _like(SamplingConfig, "temperature")
MaxTokens = _like(SamplingConfig, "max_tokens")
EvalMaxTokens = _like(EvalConfig, "max_tokens")


@flow(name="east-self-train", flow_run_name="{experiment}")
def start_experiment(
    experiment: ExperimentName = "tiny",
    preset: PresetName = "tiny",
    rounds: Rounds | None = None,
    base_model: str | None = None,
    source: SourceName | None = None,
    data_path: str | None = None,
    hub_config: str | None = None,
    question_column: str | None = None,
    answer_column: str | None = None,
    solution_column: str | None = None,
    tier_column: str | None = None,
    answer_style: str | None = None,
    prompt: PromptName | None = None,
    pool_size: PoolSize | None = None,
    validation_size: ValidationSize | None = None,
    test_size: TestSize | None = None,
    samples_per_question: SamplesPerQuestion | None = None,
    temperature: Temperature | None = None,
    max_tokens: MaxTokens | None = None,
    eval_max_tokens: EvalMaxTokens | None = None,
    a: Sharpness = _WEIGHTING.a,
    mapping: MappingName = _WEIGHTING.mapping,
    strategy: StrategyName = _WEIGHTING.strategy,
    keep_pass_rate: PassBand = None,
    loss: LossName = _TRAIN.loss,
    backend: EngineName = _BACKEND.engine,
    data_dir: str = str(DEFAULT_DATA_DIR),
) -> list[dict]:
    """EAST self-training: evaluate the base model, then `rounds` rounds, each from the last checkpoint.

    Args:
        experiment: Name of the experiment; one name is one configuration (raising `rounds` continues it).
        preset: Starting configuration (east_tasks/config/presets.py); the fields below override it, empty ones keep it.
        rounds: Self-training rounds (empty: the preset's).
        base_model: Local directory or hub name of an HF causal LM (empty: the preset's).
        source: Dataset: arith (the embedded task), gsm8k, math, or table (any JSONL / Parquet / CSV with the
            columns below).
        data_path: Hub name (openai/gsm8k) or a directory with one file per split (train.jsonl, test.jsonl; or
            .json, .parquet, .csv), relative to the worker's directory; required for every source but arith.
        hub_config: The hub dataset's config name (gsm8k: main).
        question_column: Column holding the question (empty: the source's default).
        answer_column: Column holding the final answer, where the data has one (empty: the source's default).
        solution_column: Column holding a worked solution whose final answer is the gold answer where there is
            no answer column (gsm8k: its `#### N`; math: its last \\boxed{}).
        tier_column: Optional difficulty column (e.g. MATH's `level`), for accuracy per tier.
        answer_style: How answers are extracted and compared, e.g. gsm8k or math (empty: the source's default).
        prompt: zeroshot ("Q: ...\\nA:"), fewshot (worked examples first), chat (the tokenizer's chat template) or
            auto (chat when the tokenizer has a template, else fewshot).
        pool_size: Unlabelled questions sampled each round (empty: the preset's).
        validation_size: Held-out questions every choice is made on, greedy only (empty: the preset's).
        test_size: Test questions (empty: the preset's).
        samples_per_question: Responses sampled per pool question (empty: the preset's).
        temperature: Sampling temperature of the pool (empty: the preset's).
        max_tokens: Most tokens sampled per pool response; prompt + max_tokens must fit backend.max_model_len
            (empty: the preset's).
        eval_max_tokens: Most tokens generated per validation / test answer (empty: the preset's).
        a: Sharpness of the entropy-to-weight mapping; 0 is vanilla self-training, > 0 favours uncertain questions.
        mapping: Entropy-to-weight mapping family: power (H^a) or exp (e^(aH)).
        strategy: What a question's weight comes from: entropy (EAST), learnability (p(1 - p), p the pass rate) or
            a baseline (local, accuracy, rejected).
        keep_pass_rate: Keep only questions whose pass rate lies in [lo, hi] (empty: every rate).
        loss: Fine-tuning loss.
        backend: Generation backend: vllm or hf (transformers generate).
        data_dir: Where the DuckDB store, checkpoints and plots live, relative to the worker's directory.
    """
    columns = _given(question=question_column, answer=answer_column, solution=solution_column, tier=tier_column)
    data = _given(source=source, path=data_path, hub_config=hub_config, columns=columns or None,
                  answer_style=answer_style, prompt=prompt, pool_size=pool_size, validation_size=validation_size,
                  test_size=test_size)
    cfg = checked_config(preset, experiment=experiment, rounds=rounds, base_model=base_model, data_dir=data_dir,
                         data=data, train={"loss": loss},
                         weighting=_given(a=a, mapping=mapping, strategy=strategy, keep_pass_rate=keep_pass_rate),
                         backend={"engine": backend},
                         sampling=_given(n=samples_per_question, temperature=temperature, max_tokens=max_tokens),
                         eval=_given(max_tokens=eval_max_tokens))
    return self_train.fn(cfg)


@flow(name="east-experiment")
def run_experiment(config: dict) -> list[dict]:
    """One experiment from a whole configuration: what a concurrent sweep sends each of its points as.

    Args:
        config: An ExperimentConfig as JSON (east_tasks/config/schema.py), validated before anything loads.
    """
    return self_train.fn(ExperimentConfig.model_validate(config))


@flow(name="east-generate-shard")
def generate_shard(job: dict) -> None:
    """One shard of a round's pool generation (sampling.shards), sampled into the shared store by this worker.

    Args:
        job: What a sharded generation (east_tasks.steps.generation) hands each shard: the config, the model, the
            split, the spec and the shard.
    """
    try:
        steps.run_shard(job)
    finally:
        release_generator()


@flow(name="east-next-round", flow_run_name="{experiment}-next-round")
def next_round(experiment: ExperimentName = "tiny", max_rounds: Rounds | None = None,
               data_dir: str = str(DEFAULT_DATA_DIR)) -> dict:
    """One more round of an experiment, from its latest checkpoint, with the configuration it was started with.

    Args:
        experiment: An experiment already in the store (started by the self-train deployment or `east run`).
        max_rounds: Round limit: at or past it the run does nothing and says so (for schedules). Empty: none.
        data_dir: Where the DuckDB store, checkpoints and plots live, relative to the worker's directory.
    """
    logger = get_run_logger()
    state = round_checkpoint(data_dir, experiment)
    if max_rounds is not None and state.last_round >= max_rounds:
        logger.info(f"{experiment} has done {state.last_round} rounds, max_rounds={max_rounds}: nothing to do")
        return {"experiment": experiment, "round": state.last_round, "ran": False}
    round_ = state.last_round + 1
    cfg = state.config.model_copy(update={"rounds": round_})
    logger.info(f"{experiment}: round {round_} from the round-{state.last_round} checkpoint {state.model.path}")
    steps.preflight(cfg)
    progress = RoundProgress(experiment, state.last_round, max_rounds or round_)
    try:
        east_round(cfg, round_, state.model, data_in_store(cfg))
    finally:
        release_generator()
    progress.update(round_)
    publish_results(cfg)
    return {"experiment": experiment, "round": round_, "ran": True}


@flow(name="east-evaluate", flow_run_name="evaluate-{checkpoint}")
def evaluate_checkpoint(
    checkpoint: str,
    preset: PresetName = "tiny",
    source: SourceName | None = None,
    data_path: str | None = None,
    test_size: TestSize | None = None,
    backend: EngineName = _BACKEND.engine,
    data_dir: str = str(DEFAULT_DATA_DIR),
) -> dict:
    """Greedy accuracy, pass@1, pass@k and maj@k of one checkpoint on a dataset's test split (cached like every step).

    Args:
        checkpoint: EXPERIMENT:ROUND for a checkpoint in the store, or a model directory or hub name.
        preset: Evaluation and backend settings (east_tasks/config/presets.py); the dataset fields below override it.
        source: Dataset: arith (the embedded task) or gsm8k (empty: the preset's).
        data_path: gsm8k: a hub name (openai/gsm8k) or a directory with train.jsonl / test.jsonl.
        test_size: Test questions (empty: the preset's).
        backend: Generation backend: vllm or hf (transformers generate).
        data_dir: Where the DuckDB store lives, relative to the worker's directory.
    """
    experiment, _, round_ = checkpoint.rpartition(":")
    if experiment and round_.isdigit():
        model_path = round_checkpoint(data_dir, experiment, int(round_)).model.path
    else:
        model_path = checkpoint
    cfg = checked_config(preset, experiment=f"evaluate-{artifact_key(Path(checkpoint).name)}", data_dir=data_dir,
                         base_model=model_path, data=_given(source=source, path=data_path, test_size=test_size),
                         backend={"engine": backend})
    steps.preflight(cfg)
    try:
        dataset_key = data_in_store(cfg)
        eval_key = evaluate(cfg, resolve_model(model_path), dataset_key).result().value.test
    finally:
        release_generator()
    with open_store(cfg) as store:
        row = store.evaluation(eval_key)
    result = {"checkpoint": checkpoint, "model": model_path, **row}
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    create_markdown_artifact(key=f"evaluate-{artifact_key(checkpoint)}",
                             markdown=f"### {checkpoint}\n\n| | |\n|---|---|\n{rows}",
                             description=f"Evaluation of {checkpoint}")
    return result
