"""From a round's labelled samples to its training rows: the EAST data step as pure functions of DataFrames.

Per question: cluster the n responses by answer, compute H, A (fraction correct) and R (share of the most
common wrong answer) (`east_tasks.core.weighting`), apply the authors' filters, and choose the training rows for
the loss. "Correct" is against the gold answer, or, in label-free rounds, against the majority answer
(`label_and_score`). The store runs the same rules in SQL for the gsm8k style (`east_tasks.store.selection`);
`tests/test_selection_sql.py` holds the two to the same rows and floats.

Rows per kept question, C its correct and W its incorrect responses (well-formed ones only, when there
are any), both shuffled with the weighting seed (C ordered by the self-reward instead, when there is one):
  sft: one random correct response (or all of C with `responses_per_question="all"`).
  dpo: pairs (C[i % |C|], W[i % |W|]) for i < min(max_pairs, max(|C|, |W|)): every response is used once
       before any repeats; a question without an incorrect response gives no pair.
  kto: the first min(max_pairs, |C|) of C as desirable and min(max_pairs, |W|) of W as undesirable singles.
A row names its samples (problem_id, sample_idx, and the rejected one's rejected_idx); their text stays in the store.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from east_tasks.core.answers import Cluster, answers_match_many, cluster_answers
from east_tasks.core.monitor import pseudo_labels, question_monitor, summarise_monitor
from east_tasks.core.weighting import WeightingOptions, drop_reasons, stats_frame, stats_row

EXAMPLE_COLUMNS = ["problem_id", "sample_idx", "label", "rejected_idx"]
Row = tuple[int, bool, int | None]  # (sample_idx, label, rejected_idx) of one training row


class SelectionOptions(WeightingOptions, Protocol):
    """What the selection reads of `weighting` (east_tasks.config.WeightingConfig)."""

    labels: str
    min_agreement: float
    responses_per_question: str
    max_pairs_per_question: int
    seed: int


def cluster_and_score(gens: pd.DataFrame, problems: pd.DataFrame, style: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster rows and per-question stats (without filtering) for every question with generations, question by
    question with `cluster_answers` (math style: math-verify's equivalence, bounded in time; a check style: with
    the responses' verdicts, `gens.correct`)."""
    gold = dict(zip(problems.problem_id, problems.answer, strict=True))
    cluster_rows, stat_rows = [], []
    for pid, group in gens.groupby("problem_id", sort=True):
        preds = [None if pd.isna(p) else p for p in group.pred_answer]
        clusters = cluster_answers(preds, gold[pid], style, verdicts=list(group.correct.astype(bool)))
        cluster_rows += [{"problem_id": pid, "answer": c.answer, "size": c.size, "correct": c.correct}
                         for c in clusters]
        stat_rows.append(stats_row(pid, clusters))
    return pd.DataFrame(cluster_rows, columns=["problem_id", "answer", "size", "correct"]), stats_frame(stat_rows)


def stats_from_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    """Per-question stats of clusters (problem_id, answer, size, correct), largest cluster first."""
    rows = []
    for pid, group in clusters.groupby("problem_id", sort=True):
        ordered = sorted((Cluster(a, int(s), bool(c)) for a, s, c in zip(group.answer, group["size"], group.correct,
                                                                            strict=True)),
                         key=lambda c: (-c.size, c.answer))
        rows.append(stats_row(pid, ordered))
    return stats_frame(rows)


@dataclass(frozen=True)
class Labelled:
    """A round's samples as the selection sees them: `gens.correct` against the gold answer, or against the
    pseudo-label in label-free mode (`labels`: one row per question, `east_tasks.core.monitor.pseudo_labels`), and
    the clusters and per-question stats that go with it; `gens.gold_correct` is against gold whatever the labels."""

    gens: pd.DataFrame
    clusters: pd.DataFrame  # graded against gold, whatever the labels
    stats: pd.DataFrame
    labels: pd.DataFrame | None = None


def label_and_score(gens: pd.DataFrame, problems: pd.DataFrame, cfg: SelectionOptions, style: str) -> Labelled:
    """Clusters and stats against gold; with `cfg.labels = "majority"` the majority answer replaces the gold
    one for selection: the clusters are the same, the pseudo-label's cluster is the "correct" one, and a response
    is pseudo-correct when its answer matches the pseudo-label."""
    clusters, stats = cluster_and_score(gens, problems, style)
    gens = gens.assign(gold_correct=gens.correct.astype(bool))
    if cfg.labels == "gold":
        return Labelled(gens, clusters, stats)
    labels = pseudo_labels(clusters, problems, cfg.min_agreement)
    label_of = labels.set_index("problem_id").answer
    pseudo = clusters.assign(correct=clusters.answer.eq(clusters.problem_id.map(label_of)).to_numpy())
    row_label = gens.problem_id.map(label_of)
    has = row_label.notna().to_numpy()
    correct = np.zeros(len(gens), dtype=bool)
    if has.any():
        preds = [None if pd.isna(p) else p for p in gens.pred_answer[has]]
        correct[has] = answers_match_many(preds, list(row_label[has]), style)
    return Labelled(gens.assign(correct=correct), clusters, stats_from_clusters(pseudo), labels)


