"""B-STaR's exploration / exploitation monitor, and the pseudo-labels of label-free self-training.

Exploration (can the model still produce diverse correct answers?) is pass@n of a round's n samples per question
and the number of distinct correct responses; exploitation (does the selection still tell good responses from
bad?) is the precision and recall, against gold, of the responses the selection accepts (every correct response
of a kept question, pseudo-correct ones in label-free mode; the loss then trains on some of them). B-STaR (Zeng
et al., "B-STaR: Monitoring and Balancing Exploration and Exploitation in Self-Taught Reasoners", arXiv
2412.17256, §4) scores their balance per question i as

    balance_i = min(n'_i / n*, 1) * n'_i / n_i

with n_i the responses the selection accepts for question i, n'_i the distinct correct ones among them and n*
the distinct correct responses a question should give (`balance.target_correct`); a question the selection
accepts nothing of scores 0, and a round's score is the mean over its questions. The first factor rewards
exploration (enough distinct correct answers), the second exploitation (little that is wrong or repeated).
"""

from __future__ import annotations

import pandas as pd

from east_tasks.core.answers import NO_ANSWER

MONITOR_COLUMNS = ["tier", "questions", "pass_at_n", "distinct_correct", "kept_questions", "accepted", "precision",
                   "recall", "balance", "labelled", "label_accuracy"]


def has_gold(problems: pd.DataFrame) -> pd.Series:
    """Per problem_id: whether the question has a gold answer (an unlabelled pool question's answer is "")."""
    return problems.set_index("problem_id").answer.fillna("").astype(str).str.strip() != ""


def pseudo_labels(clusters: pd.DataFrame, problems: pd.DataFrame, min_agreement: float) -> pd.DataFrame:
    """Per question of `clusters` (problem_id, answer, size, correct against gold): the majority answer when it
    holds at least `min_agreement` of the samples and no other answer is as common (a tie labels nothing), else
    None. `agreement` is the most common answer's share (answerless responses count in the total, never as an
    answer); `label_correct` whether the label is the gold answer (NA without a label or without gold)."""
    total = clusters.groupby("problem_id", sort=True)["size"].sum()
    answered = clusters[clusters.answer != NO_ANSWER].sort_values(["problem_id", "size"], ascending=[True, False],
                                                                 kind="stable")
    ranked = answered.assign(rank=answered.groupby("problem_id").cumcount())
    first = ranked[ranked["rank"] == 0].set_index("problem_id").reindex(total.index)
    second = ranked[ranked["rank"] == 1].set_index("problem_id")["size"].reindex(total.index).fillna(0)
    agreement = (first["size"] / total).fillna(0.0)
    labelled = (agreement >= min_agreement) & (first["size"] > second)
    gold_known = has_gold(problems).reindex(total.index, fill_value=False)
    return pd.DataFrame({
        "problem_id": total.index,
        "answer": [a if ok else None for a, ok in zip(first.answer, labelled, strict=True)],
        "agreement": agreement.to_numpy(),
        "label_correct": first.correct.where(labelled & gold_known).astype("boolean").to_numpy(),
    })


def question_monitor(gens: pd.DataFrame, accepted: pd.Series, target_correct: int) -> pd.DataFrame:
    """Per question: gold-correct responses, distinct correct responses, responses the selection accepts, how many
    of those are correct (and distinct), and B-STaR's balance score. `gens` has problem_id, text and `correct`
    (against gold); `accepted` is aligned with its rows."""
    correct = gens.correct.astype(bool)
    rows = pd.DataFrame({"problem_id": gens.problem_id, "correct": correct, "accepted": accepted.to_numpy(dtype=bool),
                         "correct_text": gens.text.astype(str).str.strip().where(correct)})
    rows["hit_text"] = rows.correct_text.where(rows.accepted)
    q = rows.groupby("problem_id", sort=True).agg(
        n_correct=("correct", "sum"), distinct_correct=("correct_text", "nunique"), n_accepted=("accepted", "sum"),
        hits=("hit_text", "count"), distinct_hits=("hit_text", "nunique"))
    share = q.distinct_hits / q.n_accepted.where(q.n_accepted > 0)
    q["balance"] = (q.distinct_hits / target_correct).clip(upper=1.0) * share.fillna(0.0)
    return q.reset_index()


def summarise_monitor(per_question: pd.DataFrame, problems: pd.DataFrame,
                      labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """The round's monitor, overall ("all") and by tier: pass@n, mean distinct correct responses, kept questions,
    accepted responses, precision and recall of the accepted ones, the mean balance score and, with pseudo-labels,
    how many questions got one and how often it is the gold answer. What needs gold is measured on the questions
    that have it (an unlabelled pool has none: those are None)."""
    q = per_question.merge(problems[["problem_id", "tier"]], on="problem_id", how="left")
    q["has_gold"] = q.problem_id.map(has_gold(problems)).fillna(False).astype(bool)
    if labels is not None:
        q = q.merge(labels[["problem_id", "answer", "label_correct"]], on="problem_id", how="left")
    groups = [("all", q), *((str(int(t)), g) for t, g in q.dropna(subset=["tier"]).groupby("tier"))]
    rows = []
    for tier, every in groups:
        g = every[every.has_gold]
        checked = len(g) > 0
        row = {"tier": tier, "questions": len(every),
               "pass_at_n": float((g.n_correct > 0).mean()) if checked else None,
               "distinct_correct": float(g.distinct_correct.mean()) if checked else None,
               "kept_questions": int((every.n_accepted > 0).sum()), "accepted": int(every.n_accepted.sum()),
               "precision": float(g.hits.sum() / g.n_accepted.sum()) if g.n_accepted.sum() else None,
               "recall": float(g.hits.sum() / g.n_correct.sum()) if g.n_correct.sum() else None,
               "balance": float(g.balance.mean()) if checked else None, "labelled": None, "label_accuracy": None}
        if labels is not None:
            row["labelled"] = int(every.answer.notna().sum())
            graded = every.label_correct.dropna()
            row["label_accuracy"] = float(graded.astype(bool).mean()) if len(graded) else None
        rows.append(row)
    return pd.DataFrame(rows, columns=MONITOR_COLUMNS)


def collapsed(mean_entropy: float, label_accuracy: float | None, previous_accuracy: float | None,
              threshold: float) -> bool:
    """Label-free collapse (EMPO, arXiv 2504.05812; arXiv 2505.21444): the samples agree on nearly everything
    (mean answer entropy at most `threshold` bits) while the pseudo-labels get worse than the round before; where
    there is no gold, or no round before, agreement alone. A pool without a single answer has entropy 0 (one
    no-answer cluster) but has not collapsed: its caller tells it apart first (steps.selection.check_collapse)."""
    if mean_entropy > threshold:
        return False
    return label_accuracy is None or previous_accuracy is None or label_accuracy < previous_accuracy


def best_candidate(scores: pd.DataFrame) -> int:
    """The index of the probed candidate with the highest balance score; a tie goes to the one listed first."""
    return int(scores.balance.to_numpy().argmax())
