"""B-STaR's monitor, majority pseudo-labels, the self-reward and the collapse rule, on hand-checked numbers."""

import pandas as pd
import pytest

from east_tasks.config import WeightingConfig
from east_tasks.core.monitor import best_candidate, collapsed, pseudo_labels, question_monitor, summarise_monitor
from east_tasks.core.selection import (
    accepted_responses,
    label_and_score,
    mark_drops,
    monitor_selection,
    select_examples,
)

GOLD = {"p": "1", "q": "2", "r": "3", "s": "4", "t": "5"}
SAMPLES = {
    "p": ["1", "1", "1", "9"],  # majority 1 (3/4): right
    "q": ["7", "7", "7", "2"],  # majority 7 (3/4): wrong
    "r": ["3", "3", "8", "8"],  # a tie: no label
    "s": ["4", "4", None, None],  # 4 holds half (answerless ones never label): right, but no well-formed wrong answer
    "t": [None, None, None, "5"],  # 5 holds a quarter: no label
}
TIERS = {"p": 1, "q": 1, "r": 2, "s": 2, "t": 2}
# Each answer's chain is one text, as on the embedded task, so a question has one distinct response per answer.
GENS = pd.DataFrame([{"problem_id": pid, "sample_idx": i, "prompt": f"Q{pid}", "text": f"chain {a}",
                      "pred_answer": a, "correct": a == GOLD[pid]}
                     for pid, answers in SAMPLES.items() for i, a in enumerate(answers)])
PROBLEMS = pd.DataFrame({"problem_id": list(GOLD), "answer": list(GOLD.values()), "tier": list(TIERS.values())})


def _labelled(labels: str, **weighting):
    cfg = WeightingConfig(labels=labels, **weighting)
    labelled = label_and_score(GENS, PROBLEMS, cfg, "gsm8k")
    mark_drops(labelled.stats, cfg)
    return cfg, labelled


def test_majority_pseudo_labels_need_agreement_and_no_tie() -> None:
    _, labelled = _labelled("majority")
    labels = labelled.labels.set_index("problem_id")
    assert labels.answer.dropna().to_dict() == {"p": "1", "q": "7", "s": "4"}
    assert labels.agreement.to_dict() == pytest.approx({"p": 0.75, "q": 0.75, "r": 0.5, "s": 0.5, "t": 0.25})
    assert labels.label_correct.dropna().to_dict() == {"p": True, "q": False, "s": True}
    stricter = pseudo_labels(labelled.clusters, PROBLEMS, min_agreement=0.75).set_index("problem_id").answer
    assert stricter.dropna().to_dict() == {"p": "1", "q": "7"}
    no_gold = pseudo_labels(labelled.clusters, PROBLEMS.assign(answer=""), 0.5)
    assert no_gold.label_correct.isna().all()  # nothing to check the labels against


def test_label_free_selection_trains_on_the_majority_with_unchanged_entropy() -> None:
    cfg, labelled = _labelled("majority")
    _, gold = _labelled("gold")
    stats = labelled.stats.set_index("problem_id")
    assert stats.entropy.to_dict() == pytest.approx(gold.stats.set_index("problem_id").entropy.to_dict())
    assert stats.entropy["p"] == pytest.approx(0.8112781)  # H(3/4, 1/4)
    assert stats.drop_reason.fillna("kept").to_dict() == {"p": "kept", "q": "kept", "r": "no_label",
                                                          "s": "no_wellformed_incorrect", "t": "no_label"}
    assert gold.stats.set_index("problem_id").drop_reason.fillna("kept").to_dict() == {
        "p": "kept", "q": "kept", "r": "kept", "s": "no_wellformed_incorrect", "t": "no_wellformed_incorrect"}
    examples = select_examples(labelled.gens, labelled.stats, cfg)
    text = GENS.set_index(["problem_id", "sample_idx"]).text  # rows name their samples
    responses = [text[(p, i)] for p, i in zip(examples.problem_id, examples.sample_idx, strict=True)]
    assert dict(zip(examples.problem_id, responses, strict=True)) == {"p": "chain 1", "q": "chain 7"}
    assert labelled.gens.gold_correct.tolist() == GENS.correct.tolist()  # gold kept beside the pseudo-labels