def mark_drops(stats: pd.DataFrame, cfg: SelectionOptions) -> pd.DataFrame:
    """Adds `drop_reason` (None = kept) to `stats` in place; label-free questions without a label are `no_label`."""
    stats["drop_reason"] = drop_reasons(stats, cfg)
    if cfg.labels == "majority":
        stats.loc[stats.drop_reason == "no_correct", "drop_reason"] = "no_label"
    return stats


def accepted_responses(labelled: Labelled) -> pd.Series:
    """Per row of `labelled.gens` (drops marked): whether the selection accepts it, i.e. it is (pseudo-)correct
    and its question is kept. The loss trains on some of these (`select_examples`)."""
    kept = set(labelled.stats.problem_id[labelled.stats.drop_reason.isna()])
    return labelled.gens.correct.astype(bool) & labelled.gens.problem_id.isin(kept)


def monitor_selection(labelled: Labelled, problems: pd.DataFrame, target_correct: int) -> pd.DataFrame:
    """B-STaR's monitor (`east_tasks.core.monitor`) of what the selection accepts from a labelled pool, against
    gold, overall and by tier."""
    per_question = question_monitor(labelled.gens.assign(correct=labelled.gens.gold_correct),
                                    accepted_responses(labelled), target_correct)
    return summarise_monitor(per_question, problems, labelled.labels)


def choose_rows(correct: list[int], wrong: list[int], cfg: SelectionOptions, loss: str, rng: random.Random,
                ranked: bool = False) -> list[Row]:
    """One kept question's training rows from its correct and (well-formed, where any) wrong samples, in sample
    order, or `correct` best first when `ranked` (a self-reward's order). Draws from `rng` in a fixed sequence,
    so every path that walks the questions in order draws the same rows."""
    correct = list(correct)
    if loss == "sft":
        if cfg.responses_per_question == "all":
            return [(i, True, None) for i in correct]
        return [(correct[0] if ranked else correct[rng.randrange(len(correct))], True, None)]
    wrong = list(wrong)
    if not ranked:
        rng.shuffle(correct)
    rng.shuffle(wrong)
    if loss == "dpo":
        n = min(cfg.max_pairs_per_question, max(len(correct), len(wrong))) if wrong else 0
        return [(correct[i % len(correct)], True, wrong[i % len(wrong)]) for i in range(n)]
    return ([(i, True, None) for i in correct[: cfg.max_pairs_per_question]]
            + [(i, False, None) for i in wrong[: cfg.max_pairs_per_question]])


def split_samples(sample_idx: list[int], correct: list[bool], wellformed: list[bool]) -> tuple[list[int], list[int]]:
    """A question's correct samples and the wrong ones the loss may reject: the well-formed wrong ones, where any."""
    right = [i for i, c in zip(sample_idx, correct, strict=True) if c]
    wrong = [(i, w) for i, c, w in zip(sample_idx, correct, wellformed, strict=True) if not c]
    wellformed_wrong = [i for i, w in wrong if w]
    return right, wellformed_wrong or [i for i, _ in wrong]


def examples_frame(rows: list[tuple[str, int, bool, int | None]]) -> pd.DataFrame:
    """(problem_id, sample_idx, label, rejected_idx) rows, numbered in order."""
    examples = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS).astype({"rejected_idx": "Int64"})
    examples.insert(0, "example_idx", range(len(examples)))
    return examples


def select_examples(gens: pd.DataFrame, stats: pd.DataFrame, cfg: SelectionOptions, loss: str = "sft",
                    preference: pd.Series | None = None) -> pd.DataFrame:
    """Kept questions' training rows for `loss` (no weights yet). Adds `drop_reason` to `stats` in place.
    `preference` (a score per (problem_id, sample_idx) of the correct responses, higher better) picks the correct
    response(s) best first instead of at random: Sharpening's self-reward."""
    mark_drops(stats, cfg)
    kept = set(stats.problem_id[stats.drop_reason.isna()])
    rng = random.Random(cfg.seed)
    rows = []
    for pid, group in gens.sort_values(["problem_id", "sample_idx"]).groupby("problem_id", sort=True):
        if pid not in kept:
            continue
        right, wrong = split_samples(list(group.sample_idx), list(group.correct.astype(bool)),
                                     list(group.pred_answer.notna()))
        if preference is not None:  # the self-reward's order, best first (ties keep sample order)
            right.sort(key=lambda i, pid=pid: -preference[(pid, i)])
        rows += [(pid, *row) for row in choose_rows(right, wrong, cfg, loss, rng, ranked=preference is not None)]
    return examples_frame(rows)
