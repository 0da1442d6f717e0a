"""Selection + weighting: cluster, score, label (gold or majority), filter, choose the loss's rows, weight them.

Writes clusters, question_stats, pseudo_labels, round_monitor and training_examples. For an exact-match answer
style (gsm8k, mcq, a user's with `exact_match`) with gold labels the work stays in the store
(`east_tasks.store.selection`); other styles and label-free rounds read the pool's answers (not its text) and run
the pure rules (`east_tasks.core.selection`). Both draw the same rows.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.core.answers import NO_ANSWER, answer_style, canonical_answers
from east_tasks.core.monitor import collapsed
from east_tasks.core.selection import (
    Labelled,
    accepted_responses,
    choose_rows,
    examples_frame,
    label_and_score,
    mark_drops,
    monitor_selection,
    select_examples,
    split_samples,
)
from east_tasks.core.weighting import FILTERS, assign_weights
from east_tasks.errors import UserError
from east_tasks.steps import keys
from east_tasks.steps.generation import unchecked_answers
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.steps.scoring import response_logprobs
from east_tasks.store import Store

POOL = "pool"


def select_and_weight(cfg: ExperimentConfig, gen_key: str, dataset_key: str, parent: ModelRef) -> StepResult:
    """The round's training rows from its pool generation. `parent` (the sampling model) scores responses for the
    `local` baseline and for the label-free self-reward."""
    weight_key = keys.weight_key(gen_key, keys.weighting_fields(cfg.weighting), cfg.train.loss,
                                 cfg.balance.target_correct)

    sql = in_store(cfg)

    def prepare(store: Store) -> tuple:
        if sql:  # the distinct answers and gold answers, to normalise in Python
            return store.distinct_answers(gen_key), store.distinct_gold(dataset_key, POOL)
        return store.generation_rows(gen_key, text="hash"), store.problems(dataset_key, POOL)

    def compute(ctx: StepContext) -> Output:
        unchecked = unchecked_answers()
        write = (_in_store if sql else _in_frames)(ctx, cfg, gen_key, dataset_key, weight_key, parent)
        return Output(write, unchecked())

    return run_step(cfg, Step("select+weight", weight_key, compute, prepare=prepare))


def in_store(cfg: ExperimentConfig) -> bool:
    """Whether the selection runs as SQL in the store: answers compared exactly (an exact-match style, normalised in
    Python: gsm8k, mcq, a user's), against gold."""
    style = answer_style(str(cfg.data.answer_style))
    return style.exact_match and not style.grades_responses and cfg.weighting.labels == "gold"


def _in_store(ctx: StepContext, cfg: ExperimentConfig, gen_key: str, dataset_key: str, weight_key: str,
              parent: ModelRef):
    distinct, golds = ctx.prepared
    # Each distinct answer normalised once; a cluster's answer is graded as `answers_match` grades (normalised
    # again), so an answer whose normalisation changes twice is graded alike on both paths.
    style = str(cfg.data.answer_style)
    canon = canonical_answers(distinct, style)
    answers = pd.DataFrame({"answer_key": [NO_ANSWER, *distinct], "canon": [None, *canon],
                            "graded": [None, *canonical_answers(canon, style)]})
    gold = pd.DataFrame({"answer": golds, "gold_canon": canonical_answers(golds, style)})
    # The generation's clusters are the same for every weighting: committed now, kept if present.
    ctx.commit(lambda store: store.cluster_in_sql(gen_key, dataset_key, POOL, answers, gold))
    with ctx.store() as store:
        stats = mark_drops(store.question_stats_frame(gen_key), cfg.weighting)
        rows = _draw_rows(store.kept_samples(gen_key, stats[stats.drop_reason.isna()]), cfg)
    examples = _weighted(cfg, examples_frame(rows), stats, parent, gen_key)

    def write(store: Store) -> dict:
        store.replace_rows("question_stats", "weight_key", weight_key,
                           stats.assign(weight_key=weight_key, gen_key=gen_key))
        store.monitor_in_sql(weight_key, gen_key, dataset_key, POOL, cfg.balance.target_correct)
        store.replace_rows("pseudo_labels", "weight_key", weight_key, None)
        store.replace_rows("training_examples", "weight_key", weight_key,
                           examples.assign(weight_key=weight_key, gen_key=gen_key))
        return store.selection_summary(weight_key)

    return write


def _draw_rows(batches, cfg: ExperimentConfig) -> list[tuple[str, int, bool, int | None]]:
    """The rows of each kept question, walking the questions in order with one seeded generator (as
    `select_examples` does), from samples streamed in (problem_id, sample_idx) order."""
    rng, rows = random.Random(cfg.weighting.seed), []
    current, idx, correct, wellformed = None, [], [], []

    def flush() -> None:
        if current is not None:
            right, wrong = split_samples(idx, correct, wellformed)
            rows.extend((current, *row) for row in choose_rows(right, wrong, cfg.weighting, cfg.train.loss, rng))

    for batch in batches:
        cols = batch.to_pydict()
        for pid, i, c, wf in zip(cols["problem_id"], cols["sample_idx"], cols["correct"], cols["wellformed"],
                                 strict=True):
            if pid != current:
                flush()
                current, idx, correct, wellformed = pid, [], [], []
            idx.append(i)
            correct.append(bool(c))
            wellformed.append(bool(wf))
    flush()
    return rows


def _weighted(cfg: ExperimentConfig, examples: pd.DataFrame, stats: pd.DataFrame, parent: ModelRef,
              gen_key: str) -> pd.DataFrame:
    """`examples` with their uncertainty and weight (the `local` baseline scores each row's response first)."""
    logps = (response_logprobs(cfg, parent, gen_key, examples)
             if cfg.weighting.strategy == "local" and len(examples) else None)
    return assign_weights(examples, stats, cfg.weighting, logps)


def _in_frames(ctx: StepContext, cfg: ExperimentConfig, gen_key: str, dataset_key: str, weight_key: str,
               parent: ModelRef):
    labelled, problems = label_pool(cfg, *ctx.prepared)
    monitor = monitor_selection(labelled, problems, cfg.balance.target_correct)
    preference = None
    if cfg.weighting.labels == "majority" and cfg.weighting.self_reward == "logprob":
        accepted = labelled.gens[accepted_responses(labelled)]
        scores = response_logprobs(cfg, parent, gen_key, accepted)
        preference = pd.Series(scores[:, 0] / np.maximum(scores[:, 1], 1),
                               index=pd.MultiIndex.from_frame(accepted[["problem_id", "sample_idx"]]))
    stats = labelled.stats
    examples = select_examples(labelled.gens, stats, cfg.weighting, cfg.train.loss, preference)
    examples = _weighted(cfg, examples, stats, parent, gen_key)

    def write(store: Store) -> dict:
        store.insert_df("clusters", labelled.clusters.assign(gen_key=gen_key))  # present rows are kept
        for table, rows in (("question_stats", stats.assign(gen_key=gen_key)), ("round_monitor", monitor),
                            ("pseudo_labels", labelled.labels),
                            ("training_examples", examples.assign(gen_key=gen_key))):
            store.replace_rows(table, "weight_key", weight_key, None if rows is None else
                               rows.assign(weight_key=weight_key))
        return store.selection_summary(weight_key)

    return write


def label_pool(cfg: ExperimentConfig, gens: pd.DataFrame, problems: pd.DataFrame) -> tuple[Labelled, pd.DataFrame]:
    """A pool generation's samples labelled for selection (gold or majority), drops marked, and the pool problems.
    The samples' text is read as a hash (`generation_rows(text="hash")`): the monitor only counts distinct ones."""
    labelled = label_and_score(gens, problems, cfg.weighting, cfg.data.answer_style)
    mark_drops(labelled.stats, cfg.weighting)
    return labelled, problems


_ANSWER_FORMAT = {"gsm8k": "a final '#### N' line", "math": "the final answer in \\boxed{}",
                  "mcq": "a final 'The answer is (X).' choice letter"}


def check_collapse(store: Store, cfg: ExperimentConfig, round_: int, weight_key: str) -> None:
    """Label-free rounds: refuse to train on a pool without a single answer, or on a collapsed one
    (`east_tasks.core.monitor.collapsed`). Without answers every response falls in the one no-answer cluster, so
    the entropy is 0 and the pool would read as collapsed: the prompt or the token budget is what failed. The
    training step's gate (`Step.check`), read in its look-up."""
    if cfg.weighting.labels != "majority":
        return
    responses, answered = store.pool_answers(weight_key)
    entropy, now, prev = store.label_free_state(weight_key, cfg.experiment, round_)
    if responses and not answered:
        style = str(cfg.data.answer_style)  # always set once the config is validated
        form = _ANSWER_FORMAT.get(style, "what its extract() finds")
        raise UserError(f"{cfg.experiment} round {round_}: no response had an extractable answer (answer style "
                        f"{style!r}): 0 of the pool's {responses} responses. The style extracts "
                        f"{form}: check that the prompt asks for that format (data.prompt), and "
                        f"raise sampling.max_tokens (now {cfg.sampling.max_tokens}) if responses are cut off "
                        "before it. Not training on this pool")
    if collapsed(entropy, now, prev, cfg.weighting.collapse_entropy):
        labels = "" if now is None else (f"; the pseudo-labels match gold on {now:.1%} of the labelled questions"
                                         + ("" if prev is None else f", against {prev:.1%} the round before"))
        raise UserError(f"{cfg.experiment} round {round_}: label-free self-training has collapsed: the pool's mean "
                        f"answer entropy is {entropy:.3f} bits (weighting.collapse_entropy = "
                        f"{cfg.weighting.collapse_entropy:g}){labels}. Not training on it: return to gold labels, "
                        "raise weighting.min_agreement, stop at the round before, or set "
                        "weighting.collapse_entropy=0 to train anyway")


_NO_LABEL = ("no answer was given by weighting.min_agreement of the samples (or two tied): lower it, or raise "
             "sampling.n")


def nothing_to_train_on(cfg: ExperimentConfig, reasons: dict[str, int]) -> str:
    """Why a round has no training example, filter by filter (`reasons`: questions per drop reason), and what to
    change."""
    total = sum(reasons.values())
    hint = {name: FILTERS.get(name).description for name in FILTERS} | {"no_label": _NO_LABEL}
    why = "; ".join(f"{n} {hint.get(r, r)}" for r, n in reasons.items())
    return f"{cfg.experiment}: no training examples: every one of the {total} pool questions was filtered out ({why})"
