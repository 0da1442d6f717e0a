"""Training: the parent fine-tuned on a selection's weighted rows into a checkpoint directory, verified by hash."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.engines.generation import park_generator
from east_tasks.engines.launch import train_with_torchrun
from east_tasks.engines.training import NonFiniteTraining, train_weighted
from east_tasks.errors import UserError
from east_tasks.io import hash_dir, writer_may_be_alive
from east_tasks.paths import stored_checkpoint_path
from east_tasks.report import tracking
from east_tasks.steps import keys
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.steps.scoring import response_logprobs
from east_tasks.steps.selection import check_collapse, nothing_to_train_on
from east_tasks.store import Store

log = logging.getLogger(__name__)


def _score_references(cfg: ExperimentConfig, parent: ModelRef, rows_by_gen: dict[str, pd.DataFrame]) -> None:
    """DPO / KTO: the parent's (the reference model's) log-prob of every response the rows train on or reject."""
    for gen_key, rows in rows_by_gen.items():
        samples = pd.concat([rows[["problem_id", "sample_idx"]],
                             rows.dropna(subset=["rejected_idx"])[["problem_id", "rejected_idx"]]
                             .rename(columns={"rejected_idx": "sample_idx"})], ignore_index=True)
        response_logprobs(cfg, parent, gen_key, samples.astype({"sample_idx": int}))


def non_finite_message(cfg: ExperimentConfig, ckpt_key: str, err: NonFiniteTraining) -> str:
    """The one line for a training that stopped on a NaN or infinite number: which step, where, and what to change
    (the learning rate is the usual cause; it is part of the experiment's configuration, hence a new name)."""
    return (f"{cfg.experiment}: train [{ckpt_key}] stopped: {err}; nothing was saved: lower train.lr (now "
            f"{cfg.train.lr:g}) and run it under a new --experiment name")


def train(cfg: ExperimentConfig, parent: ModelRef, weight_key: str, round_: int) -> StepResult[ModelRef]:
    """Round `round_`'s fine-tune of `parent` on the examples of `weight_key` (and, with `train.accumulate`, first
    on those of the rounds that trained `parent`). Label-free, the collapse gate refuses a pool before anything is
    trained (`check_collapse`). The step's value is the new model."""
    earlier_keys = list(parent.weight_keys) if cfg.train.accumulate else []
    weight_keys = [*earlier_keys, weight_key]
    ckpt_key = keys.checkpoint_key(parent.hash, weight_key, keys.train_fields(cfg.train), earlier_keys)
    out_dir = cfg.checkpoint_dir / ckpt_key
    trained_on = (*parent.weight_keys, weight_key)

    def invalid(store: Store) -> str | None:
        row = store.checkpoint(ckpt_key)
        if row is None or not out_dir.is_dir():
            return f"checkpoint {out_dir} is missing"
        if hash_dir(out_dir) != row["model_hash"]:
            return f"checkpoint {out_dir} no longer matched its stored hash {row['model_hash']}"
        return None

    def load(store: Store) -> tuple[ModelRef, dict]:
        row = store.checkpoint(ckpt_key)
        model = ModelRef(path=str(out_dir), hash=row["model_hash"], weight_keys=trained_on)
        return model, {"train_loss": round(float(row["train_loss"]), 4)}

    def prepare(store: Store) -> tuple[str | None, pd.DataFrame | None]:
        """Why there is nothing to train on (or None), and the samples DPO / KTO need reference log-probs of."""
        if not store.count("training_examples", "weight_key", weight_key):
            return nothing_to_train_on(cfg, store.drop_reasons(weight_key)), None
        return None, store.example_samples(weight_keys) if cfg.train.loss != "sft" else None

    def compute(ctx: StepContext) -> Output[ModelRef]:
        nothing, samples = ctx.prepared
        if nothing:
            raise UserError(nothing)
        for partial in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # left by a run killed while saving
            if not writer_may_be_alive(partial):  # not a concurrent run's, saving the same model
                shutil.rmtree(partial, ignore_errors=True)
        if samples is not None:  # the reference log-probs DPO / KTO need are part of what the step costs
            _score_references(cfg, parent, dict(tuple(samples.groupby("gen_key"))))
        park_generator()  # free what training needs (an accelerator engine's memory)
        with tempfile.TemporaryDirectory(prefix="east-examples-") as scratch:
            examples = Path(scratch) / "examples.arrow"
            with ctx.store() as store:
                store.write_training_rows(weight_keys, parent.hash if cfg.train.loss != "sft" else None, examples)
            with tracking.training_run(cfg, f"{cfg.experiment}-round-{round_}") as tracked:
                launch = train_with_torchrun if cfg.train.launcher == "torchrun" else train_weighted
                try:
                    summary = launch(parent.path, examples, cfg.train, out_dir, cfg.backend.max_model_len,
                                     cfg.backend.trust_remote_code, tracked)
                except NonFiniteTraining as err:
                    raise UserError(non_finite_message(cfg, ckpt_key, err)) from None
        checkpoint = {"ckpt_key": ckpt_key, "path": stored_checkpoint_path(ckpt_key),
                      "model_hash": summary["model_hash"], "parent_hash": parent.hash, "weight_key": weight_key,
                      "train_loss": summary["train_loss"], "created_at": time.time()}
        info = {"train_loss": round(summary["train_loss"], 4), "steps": summary["steps"],
                "examples": summary["n_examples"]}
        return Output(lambda store: store.upsert("checkpoints", checkpoint), info,
                      ModelRef(path=str(out_dir), hash=summary["model_hash"], weight_keys=trained_on),
                      tokens_trained=summary["tokens_trained"])

    return run_step(cfg, Step("train", ckpt_key, compute, load=load, invalid=invalid, prepare=prepare, gpu=True,
                              check=lambda store: check_collapse(store, cfg, round_, weight_key)))
