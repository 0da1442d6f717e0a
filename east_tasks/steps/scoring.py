"""Reference log-probs: each sample's summed log-prob under a model (DPO / KTO's reference, the `local` baseline,
the label-free self-reward), computed once per model and generation and kept in `response_logprobs`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.engines.generation import park_generator
from east_tasks.engines.training import score_responses
from east_tasks.steps import keys
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, run_step
from east_tasks.store import Store

_SAMPLE = ["problem_id", "sample_idx"]


def response_logprobs(cfg: ExperimentConfig, model: ModelRef, gen_key: str, samples: pd.DataFrame) -> np.ndarray:
    """[rows, 2] summed log-prob and token count of each (problem_id, sample_idx) sample of `gen_key` under
    `model` (the step's value); only the samples not scored before are scored."""
    wanted = samples[_SAMPLE].drop_duplicates()
    key = keys.logprob_key(model.hash, gen_key, list(wanted.itertuples(index=False, name=None)))

    def aligned(scored: pd.DataFrame) -> np.ndarray:
        """The scores of `samples`, row by row."""
        return samples[_SAMPLE].merge(scored, on=_SAMPLE, how="left")[["logp_sum", "n_tokens"]].to_numpy(np.float64)

    def prepare(store: Store) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        """The samples' scores already stored, the samples still to score, and their prompts and texts."""
        have = store.logprobs(model.hash, gen_key)
        todo = wanted.merge(have[_SAMPLE], on=_SAMPLE, how="left", indicator=True)
        todo = todo[todo._merge == "left_only"][_SAMPLE]
        return have, todo, store.response_texts(gen_key, todo) if len(todo) else None

    def compute(ctx: StepContext) -> Output[np.ndarray]:
        have, todo, texts = ctx.prepared
        if texts is None:
            return Output(info={"scored": 0}, value=aligned(have))
        park_generator()  # free what scoring needs (an accelerator engine's memory)
        scores = score_responses(model.path, list(texts.prompt), list(texts.text), cfg.backend.max_model_len,
                                 bf16=cfg.train.bf16, trust_remote_code=cfg.backend.trust_remote_code)
        new = todo.assign(model_hash=model.hash, gen_key=gen_key, logp_sum=scores[:, 0],
                          n_tokens=scores[:, 1].astype(int))
        scored = pd.concat([have, new[have.columns]], ignore_index=True) if len(have) else new
        return Output(lambda store: store.insert_df("response_logprobs", new), {"scored": len(new)}, aligned(scored))

    def load(store: Store) -> tuple[np.ndarray, dict]:
        return aligned(store.logprobs(model.hash, gen_key)), store.step_detail(key)

    return run_step(cfg, Step("score responses", key, compute, load=load, prepare=prepare, gpu=True)).value
