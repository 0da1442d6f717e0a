"""From clustered generations to weighted training examples (the EAST data step).

Per question: cluster the n responses by answer, compute H, A (fraction correct) and R (share of the most
common wrong answer), apply the authors' filters, build the training rows for the loss, then map the
question's uncertainty (or, for the `local` baseline, the row's own) to a weight normalised over the rows.
"Correct" is against the gold answer, or, in label-free rounds, against the majority answer (`label_and_score`).

Rows per kept question, C its correct and W its incorrect responses (well-formed ones only, when there
are any), both shuffled with the weighting seed (C ordered by the self-reward instead, when there is one):
  sft: one random correct response (or all of C with `responses_per_question="all"`).
  dpo: pairs (C[i % |C|], W[i % |W|]) for i < min(max_pairs, max(|C|, |W|)): every response is used once
       before any repeats; a question without an incorrect response gives no pair.
  kto: the first min(max_pairs, |C|) of C as desirable and min(max_pairs, |W|) of W as undesirable singles.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from east_tasks.answers import NO_ANSWER, answers_match_many, canonical_answers, check_style, cluster_answers
from east_tasks.config import WeightingConfig
from east_tasks.monitor import pseudo_labels, question_monitor, summarise_monitor
from east_tasks.weighting import drop_reason, entropy_weights, question_stats

EXAMPLE_COLUMNS = ["problem_id", "sample_idx", "prompt", "response", "label", "rejected_idx", "rejected"]


def cluster_and_score(gens: pd.DataFrame, problems: pd.DataFrame, style: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster rows and per-question stats (without filtering) for every question with generations.

    gsm8k style clusters by equal normalised answers, so DuckDB does it in one SQL pass (`_CLUSTERS_SQL`); math
    style needs math-verify's equivalence, question by question (`cluster_and_score_by_question`)."""
    if check_style(style) == "gsm8k":
        return _cluster_and_score_exact(gens, problems)
    return cluster_and_score_by_question(gens, problems, style)


# Clusters of equal canonical answers and the stats of `weighting.question_stats`, computed alike: the entropy
# sums its terms in the order `cluster_answers` sorts clusters (largest first, then by answer) with log2 as
# ln(x) / ln(2), as Python's math.log(x, 2) does, so both give the same floats (tests/test_selection.py).
_CLUSTERS_SQL = f"""
SELECT problem_id, coalesce(canon, '{NO_ANSWER}') AS answer, count(*)::BIGINT AS size,
       coalesce(bool_or(graded = gold_canon), false) AS correct
FROM gens JOIN canon USING (answer_key) JOIN gold USING (problem_id)
GROUP BY ALL ORDER BY problem_id, size DESC, answer
"""
_QUESTION_STATS_SQL = f"""
WITH q AS (SELECT problem_id, sum(size)::BIGINT AS n FROM c GROUP BY ALL)
SELECT problem_id,
       -sum((size / n) * (ln(size / n) / ln(2)) ORDER BY size DESC, answer) AS entropy,
       coalesce(sum(size) FILTER (correct), 0) / any_value(n) AS frac_correct,
       coalesce(max(size) FILTER (NOT correct), 0) / any_value(n) AS rejected_share,
       count(*)::BIGINT AS n_clusters,
       coalesce(sum(size) FILTER (correct), 0)::BIGINT AS n_correct,
       (any_value(n) - coalesce(sum(size) FILTER (correct), 0))::BIGINT AS n_incorrect,
       coalesce(sum(size) FILTER (NOT correct AND answer != '{NO_ANSWER}'), 0)::BIGINT AS n_wellformed_incorrect
FROM c JOIN q USING (problem_id) GROUP BY problem_id ORDER BY problem_id
"""


