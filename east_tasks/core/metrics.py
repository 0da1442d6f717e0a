"""Test-set metrics from stored generations: greedy accuracy, maj@k and pass@k, overall and by tier."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from east_tasks.core.answers import NO_ANSWER, answer_style, answers_match, canonical_answers, cluster_answers


def majority_answer(preds: list[str | None]) -> str | None:
    """Most common extracted answer (answerless responses never win); ties go to the first seen."""
    counts = Counter(p for p in preds if p is not None and p != NO_ANSWER)
    return counts.most_common(1)[0][0] if counts else None


@dataclass(frozen=True)
class EvalResult:
    n_questions: int
    k: int
    greedy_acc: float
    maj_acc: float | None  # None when k = 0 (greedy only)
    pass_acc: float | None
    by_tier: dict[str, dict[str, float]] = field(default_factory=dict)


def _scores(greedy: pd.DataFrame, sampled: pd.DataFrame | None, gold: dict[str, str], style: str) -> pd.DataFrame:
    """Per question: greedy correct, and with samples the majority vote's and any sample's correctness."""
    g = greedy.groupby("problem_id").correct.first()
    if sampled is None:
        return g.rename("greedy").to_frame()
    rows = []
    for pid, group in sampled.groupby("problem_id"):
        # votes go to clusters of equivalent answers (the same equivalence as the EAST clustering)
        preds = [None if pd.isna(p) else p for p in group.pred_answer]
        if answer_style(style).grades_responses:  # a check style's vote: its largest cluster's verdict
            voted = [c for c in cluster_answers(preds, gold[pid], style, verdicts=list(group.correct.astype(bool)))
                     if c.answer != NO_ANSWER]
            maj = bool(voted) and voted[0].correct
        else:
            maj = answers_match(majority_answer(canonical_answers(preds, style)), gold[pid], style)
        rows.append({"problem_id": pid, "maj": maj, "pass": bool(group.correct.any())})
    out = pd.DataFrame(rows).set_index("problem_id")
    out["greedy"] = g
    return out


def evaluate(greedy: pd.DataFrame, sampled: pd.DataFrame | None, problems: pd.DataFrame, k: int,
             style: str) -> EvalResult:
    """`greedy`: one row per question; `sampled`: k rows per question (columns problem_id, pred_answer,
    correct), or None with k = 0 (greedy only: no maj@k / pass@k). pass@k here is "any of the k samples
    correct" (the unbiased estimator with n = k). A check style's maj@k is the verdict of its largest cluster
    (`cluster_answers`; ties go to the first answer in sort order: without `extract`, failed before passed)."""
    gold = dict(zip(problems.problem_id, problems.answer, strict=True))
    scores = _scores(greedy, sampled, gold, style).join(problems.set_index("problem_id")[["tier"]])

    def metrics(s: pd.DataFrame) -> dict[str, float | None]:
        return {f"{m}_acc": float(s[m].mean()) if m in s else None for m in ("greedy", "maj", "pass")}

    by_tier = {str(t): {"n": int(len(s)), **metrics(s)} for t, s in scores.groupby("tier")}
    return EvalResult(n_questions=len(scores), k=k, **metrics(scores), by_tier=by_tier)
