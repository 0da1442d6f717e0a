"""Before the rounds: checks that need the filesystem, the embedded backbone, and the data into the store."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.core.answers import answer_style
from east_tasks.data.sources import load_splits
from east_tasks.data.validation import LengthLimits
from east_tasks.errors import EnvironmentFault, UserError
from east_tasks.models.bootstrap import BootstrapConfig, bootstrap_backbone
from east_tasks.models.checks import check_max_model_len, check_model_dir, context_length, read_config
from east_tasks.paths import BACKBONE_DIR
from east_tasks.report import tracking
from east_tasks.steps import keys
from east_tasks.steps.experiments import check_experiment
from east_tasks.steps.generation import prompter_for
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.store import Store


def preflight(cfg: ExperimentConfig) -> None:
    """Checks that need the filesystem, before anything expensive: the base model is where it is said to
    be, the trackers asked for are installed, and an experiment name means one configuration (only `rounds`
    may grow), so results never mix."""
    check_data_dir(cfg)
    check_answer_style(cfg)
    tracking.check_trackers(cfg)
    if (local := local_model_dir(cfg.base_model)) is not None:  # a hub name cannot be checked offline
        embedded = local.resolve() == BACKBONE_DIR.resolve()  # its weights are rebuilt when missing (ensure_backbone)
        check_model_dir(local, weights=not embedded or (local / "model.safetensors").exists())
        _check_free_disk(cfg, sum(f.stat().st_size for f in local.glob("*.safetensors")))
    check_experiment(cfg)  # claimed (atomically) once the data is in: flows/self_train.py


def check_data_dir(cfg: ExperimentConfig) -> None:
    """The data dir can be created and written, and so can the store file in it: a path that cannot work (under
    /proc, on a read-only file system, not a directory) is one line (exit 3) before anything starts, not a
    traceback from the first write."""
    where, doing = cfg.data_dir, "created"
    try:
        where.mkdir(parents=True, exist_ok=True)
        doing = "written"
        with tempfile.TemporaryFile(dir=where):
            pass
        if cfg.store.url is None and cfg.store_path.exists():
            os.close(os.open(cfg.store_path, os.O_RDWR))  # opening for writing fails on a read-only file system
    except OSError as err:
        raise EnvironmentFault(f"data_dir {where} cannot be {doing}: {err.strerror or err} "
                               f"({err.filename or where}); give --data-dir a directory this user can write, on a "
                               "writable file system") from None


def check_answer_style(cfg: ExperimentConfig) -> None:
    """The answer style loads (a user's is imported here: a `UserError` in one line if it cannot be), and suits the
    rounds: label-free ones vote on the responses' answers, which a style that only checks responses has none of."""
    style = answer_style(str(cfg.data.answer_style))
    if cfg.weighting.labels == "majority" and style.extract is None:
        raise UserError(f"weighting.labels=majority votes on the responses' answers, and answer style "
                        f"{cfg.data.answer_style!r} extracts none (it only gives check(response, gold)): give the "
                        "style an extract(response) too, or use weighting.labels=gold")


def _check_free_disk(cfg: ExperimentConfig, model_bytes: int) -> None:
    """A round writes a checkpoint the size of the model (float32: up to twice a bf16 base) beside its temp copy:
    refuse at the start a disk that cannot hold one, rather than fail after the round's sampling and training."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    free, need = shutil.disk_usage(cfg.data_dir).free, 2 * model_bytes + 100_000_000
    if free < need:
        raise EnvironmentFault(f"disk full: {free / 1e6:.0f} MB free on the file system of data_dir {cfg.data_dir}, "
                               f"and a round needs about {need / 1e6:.0f} MB (a checkpoint of the model, the "
                               "store's rows); free some (`east gc --delete` removes checkpoints nothing uses) or "
                               "give another --data-dir")


def local_model_dir(model: str) -> Path | None:
    """The model's directory, or None for a hub name."""
    path = Path(model).expanduser()
    return path if model.startswith(("/", "./", "../", "~")) or path.is_dir() else None


def length_limits(cfg: ExperimentConfig) -> LengthLimits:
    """What every prompt must fit, read from the base model: its prompts as generation builds them, counted with its
    tokenizer as the engine counts them, within backend.max_model_len, which may not exceed the model's context."""
    from transformers import AutoTokenizer, PreTrainedConfig

    base, local = cfg.base_model, local_model_dir(cfg.base_model)
    config = read_config(local) if local is not None else PreTrainedConfig.get_config_dict(base)[0]
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=cfg.backend.trust_remote_code)
    except Exception as err:  # a local tokenizer that fails to load is the user's to fix (a hub's may be the network)
        if local is None:
            raise
        why = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        raise UserError(f"base_model {base!r}: its tokenizer does not load ({why})") from err
    check_max_model_len(base, cfg.backend.max_model_len, context_length(config, tokenizer.model_max_length))
    try:
        prompter = prompter_for(cfg, base, tokenizer)  # the tokenizer read once
    except ValueError as err:  # data.prompt = chat for a tokenizer without a chat template
        raise UserError(str(err)) from err

    def count(prompts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(prompts)["input_ids"]]  # with special tokens, as vLLM's renderer

    evaluated = (cfg.eval.max_tokens, "eval.max_tokens")
    return LengthLimits(prompter, count, cfg.backend.max_model_len, {
        "pool": (cfg.sampling.max_tokens, "sampling.max_tokens"), "validation": evaluated, "test": evaluated})


def ensure_backbone(cfg: ExperimentConfig) -> StepResult:
    """Rebuilds the embedded backbone if the experiment starts from it and its weights are missing (~10 min). Its
    files are the result (`hash_dir` keys everything downstream): the committed ones are found without a done mark,
    and a rebuild is recorded with what it cost. Another base model has nothing to build: found."""
    weights = BACKBONE_DIR / "model.safetensors"
    embedded = Path(cfg.base_model).resolve() == BACKBONE_DIR.resolve()

    def compute(ctx: StepContext) -> Output:
        manifest = bootstrap_backbone(BACKBONE_DIR, BootstrapConfig())
        return Output(info={"model_hash": manifest["model_hash"], "final_loss": round(manifest["final_loss"], 4)})

    return run_step(cfg, Step("backbone", keys.backbone_key(asdict(BootstrapConfig())), compute,
                              found=lambda: not embedded or weights.exists(),
                              invalid=lambda store: None if weights.exists() else f"{weights} is missing"))


def prepare_data(cfg: ExperimentConfig) -> StepResult:
    """The splits into the store; the data is checked first (`east_tasks.data.validation`; the prompts' lengths
    against the base model's, `length_limits`), and rows dropped under data.on_invalid = "skip" are recorded in
    `data_findings` with where they were and why."""
    key, splits, dropped = load_splits(cfg.data, pool_gold_required=cfg.weighting.labels == "gold",
                                       lengths=length_limits(cfg))
    info = {**{s: len(df) for s, df in splits.items()},
            **({"dropped": dict(Counter(f.kind for f in dropped))} if dropped else {})}

    def write(store: Store) -> None:
        store.execute("DELETE FROM problems WHERE dataset_key = ?", [key])
        for split, df in splits.items():
            store.insert_df("problems", df.assign(dataset_key=key, split=split, idx=range(len(df))))
        store.replace_rows("data_findings", "dataset_key", key, pd.DataFrame(
            [(key, f.where, f.kind, f.detail) for f in dropped],
            columns=["dataset_key", "location", "kind", "detail"]) if dropped else None)

    return run_step(cfg, Step("data", key, lambda ctx: Output(write, info), load=lambda store: (None, info)))