def test_monitor_label_free_hand_checked() -> None:
    _, labelled = _labelled("majority")
    per_question = question_monitor(labelled.gens.assign(correct=labelled.gens.gold_correct),
                                    accepted_responses(labelled), target_correct=2).set_index("problem_id")
    # p: 3 accepted, all "chain 1": min(1/2, 1) * 1/3; q's accepted are all wrong; r, s, t: nothing accepted
    assert per_question.balance.to_dict() == pytest.approx({"p": 1 / 6, "q": 0, "r": 0, "s": 0, "t": 0})
    overall, tier1, tier2 = summarise_monitor(per_question.reset_index(), PROBLEMS, labelled.labels).to_dict("records")
    assert overall == pytest.approx({"tier": "all", "questions": 5, "pass_at_n": 1.0, "distinct_correct": 1.0,
                                     "kept_questions": 2, "accepted": 6, "precision": 0.5, "recall": 3 / 9,
                                     "balance": 1 / 30, "labelled": 3, "label_accuracy": 2 / 3})
    assert (tier1["tier"], tier1["label_accuracy"], tier1["precision"]) == ("1", 0.5, 0.5)
    assert (tier2["tier"], tier2["labelled"], tier2["label_accuracy"]) == ("2", 1, 1.0)
    assert pd.isna(tier2["precision"]) and tier2["accepted"] == 0  # nothing accepted: no precision


def test_monitor_gold_labels_hand_checked() -> None:
    _, labelled = _labelled("gold")
    overall = monitor_selection(labelled, PROBLEMS, target_correct=2).iloc[0].to_dict()
    # p 1/6, q min(1/2, 1) * 1/1, r min(1/2, 1) * 1/2 (two copies of one chain), s and t dropped
    assert overall["balance"] == pytest.approx((1 / 6 + 1 / 2 + 1 / 4) / 5)
    assert overall["precision"] == 1.0 and overall["recall"] == pytest.approx(6 / 9) and overall["accepted"] == 6
    assert pd.isna(overall["labelled"]) and pd.isna(overall["label_accuracy"])


def test_self_reward_picks_the_most_likely_response_of_the_label() -> None:
    cfg, labelled = _labelled("majority", self_reward="logprob")
    accepted = labelled.gens[accepted_responses(labelled)]
    assert list(zip(accepted.problem_id, accepted.sample_idx, strict=True)) == [("p", 0), ("p", 1), ("p", 2),
                                                                                ("q", 0), ("q", 1), ("q", 2)]
    preference = pd.Series([-3.0, -1.0, -2.0, -0.5, -0.5, -0.1],
                           index=pd.MultiIndex.from_frame(accepted[["problem_id", "sample_idx"]]))
    examples = select_examples(labelled.gens, labelled.stats, cfg, preference=preference)
    assert list(zip(examples.problem_id, examples.sample_idx, strict=True)) == [("p", 1), ("q", 2)]
    every = select_examples(labelled.gens, labelled.stats, cfg.model_copy(update={"responses_per_question": "all"}),
                            preference=preference)
    assert list(every.sample_idx) == [1, 2, 0, 2, 0, 1]  # best first; q's tie keeps sample order


@pytest.mark.parametrize(("entropy", "accuracy", "before", "expected"), [
    (0.01, 0.5, 0.6, True),  # agreement on nearly everything while the labels get worse
    (0.01, 0.7, 0.6, False),  # confident and getting better: sharpening, not collapse
    (0.30, 0.1, 0.9, False),  # still diverse
    (0.05, 0.5, 0.6, True),  # at the threshold
    (0.01, None, None, True),  # no gold: agreement alone
    (0.01, 0.5, None, True),  # round 1: nothing to compare with
])
def test_collapse_rule(entropy: float, accuracy: float | None, before: float | None, expected: bool) -> None:
    assert collapsed(entropy, accuracy, before, threshold=0.05) is expected


def test_best_candidate_is_the_first_highest() -> None:
    assert best_candidate(pd.DataFrame({"balance": [0.1, 0.3, 0.3, 0.2]})) == 1


def test_monitor_measures_what_needs_gold_on_the_questions_that_have_it() -> None:
    problems = PROBLEMS.assign(answer=PROBLEMS.answer.where(PROBLEMS.problem_id != "t", ""))  # t: unlabelled data
    gens = GENS.assign(correct=GENS.correct & (GENS.problem_id != "t"))
    cfg = WeightingConfig(labels="majority")
    labelled = label_and_score(gens, problems, cfg, "gsm8k")
    mark_drops(labelled.stats, cfg)
    overall = monitor_selection(labelled, problems, target_correct=2).iloc[0]
    assert overall.questions == 5 and overall.pass_at_n == 1.0  # over p, q, r, s
    assert overall.recall == pytest.approx(3 / 8) and overall.balance == pytest.approx(1 / 6 / 4)
    assert overall.label_accuracy == pytest.approx(2 / 3)
    nothing = label_and_score(gens.assign(correct=False), problems.assign(answer=""), cfg, "gsm8k")
    mark_drops(nothing.stats, cfg)
    unlabelled = monitor_selection(nothing, problems.assign(answer=""), target_correct=2).iloc[0]
    assert unlabelled[["pass_at_n", "precision", "recall", "balance", "label_accuracy"]].isna().all()
    assert unlabelled.labelled == 3 and unlabelled.accepted == 6  # what needs no gold is still counted
