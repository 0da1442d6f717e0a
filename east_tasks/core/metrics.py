"""Test-set metrics from stored generations, overall and by tier: greedy accuracy, and from n samples per question
sampled pass@1 (± its standard error), pass@k (Chen et al. 2021's unbiased estimator) and maj@k, as verl,
lighteval and prime-rl report them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from east_tasks.core.answers import (
    CHECK_FAILED,
    CHECK_PASSED,
    NO_ANSWER,
    answer_style,
    answers_match,
    canonical_answers,
)


def majority_answer(preds: list[str | None]) -> str | None:
    """Most common extracted answer (answerless responses never win); ties go to the first seen."""
    counts = Counter(p for p in preds if p is not None and p != NO_ANSWER)
    return counts.most_common(1)[0][0] if counts else None


def prefix_majorities(preds: list[str | None]) -> list[str | None]:
    """`majority_answer(preds[:k])` for k = 1..len(preds), in one pass: when one answer's count grows, it takes the
    lead from the leader if it now has more votes, or as many and was seen first."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    leader: str | None = None
    out = []
    for i, p in enumerate(preds):
        if p is not None and p != NO_ANSWER:
            counts[p] += 1
            first_seen.setdefault(p, i)
            if leader is None or (counts[p], -first_seen[p]) > (counts[leader], -first_seen[leader]):
                leader = p
        out.append(leader)
    return out


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: int) -> np.ndarray:
    """The unbiased estimate of pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating Large
    Language Models Trained on Code"): 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i) (no
    huge binomials). Element-wise over questions; each k <= n. It is 1 where c > n - k (a factor is 1 - k/k)."""
    n, c = np.broadcast_arrays(np.asarray(n), np.asarray(c))
    if k < 1 or (n < k).any() or (c < 0).any() or (c > n).any():
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n (k={k})")
    terms = np.arange(c.max(initial=0))  # term j of a question is i = n - c + 1 + j, for j < c
    i = (n - c + 1)[..., None] + terms
    factors = np.where(terms < c[..., None], 1.0 - k / i, 1.0)
    return 1.0 - factors.prod(axis=-1)


@dataclass(frozen=True)
class EvalResult:
    n_questions: int
    n: int  # samples per question (eval.n); 0 = greedy only
    greedy_acc: float
    maj_acc: float | None  # maj@n; None when n = 0 (greedy only)
    pass_acc: float | None  # pass@n: any of the n samples correct
    pass1: float | None = None  # sampled pass@1: mean over questions of c / n
    pass1_se: float | None = None  # its standard error over questions (None below two questions)
    pass_at_k: dict[int, float] = field(default_factory=dict)  # every k in 1..n
    maj_at_k: dict[int, float] = field(default_factory=dict)  # every k in 1..n
    by_tier: dict[str, dict] = field(default_factory=dict)  # the same per tier, and "n": its questions


def _scores(greedy: pd.DataFrame, sampled: pd.DataFrame | None, gold: dict[str, str], style: str) -> pd.DataFrame:
    """Per question: greedy correct; with samples, their count n, the correct ones c, and whether the majority
    vote of the first k samples is right ("maj_k" for k = 1..n)."""
    g = greedy.groupby("problem_id").correct.first()
    if sampled is None:
        return g.rename("greedy").to_frame()
    rows = []
    for pid, group in sampled.groupby("problem_id"):  # a group is in sample order (Store.generation_rows)
        # votes go to clusters of equivalent answers (the same equivalence as the EAST clustering); a prefix of
        # the canonical answers is the prefix's own (an answer's representative is an earlier answer)
        canon = canonical_answers([None if pd.isna(p) else p for p in group.pred_answer], style)
        if answer_style(style).grades_responses:
            maj = _check_votes(canon, list(group.correct.astype(bool)), answer_style(style).extract is not None)
        else:
            majorities = prefix_majorities(canon)
            right = {m: answers_match(m, gold[pid], style) for m in set(majorities)}
            maj = [right[m] for m in majorities]
        rows.append({"problem_id": pid, "n": len(group), "c": int(group.correct.sum()),
                     **{f"maj_{k}": ok for k, ok in enumerate(maj, start=1)}})
    out = pd.DataFrame(rows).set_index("problem_id")
    out["greedy"] = g
    return out


def _check_votes(canon: list[str | None], verdicts: list[bool], extracts: bool) -> list[bool]:
    """A check style's majority vote of the first k responses, k = 1..n, as it clusters them
    (`east_tasks.core.answers.cluster_answers`): on their answers, right when one of the first k responses giving
    the winning answer passed; or, without `extract`, on their verdicts (passed or failed). Ties go to the first
    seen."""
    keys = canon if extracts else [CHECK_PASSED if v else CHECK_FAILED for v in verdicts]
    return [m is not None and any(v for key, v in zip(keys[:k], verdicts[:k], strict=True) if key == m)
            for k, m in enumerate(prefix_majorities(keys), start=1)]


def _metrics(s: pd.DataFrame, n: int) -> dict:
    """One set of questions' metrics. pass1_se is the standard error of pass@1 as a mean over questions: the
    sample standard deviation (ddof 1) of the per-question c / n, over sqrt(questions). It covers both which
    questions were drawn and which samples each got."""
    out: dict = {"greedy_acc": float(s.greedy.mean())}
    if not n:
        return out | {"maj_acc": None, "pass_acc": None}
    per_question = s.c / s.n
    pass_at = {k: float(pass_at_k(s.n.to_numpy(), s.c.to_numpy(), k).mean()) for k in range(1, n + 1)}
    maj_at = {k: float(s[f"maj_{k}"].mean()) for k in range(1, n + 1)}
    se = float(per_question.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else None
    return out | {"maj_acc": maj_at[n], "pass_acc": pass_at[n], "pass1": float(per_question.mean()),
                  "pass1_se": se, "pass_at_k": pass_at, "maj_at_k": maj_at}


def evaluate(greedy: pd.DataFrame, sampled: pd.DataFrame | None, problems: pd.DataFrame, n: int,
             style: str) -> EvalResult:
    """`greedy`: one row per question; `sampled`: n rows per question in sample order (columns problem_id,
    pred_answer, correct), or None with n = 0 (greedy only: no sampled metrics). pass@k and maj@k are given for
    every k in 1..n, so which of them a report shows (eval.ks) needs nothing computed again. A check style votes
    as it clusters (`_check_votes`)."""
    gold = dict(zip(problems.problem_id, problems.answer, strict=True))
    scores = _scores(greedy, sampled, gold, style).join(problems.set_index("problem_id")[["tier"]])
    by_tier = {str(t): {"n": int(len(s)), **_metrics(s, n)} for t, s in scores.groupby("tier")}
    return EvalResult(n_questions=len(scores), n=n, **_metrics(scores, n), by_tier=by_tier)
