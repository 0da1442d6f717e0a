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
    res = evaluate(greedy, sampled, problems, n=4, style="gsm8k")
    assert (res.n_questions, res.n) == (3, 4)
    assert res.greedy_acc == pytest.approx(1 / 3)
    assert res.maj_acc == pytest.approx(1 / 3)  # only p's majority is right
    assert res.pass_acc == pytest.approx(2 / 3)  # p and q have a correct sample
    # c / n per question: p 2/4, q 1/4, r 0/4; mean 0.25, sample sd 0.25, SE 0.25 / sqrt(3)
    assert (res.pass1, res.pass1_se) == (pytest.approx(0.25), pytest.approx(0.25 / 3 ** 0.5))
    # pass@2 = 1 - C(n-c, 2) / C(4, 2): p 1 - 1/6, q 1 - 3/6, r 0; pass@3: p 1 (c > n - k), q 1 - 1/4, r 0
    assert res.pass_at_k == pytest.approx({1: 0.25, 2: (5 / 6 + 1 / 2) / 3, 3: 1.75 / 3, 4: 2 / 3})
    assert res.maj_at_k == pytest.approx({k: 1 / 3 for k in (1, 2, 3, 4)})  # p's first sample is right already
    tier1 = res.by_tier["1"]  # p and q
    assert {m: tier1[m] for m in ("n", "greedy_acc", "maj_acc", "pass_acc")} == {"n": 2, "greedy_acc": 0.5,
                                                                                 "maj_acc": 0.5, "pass_acc": 1.0}
    # c / n (0.5, 0.25): mean 0.375, sample sd 0.25 / sqrt(2), SE that over sqrt(2)
    assert (tier1["pass1"], tier1["pass1_se"]) == (pytest.approx(0.375), pytest.approx(0.125))
    assert tier1["pass_at_k"] == pytest.approx({1: 0.375, 2: (5 / 6 + 1 / 2) / 2, 3: 1.75 / 2, 4: 1.0})
    assert tier1["maj_at_k"] == {k: 0.5 for k in (1, 2, 3, 4)}
    assert res.by_tier["2"] == {"n": 1, "greedy_acc": 0.0, "maj_acc": 0.0, "pass_acc": 0.0, "pass1": 0.0,
                                "pass1_se": None, "pass_at_k": {k: 0.0 for k in (1, 2, 3, 4)},
                                "maj_at_k": {k: 0.0 for k in (1, 2, 3, 4)}}  # one question: no SE
    greedy_only = evaluate(greedy, None, problems, n=0, style="gsm8k")  # n = 0: no sampled metrics to claim
    assert (greedy_only.greedy_acc, greedy_only.maj_acc, greedy_only.pass_acc) == (res.greedy_acc, None, None)
    assert (greedy_only.pass1, greedy_only.pass1_se, greedy_only.pass_at_k) == (None, None, {})
    assert greedy_only.by_tier["1"] == {"n": 2, "greedy_acc": 0.5, "maj_acc": None, "pass_acc": None}


def test_majority_vote_counts_equivalent_math_answers_together() -> None:
    problems = pd.DataFrame({"problem_id": ["p"], "answer": ["\\frac{1}{2}"], "tier": [5]})
    greedy = pd.DataFrame({"problem_id": ["p"], "pred_answer": ["0.5"], "correct": [True]})
    # 2 x "3" against 1/2 spelled three ways: the plain string vote picks 3, the equivalence vote picks 1/2
    preds = ["3", "0.5", "3", "\\frac{1}{2}", "\\dfrac{1}{2}"]
    sampled = pd.DataFrame({"problem_id": ["p"] * 5, "pred_answer": preds, "correct": [p != "3" for p in preds]})
    assert majority_answer(preds) == "3"
    assert evaluate(greedy, sampled, problems, n=5, style="math").maj_acc == 1.0


def test_reports_give_pass_and_maj_at_the_ks_each_round_recorded(tmp_path) -> None:
    """The store holds every k in 1..n; a round's records show its configuration's eval.ks (a configuration
    recorded with eval.k, eval.n's old name, the default ks of n), overall and in each tier."""
    import json

    from east_tasks.config import load_config
    from east_tasks.report.frames import round_results, to_records
    from east_tasks.store import Store

    cfg = load_config("tiny-test", experiment="x", data_dir=tmp_path, eval={"ks": [1, 4]})
    old = json.loads(cfg.model_dump_json())
    old["eval"] = {"k": 4, "temperature": 0.8, "max_tokens": 96, "seed": 1234}
    at = {"pass_at_k": {"1": 0.45, "2": 0.6, "3": 0.7, "4": 0.8}, "maj_at_k": {"1": 0.45, "2": 0.4, "3": 0.5, "4": 0.6}}
    tier = {"n": 90, "greedy_acc": 0.5, "maj_acc": 0.6, "pass_acc": 0.8, "pass1": 0.45, "pass1_se": 0.05, **at}
    with Store(cfg.store_path) as store:
        for round_, config in enumerate((cfg.model_dump_json(), json.dumps(old))):
            store.insert_row("evaluations", {"eval_key": f"e{round_}", "k": 4, "n_questions": 90, "greedy_acc": 0.5,
                                             "maj_acc": 0.6, "pass_acc": 0.8, "pass1": 0.45, "pass1_se": 0.05,
                                             "by_tier": json.dumps({"1": tier}),
                                             **{c: json.dumps(v) for c, v in at.items()}})
            store.record_round("x", round_, eval_key=f"e{round_}", config=config, model_hash=f"m{round_}")
        first, second = to_records(round_results(store, "x"))
    assert (first["pass1"], first["pass1_se"]) == (0.45, 0.05)
    assert (first["pass_at_k"], first["maj_at_k"]) == ({1: 0.45, 4: 0.8}, {1: 0.45, 4: 0.6})  # eval.ks (1, 4)
    assert first["by_tier"]["1"]["pass_at_k"] == {1: 0.45, 4: 0.8}
    assert (second["pass_at_k"], second["maj_at_k"]) == ({1: 0.45, 2: 0.6, 4: 0.8}, {1: 0.45, 2: 0.4, 4: 0.6})
