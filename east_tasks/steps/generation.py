"""Sampling: `n` responses per question of a split, graded against gold, committed chunk by chunk.

A crash loses at most one chunk: the step stays "running", and the next run samples only the questions not yet
committed. Per-question seeds make the samples independent of chunking, batching, sharding and resume points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.core.answers import extract_answers, grade_responses
from east_tasks.data.arith import steps_valid
from east_tasks.data.prompts import Prompter, make_prompter
from east_tasks.engines import generation as engines
from east_tasks.engines import grading
from east_tasks.engines.generation import SampleSpec, get_generator, release_generator
from east_tasks.engines.replicas import run_replicas
from east_tasks.faults import pause_if_asked
from east_tasks.io import fingerprint
from east_tasks.progress import progress
from east_tasks.steps import keys
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.store import Store, require_shared_store

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def prompter_for(cfg: ExperimentConfig, model_path: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Prompter:
    """The prompt builder for this data and model (the tokenizer, unless given, is read only when a chat template
    may apply)."""
    if cfg.data.prompt not in ("auto", "chat"):
        tokenizer = None
    elif tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.backend.trust_remote_code)
    return make_prompter(cfg.data.prompt, cfg.data.answer_style, cfg.data.stop, tokenizer)


def unchecked_answers() -> Callable[[], dict]:
    """A counter of answers that could not be checked in time (they count as wrong) from now on, for the
    step's log: `{"answers_unchecked": n}`, or nothing while n is 0."""
    before = sum(grading.timeouts.values())
    return lambda: {"answers_unchecked": n} if (n := sum(grading.timeouts.values()) - before) else {}


def prompt_seed(seed: int, problem_id: str) -> int:
    """Per-question seed: samples do not depend on chunking, batching or resume points."""
    return int(fingerprint([seed, problem_id]), 16) % (2**31 - 1)


def grade(preds: list[str | None], golds: list[str], style: str, texts: list[str] | None = None) -> list[bool]:
    """Each answer (a check style: each of the responses `texts`) against its gold; against no gold (an unlabelled
    pool question) it is wrong, unchecked."""
    has_gold = [bool(g.strip()) for g in golds]
    labelled = [i for i, h in enumerate(has_gold) if h]
    matched = iter(grade_responses([preds[i] for i in labelled], [golds[i] for i in labelled], style,
                                   None if texts is None else [texts[i] for i in labelled]))
    return [h and next(matched) for h in has_gold]


