import pandas as pd
import pytest

from east_tasks.core.metrics import evaluate, majority_answer


def test_majority_answer_ignores_missing_answers() -> None:
    assert majority_answer([None, None, None, "3", "4", "3"]) == "3"
    assert majority_answer([None, None]) is None


def test_greedy_maj_pass_by_tier() -> None:
    problems = pd.DataFrame({"problem_id": ["p", "q", "r"], "answer": ["1", "2", "3"], "tier": [1, 1, 2]})
    greedy = pd.DataFrame({"problem_id": ["p", "q", "r"], "pred_answer": ["1", "5", None],
                           "correct": [True, False, False]})
    sampled_preds = {"p": ["1", "1", "9", None], "q": ["7", "7", "2", "7"], "r": ["4", "4", "4", "4"]}
    sampled = pd.DataFrame([{"problem_id": pid, "pred_answer": p, "correct": p == g}
                            for pid, g in zip("pqr", "123", strict=True) for p in sampled_preds[pid]])
    res = evaluate(greedy, sampled, problems, k=4, style="gsm8k")
    assert (res.n_questions, res.k) == (3, 4)
    assert res.greedy_acc == pytest.approx(1 / 3)
    assert res.maj_acc == pytest.approx(1 / 3)  # only p's majority is right
    assert res.pass_acc == pytest.approx(2 / 3)  # p and q have a correct sample
    assert res.by_tier["1"] == {"n": 2, "greedy_acc": 0.5, "maj_acc": 0.5, "pass_acc": 1.0}
    assert res.by_tier["2"] == {"n": 1, "greedy_acc": 0.0, "maj_acc": 0.0, "pass_acc": 0.0}
    greedy_only = evaluate(greedy, None, problems, k=0, style="gsm8k")  # k = 0: no maj@k / pass@k to claim
    assert (greedy_only.greedy_acc, greedy_only.maj_acc, greedy_only.pass_acc) == (res.greedy_acc, None, None)
    assert greedy_only.by_tier["1"] == {"n": 2, "greedy_acc": 0.5, "maj_acc": None, "pass_acc": None}


def test_majority_vote_counts_equivalent_math_answers_together() -> None:
    problems = pd.DataFrame({"problem_id": ["p"], "answer": ["\\frac{1}{2}"], "tier": [5]})
    greedy = pd.DataFrame({"problem_id": ["p"], "pred_answer": ["0.5"], "correct": [True]})
    # 2 x "3" against 1/2 spelled three ways: the plain string vote picks 3, the equivalence vote picks 1/2
    preds = ["3", "0.5", "3", "\\frac{1}{2}", "\\dfrac{1}{2}"]
    sampled = pd.DataFrame({"problem_id": ["p"] * 5, "pred_answer": preds, "correct": [p != "3" for p in preds]})
    assert majority_answer(preds) == "3"
    assert evaluate(greedy, sampled, problems, k=5, style="math").maj_acc == 1.0
