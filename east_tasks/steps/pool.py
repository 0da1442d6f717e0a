"""A round's pool generation: n samples per question, or an adaptive budget (`sampling.adaptive`).

Adaptive, the pool is two steps, each with its key and committed chunk by chunk: a first pass, a plain generation of
n0 samples per question, then the top-up (`keys.topup_key`), which tops up the questions the first pass left
undecided (`east_tasks.core.budget`). The top-up's generation holds every sample of the pool, the first pass's
copied in with each chunk, so the selection reads one generation with each question's own count, as it reads a
fixed-n pool. Its samples are numbered on from n0 and seeded so that, on vLLM, sample i of a question is the one a
fixed-n pool draws at i (`generation.sample_chunk`); the transformers backend seeds a batch, not a sample, so there
they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.core.budget import sample_counts
from east_tasks.engines import generation as engines
from east_tasks.engines.generation import SampleSpec, get_generator
from east_tasks.progress import progress
from east_tasks.steps import keys
from east_tasks.steps.generation import generate, prompter_for, sample_chunk, unchecked_answers, write_chunk
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.steps.selection import POOL
from east_tasks.store import Store


def sample_pool(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, round_: int, spec: SampleSpec,
                run_shards: Callable[[list[dict]], str] | None = None) -> StepResult:
    """Round `round_`'s pool sampled by `model` with `spec`; the result's key is the generation the selection reads
    (adaptive: the top-up's, its parts the first pass and the top-up)."""
    seed, step = cfg.sampling.seed + round_, f"generate pool round {round_}"
    if not cfg.sampling.adaptive:
        return generate(cfg, model, dataset_key, POOL, spec, seed, step, run_shards=run_shards)
    first = generate(cfg, model, dataset_key, POOL, replace(spec, n=cfg.sampling.n0), seed, step,
                     run_shards=run_shards)
    rest = top_up(cfg, model, dataset_key, spec, seed, first.key, f"top up pool round {round_}")
    return StepResult.of(step, [first, rest], None)


def top_up(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, spec: SampleSpec, seed: int, first_key: str,
           step: str) -> StepResult:
    """The undecided questions of first pass `first_key` topped up to their count (`core.budget.sample_counts`),
    chunk by chunk, each chunk's first-pass samples copied in with its new ones. Logs the pool's samples (`rows`,
    both passes), the new ones, and the questions stopped early and topped up."""
    s = cfg.sampling
    prompter = prompter_for(cfg, model.path)
    spec = replace(spec, stop=prompter.stop)
    key = keys.topup_key(first_key, spec.n, s.max_n, s.stop_none_correct)

    def prepare(store: Store) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
        return store.problems(dataset_key, POOL), store.correct_counts(first_key), store.generated_questions(key)

    def compute(ctx: StepContext) -> Output:
        unchecked = unchecked_answers()
        problems, first, done = ctx.prepared
        counts = sample_counts(first.n_correct.to_numpy(), s.n0, spec.n, s.max_n, s.stop_none_correct)
        plan = problems.assign(count=problems.problem_id.map(dict(zip(first.problem_id, counts, strict=True))))
        todo = plan[~plan.problem_id.isin(done)]
        generator: engines.Generator | None = None
        engine = {}
        for start in progress(range(0, len(todo), s.chunk_size), desc=step, unit="chunk"):
            chunk = todo.iloc[start:start + s.chunk_size]
            more = chunk[chunk["count"] > s.n0]
            if len(more) and generator is None:
                generator = get_generator(model.path, cfg.backend)
                engine = {"engine": engines.last_engine_event}
            sampled = [sample_chunk(cfg, key, generator, prompter, group, replace(spec, n=int(count) - s.n0), seed,
                                    s.n0) for count, group in more.groupby("count")]
            ctx.commit(partial(_write_chunk, first_key=first_key, key=key, ids=list(chunk.problem_id),
                               sampled=sampled))
        with ctx.store() as store:
            (rows, tokens), (first_rows, first_tokens) = map(store.generation_totals, (key, first_key))
        stopped = int((plan["count"] == s.n0).sum())
        return Output(info={"rows": rows, "new_samples": rows - first_rows, "stopped_early": stopped,
                            "topped_up": len(plan) - stopped, "resumed_questions": len(done), **engine,
                            **unchecked()}, tokens_generated=tokens - first_tokens)

    return run_step(cfg, Step(step, key, compute, prepare=prepare, gpu=True,
                              running_detail=lambda prepared: {"resumed_questions": len(prepared[2])}))


def _write_chunk(store: Store, first_key: str, key: str, ids: list[str],
                 sampled: list[tuple[pd.DataFrame, pd.DataFrame]]) -> None:
    """A top-up chunk: its questions' first-pass samples and its new ones, in one transaction."""
    store.copy_samples(first_key, key, ids)
    for prompts, rows in sampled:
        write_chunk(store, prompts, rows)