def sample_chunk(cfg: ExperimentConfig, gen_key: str, generator: engines.Generator, prompter: Prompter,
                 chunk: pd.DataFrame, spec: SampleSpec, seed: int, first: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk of questions sampled and graded: its prompts (once each) and its samples, numbered from `first`.
    A question's request is seeded with its seed + `first`: vLLM draws a request's sample j with its seed + j, so
    samples `first`.. are those a request from 0 draws there (an adaptive pool's top-up, `steps.pool`)."""
    style = cfg.data.answer_style
    prompts = [prompter(q) for q in chunk.question]
    outs = generator.generate(prompts, [prompt_seed(seed, p) + first for p in chunk.problem_id], spec)
    prompt_keys = [hashlib.md5(p.encode()).hexdigest() for p in prompts]
    samples = [(pid, i, pk, c, gold) for pid, pk, gold, completions in zip(
        chunk.problem_id, prompt_keys, chunk.answer, outs, strict=True) for i, c in enumerate(completions, first)]
    texts = [c.text for _, _, _, c, _ in samples]
    preds = extract_answers(texts, style)
    rows = pd.DataFrame([(gen_key, pid, i, pk, c.text, pred, c.num_tokens)
                         for (pid, i, pk, c, _), pred in zip(samples, preds, strict=True)],
                        columns=["gen_key", "problem_id", "sample_idx", "prompt_key", "text", "pred_answer",
                                 "num_tokens"])
    # graded from the Python values: pandas' string columns hold a missing answer as NaN, not None
    rows["correct"] = grade(preds, [gold for *_, gold in samples], style, texts)
    if cfg.data.source == "arith":  # the embedded task's steps can be recomputed
        question = dict(zip(chunk.problem_id, chunk.question, strict=True))
        rows["steps_valid"] = [steps_valid(question[pid], t) for pid, t in zip(rows.problem_id, texts, strict=True)]
    return pd.DataFrame({"prompt_key": prompt_keys, "prompt": prompts}).drop_duplicates("prompt_key"), rows


def write_chunk(store: Store, prompts: pd.DataFrame, rows: pd.DataFrame) -> None:
    store.insert_df("prompts", prompts)  # present prompts are kept: a key is its text's hash
    store.insert_df("generations", rows)


def generate(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, spec: SampleSpec,
             seed: int, step: str, limit: int | None = None, shard: tuple[int, int] | None = None,
             run_shards: Callable[[list[dict]], str] | None = None) -> StepResult:
    """Samples `spec.n` responses per question of `split` (its first `limit` questions, a probe). `shard=(i, n)`
    samples every n-th chunk from the i-th, so n workers can share one generation and draw exactly the batches one
    worker would. With `backend.data_parallel_size` > 1, or `sampling.shards` > 1 and a `run_shards` (a flow's:
    shards as flow runs), the shards run side by side and this step merges them."""
    prompter = prompter_for(cfg, model.path)
    spec = replace(spec, stop=prompter.stop)
    key = keys.gen_key(model.hash, dataset_key, split, spec.__dict__, seed, cfg.backend.engine, prompter.template,
                       keys.style_key(cfg.data.answer_style), limit)
    # As many sequences a chunk as a pool chunk, so evaluation fills the engine's steps too (docs/concepts/engines.md).
    per_chunk = max(1, cfg.sampling.chunk_size * cfg.sampling.n // spec.n)

    def prepare(store: Store) -> tuple[pd.DataFrame, set[str], tuple[int, int]]:
        return store.problems(dataset_key, split), store.generated_questions(key), store.generation_totals(key)

    def compute(ctx: StepContext) -> Output:
        unchecked = unchecked_answers()
        problems, done, (n_rows, tokens) = ctx.prepared
        problems = problems if limit is None else problems.head(limit)
        if shard is not None:  # whole chunks, so every batch is the one a single worker would draw
            problems = problems[np.arange(len(problems)) // per_chunk % shard[1] == shard[0]]
        todo = problems[~problems.problem_id.isin(done)]
        engine = {}
        shards, runner = _shard_plan(cfg, run_shards) if len(todo) and shard is None else (1, None)
        if runner:
            require_shared_store(cfg.store.url, f"a generation in {shards} shards (sampling.shards, "
                                                 "backend.data_parallel_size)")
            engine = {"engine": runner(_shard_jobs(cfg, model, dataset_key, split, spec, seed, step, limit, shards))}
        elif len(todo):
            generator = get_generator(model.path, cfg.backend)
            engine = {"engine": engines.last_engine_event}
            for start in progress(range(0, len(todo), per_chunk), desc=step, unit="chunk"):
                rows = sample_chunk(cfg, key, generator, prompter, todo.iloc[start:start + per_chunk], spec, seed)
                # The store is opened per chunk, so readers (`east report`) can get in between chunks.
                ctx.commit(lambda store, rows=rows: write_chunk(store, *rows))
                n_rows, tokens = n_rows + len(rows[1]), tokens + int(rows[1].num_tokens.sum())
                pause_if_asked(step)  # test hook (east_tasks/faults.py): a kill between committed chunks
        if runner:  # the shards wrote the rows
            with ctx.store() as store:
                n_rows, tokens = store.generation_totals(key)
        return Output(info={"rows": n_rows, "resumed_questions": len(done), "new_questions": len(todo), **engine,
                            **unchecked()}, tokens_generated=tokens)

    return run_step(cfg, Step(step, key if shard is None else keys.shard_key(key, *shard), compute,
                              load=lambda store: (None, {"rows": store.count("generations", "gen_key", key)}),
                              prepare=prepare, gpu=True,
                              running_detail=lambda prepared: {"resumed_questions": len(prepared[1])}))


def _shard_plan(cfg: ExperimentConfig, run_shards: Callable[[list[dict]], str] | None,
                ) -> tuple[int, Callable[[list[dict]], str] | None]:
    """How many shards a generation runs in, and what runs them (None: this process samples it whole)."""
    if run_shards and cfg.sampling.shards > 1:
        return cfg.sampling.shards, run_shards
    if cfg.backend.data_parallel_size > 1:
        return cfg.backend.data_parallel_size, partial(run_replicas, module="east_tasks.steps.shard",
                                                       tensor_parallel_size=cfg.backend.tensor_parallel_size)
    return 1, None


def _shard_jobs(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, spec: SampleSpec, seed: int,
                step: str, limit: int | None, shards: int) -> list[dict]:
    """One JSON job per shard: what `run_shard` needs, in a process or a flow run anywhere."""
    job = {"config": cfg.model_dump(mode="json"), "model": {"path": model.path, "hash": model.hash},
           "dataset_key": dataset_key, "split": split, "spec": asdict(spec), "seed": seed, "step": step,
           "limit": limit}
    return [{**job, "shard": [i, shards]} for i in range(shards)]


def run_shard(job: dict) -> None:
    """One shard of a generation (in a replica process or a shard flow run)."""
    cfg = ExperimentConfig.model_validate(job["config"])
    spec = SampleSpec(**{**job["spec"], "stop": tuple(job["spec"]["stop"] or ())})
    i, n = job["shard"]
    try:
        generate(cfg, ModelRef(**job["model"]), job["dataset_key"], job["split"], spec, job["seed"],
                 f"{job['step']} [shard {i + 1}/{n}]", job["limit"], shard=(i, n))
    finally:
        release_generator()