def _cluster_and_score_exact(gens: pd.DataFrame, problems: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Each distinct answer normalised once in Python (a few thousand among a million rows), the rows in SQL.
    # As in `cluster_answers`: no answer and the text NO_ANSWER share one cluster that is never correct, and a
    # cluster's answer is graded as `answers_match` grades it (normalised again).
    distinct = [p for p in gens.pred_answer.dropna().unique() if p != NO_ANSWER]
    canon = canonical_answers(distinct, "gsm8k")
    answers = pd.DataFrame({"answer_key": [NO_ANSWER, *distinct], "canon": [None, *canon],
                            "graded": [None, *canonical_answers(canon, "gsm8k")]})
    gold = pd.DataFrame({"problem_id": problems.problem_id,
                         "gold_canon": canonical_answers(list(problems.answer), "gsm8k")})
    con = duckdb.connect()
    try:
        con.register("rows", gens[["problem_id", "pred_answer"]])
        con.register("canon", answers)
        con.register("gold", gold)
        con.execute(f"CREATE TEMP VIEW gens AS SELECT problem_id, coalesce(pred_answer, '{NO_ANSWER}') AS "
                    "answer_key FROM rows")
        clusters = con.execute(_CLUSTERS_SQL).df()
    finally:
        con.close()
    return clusters, stats_from_clusters(clusters)


def stats_from_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    """Per-question stats of clusters (problem_id, answer, size, correct) in SQL (`_QUESTION_STATS_SQL`): those
    of the gsm8k path, and of label-free rounds' relabelled clusters."""
    con = duckdb.connect()
    try:
        con.register("c", clusters[["problem_id", "answer", "size", "correct"]])
        return con.execute(_QUESTION_STATS_SQL).df()
    finally:
        con.close()


@dataclass(frozen=True)
class Labelled:
    """A round's samples as the selection sees them: `gens.correct` against the gold answer, or against the
    pseudo-label in label-free mode (`labels`: one row per question, `east_tasks.monitor.pseudo_labels`), and the
    clusters and per-question stats that go with it; `gens.gold_correct` is against gold whatever the labels."""

    gens: pd.DataFrame
    clusters: pd.DataFrame  # graded against gold, whatever the labels
    stats: pd.DataFrame
    labels: pd.DataFrame | None = None


def label_and_score(gens: pd.DataFrame, problems: pd.DataFrame, cfg: WeightingConfig, style: str) -> Labelled:
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


def mark_drops(stats: pd.DataFrame, cfg: WeightingConfig) -> pd.DataFrame:
    """Adds `drop_reason` (None = kept) to `stats` in place; label-free questions without a label are `no_label`."""
    stats["drop_reason"] = [drop_reason(s, cfg.drop_all_correct, cfg.require_wellformed_incorrect)
                            for s in stats.itertuples(index=False)]
    if cfg.labels == "majority":
        stats.loc[stats.drop_reason == "no_correct", "drop_reason"] = "no_label"
    return stats


def accepted_responses(labelled: Labelled) -> pd.Series:
    """Per row of `labelled.gens` (drops marked): whether the selection accepts it, i.e. it is (pseudo-)correct
    and its question is kept. The loss trains on some of these (`select_examples`)."""
    kept = set(labelled.stats.problem_id[labelled.stats.drop_reason.isna()])
    return labelled.gens.correct.astype(bool) & labelled.gens.problem_id.isin(kept)


def monitor_selection(labelled: Labelled, problems: pd.DataFrame, target_correct: int) -> pd.DataFrame:
    """B-STaR's monitor (`east_tasks.monitor`) of what the selection accepts from a labelled pool, against gold,
    overall and by tier."""
    per_question = question_monitor(labelled.gens.assign(correct=labelled.gens.gold_correct),
                                    accepted_responses(labelled), target_correct)
    return summarise_monitor(per_question, problems, labelled.labels)


def cluster_and_score_by_question(gens: pd.DataFrame, problems: pd.DataFrame,
                                  style: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The general path: `cluster_answers` and `question_stats` for each question in turn."""
    gold = dict(zip(problems.problem_id, problems.answer, strict=True))
    cluster_rows, stat_rows = [], []
    for pid, group in gens.groupby("problem_id", sort=False):
        preds = [None if pd.isna(p) else p for p in group.pred_answer]
        clusters = cluster_answers(preds, gold[pid], style)
        stats = question_stats(clusters)
        cluster_rows += [{"problem_id": pid, "answer": c.answer, "size": c.size, "correct": c.correct}
                         for c in clusters]
        stat_rows.append({"problem_id": pid, **stats.__dict__})
    return pd.DataFrame(cluster_rows), pd.DataFrame(stat_rows)


def _row(r: pd.Series, label: bool = True, rejected: pd.Series | None = None) -> dict:
    return {"problem_id": r.problem_id, "sample_idx": r.sample_idx, "prompt": r.prompt, "response": r.text,
            "label": label, "rejected_idx": None if rejected is None else rejected.sample_idx,
            "rejected": None if rejected is None else rejected.text}


def _question_rows(group: pd.DataFrame, cfg: WeightingConfig, loss: str, rng: random.Random,
                   preference: pd.Series | None) -> list[dict]:
    correct = [r for _, r in group[group.correct].iterrows()]
    if preference is not None:  # the self-reward's order, best first (ties keep sample order)
        correct.sort(key=lambda r: -preference[(r.problem_id, r.sample_idx)])
    if loss == "sft":
        if cfg.responses_per_question == "all":
            return [_row(r) for r in correct]
        return [_row(correct[0] if preference is not None else correct[rng.randrange(len(correct))])]
    wrong = group[~group.correct]
    wellformed = wrong[wrong.pred_answer.notna()]
    wrong = [r for _, r in (wellformed if len(wellformed) else wrong).iterrows()]
    if preference is None:
        rng.shuffle(correct)
    rng.shuffle(wrong)
    if loss == "dpo":
        n = min(cfg.max_pairs_per_question, max(len(correct), len(wrong))) if wrong else 0
        return [_row(correct[i % len(correct)], rejected=wrong[i % len(wrong)]) for i in range(n)]
    return ([_row(r, True) for r in correct[: cfg.max_pairs_per_question]]
            + [_row(r, False) for r in wrong[: cfg.max_pairs_per_question]])


def select_examples(gens: pd.DataFrame, stats: pd.DataFrame, cfg: WeightingConfig, loss: str = "sft",
                    preference: pd.Series | None = None) -> pd.DataFrame:
    """Kept questions' training rows for `loss` (no weights yet). Adds `drop_reason` to `stats` in place.
    `preference` (a score per (problem_id, sample_idx) of the correct responses, higher better) picks the correct
    response(s) best first instead of at random: Sharpening's self-reward."""
    mark_drops(stats, cfg)
    kept = set(stats.problem_id[stats.drop_reason.isna()])
    rng = random.Random(cfg.seed)
    rows = []
    for pid, group in gens.sort_values(["problem_id", "sample_idx"]).groupby("problem_id", sort=True):
        if pid in kept:
            rows += _question_rows(group, cfg, loss, rng, preference)
    examples = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)
    examples.insert(0, "example_idx", range(len(examples)))
    return examples


def uncertainty(examples: pd.DataFrame, stats: pd.DataFrame, strategy: str,
                response_logps: np.ndarray | None = None) -> np.ndarray:
    """Each row's f: EAST's answer entropy, or a baseline's measure (higher = less certain).

    local: minus the mean token log-prob of the row's own response under the sampling model
    (`response_logps`: [rows, 2] summed log-prob and token count); accuracy: 1 - fraction correct;
    rejected: number of incorrect responses to the question.
    """
    q = stats.set_index("problem_id").loc[examples.problem_id]
    if strategy == "entropy":
        f = q.entropy
    elif strategy == "accuracy":
        f = 1.0 - q.frac_correct
    elif strategy == "rejected":
        f = q.n_incorrect
    elif strategy == "local":
        if response_logps is None or len(response_logps) != len(examples):
            raise ValueError("the 'local' strategy needs the log-prob of every example's response")
        f = -response_logps[:, 0] / np.maximum(response_logps[:, 1], 1)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: entropy, local, accuracy, rejected")
    return np.asarray(f, dtype=np.float64)


def assign_weights(examples: pd.DataFrame, stats: pd.DataFrame, cfg: WeightingConfig,
                   response_logps: np.ndarray | None = None) -> pd.DataFrame:
    """Adds `uncertainty` and `weight` (mapped with `cfg.a`, normalised to mean 1 over the rows)."""
    f = uncertainty(examples, stats, cfg.strategy, response_logps)
    return examples.assign(uncertainty=f, weight=entropy_weights(f, cfg.a, cfg.mapping, cfg.eps))
