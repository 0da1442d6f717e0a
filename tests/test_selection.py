import math

import numpy as np
import pandas as pd
import pytest

from east_tasks.config import WeightingConfig
from east_tasks.core.selection import cluster_and_score, select_examples
from east_tasks.core.weighting import assign_weights


def _gens(rows: dict[str, list[str | None]], gold: dict[str, str]) -> pd.DataFrame:
    out = []
    for pid, preds in rows.items():
        for i, p in enumerate(preds):
            out.append({"problem_id": pid, "sample_idx": i, "prompt": f"Q{pid}", "text": f"r{pid}{i} #### {p}",
                        "pred_answer": p, "correct": p == gold[pid]})
    return pd.DataFrame(out)


GOLD = {"a": "1", "b": "2", "c": "3", "d": "4"}
GENS = _gens(
    {
        "a": ["1", "1", "9", "9"],  # H = 1 bit, kept
        "b": ["2", "7", "8", "9"],  # H = 2 bits, kept
        "c": ["3", "3", "3", "3"],  # all correct: dropped
        "d": ["5", "5", None, "6"],  # no correct: dropped
    },
    GOLD,
)
PROBLEMS = pd.DataFrame({"problem_id": list(GOLD), "answer": list(GOLD.values())})


def _texts(ex: pd.DataFrame, gens: pd.DataFrame, column: str = "sample_idx") -> list[str | None]:
    """The text of each row's sample (`column`: the chosen one, or `rejected_idx`): rows name samples."""
    text = gens.set_index(["problem_id", "sample_idx"]).text
    return [None if pd.isna(i) else text[(p, int(i))] for p, i in zip(ex.problem_id, ex[column], strict=True)]


def test_stats_and_filters() -> None:
    clusters, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    assert len(clusters) == 2 + 4 + 1 + 3
    select_examples(GENS, stats, WeightingConfig())
    by_id = stats.set_index("problem_id")
    assert by_id.entropy.to_dict() == pytest.approx({"a": 1.0, "b": 2.0, "c": 0.0, "d": 1.5})
    reasons = by_id.drop_reason.fillna("kept").to_dict()
    assert reasons == {"a": "kept", "b": "kept", "c": "all_correct", "d": "no_correct"}


@pytest.mark.parametrize(("a", "expected"), [(0.0, [1.0, 1.0]), (1.0, [2 / 3, 4 / 3]), (2.0, [0.4, 1.6])])
def test_one_correct_response_per_kept_question_weighted_by_entropy(a: float, expected: list[float]) -> None:
    _, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    cfg = WeightingConfig(a=a)
    ex = assign_weights(select_examples(GENS, stats, cfg), stats, cfg)
    assert list(ex.problem_id) == ["a", "b"]
    responses = _texts(ex, GENS)
    assert "#### 1" in responses[0] and "#### 2" in responses[1]
    assert list(ex.weight) == pytest.approx(expected)
    assert ex.weight.mean() == pytest.approx(1.0)


def test_all_correct_responses_option_and_exp_mapping() -> None:
    _, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    cfg = WeightingConfig(a=math.log(2), mapping="exp", responses_per_question="all")
    ex = assign_weights(select_examples(GENS, stats, cfg), stats, cfg)
    assert list(ex.problem_id) == ["a", "a", "b"]
    # exp(ln2 * H): a -> 2, b -> 4; normalised over the 3 examples (mean 8/3)
    assert list(ex.weight) == pytest.approx([0.75, 0.75, 1.5])


def test_dpo_pairs_use_every_response_once_before_repeating() -> None:
    _, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    cfg = WeightingConfig(a=1.0)
    ex = assign_weights(select_examples(GENS, stats, cfg, loss="dpo"), stats, cfg)
    a, b = ex[ex.problem_id == "a"], ex[ex.problem_id == "b"]
    # a: 2 correct x 2 wrong -> 2 pairs, each response once; b: 1 correct x 3 wrong -> 3 pairs
    assert sorted(a.sample_idx) == [0, 1] and sorted(a.rejected_idx) == [2, 3]
    assert list(b.sample_idx) == [0, 0, 0] and sorted(b.rejected_idx) == [1, 2, 3]
    assert all(f"#### {GOLD[p]}" in r for p, r in zip(ex.problem_id, _texts(ex, GENS), strict=True))
    assert not any(f"#### {GOLD[p]}" in r for p, r in zip(ex.problem_id, _texts(ex, GENS, "rejected_idx"),
                                                          strict=True))
    # entropy 1 (a) and 2 (b) bits over 5 rows: raw [1, 1, 2, 2, 2], mean 8/5
    assert list(ex.weight) == pytest.approx([5 / 8] * 2 + [5 / 4] * 3)
    capped = select_examples(GENS, stats, WeightingConfig(max_pairs_per_question=2), loss="dpo")
    assert capped.problem_id.value_counts().to_dict() == {"a": 2, "b": 2}


def test_kto_singles_and_wellformed_rejections() -> None:
    gens = _gens({"e": ["1", None, None, "7", "1", "7"]}, {"e": "1"})
    problems = pd.DataFrame({"problem_id": ["e"], "answer": ["1"]})
    _, stats = cluster_and_score(gens, problems, "gsm8k")
    ex = select_examples(gens, stats, WeightingConfig(), loss="kto")
    assert sorted(ex.sample_idx[ex.label]) == [0, 4]
    assert sorted(ex.sample_idx[~ex.label]) == [3, 5]  # the no-answer responses 1, 2 are not used
    assert ex.rejected_idx.isna().all()


@pytest.mark.parametrize(("strategy", "f"), [("accuracy", [0.5, 0.75]), ("rejected", [2, 3]), ("entropy", [1, 2])])
def test_baseline_uncertainties(strategy: str, f: list[float]) -> None:
    _, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    cfg = WeightingConfig(a=1.0, strategy=strategy)
    ex = assign_weights(select_examples(GENS, stats, cfg), stats, cfg)
    assert list(ex.uncertainty) == pytest.approx(f)
    assert list(ex.weight) == pytest.approx([f[0] / sum(f) * 2, f[1] / sum(f) * 2])


def test_local_uncertainty_is_minus_mean_token_logprob() -> None:
    _, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    cfg = WeightingConfig(a=1.0, strategy="local")
    ex = select_examples(GENS, stats, cfg)
    logps = np.array([[-3.0, 6], [-1.0, 4]])  # mean token log-probs -0.5 and -0.25
    ex = assign_weights(ex, stats, cfg, logps)
    assert list(ex.uncertainty) == pytest.approx([0.5, 0.25])
    assert list(ex.weight) == pytest.approx([4 / 3, 2 / 3])
    with pytest.raises(ValueError, match="local"):
        assign_weights(ex, stats, cfg)


def test_math_style_clusters_by_equivalence() -> None:
    """Three spellings of 1/2 are one cluster: H = 0.811 bits (3 of 4 agree), not 2 bits (4 distinct)."""
    gens = _gens({"m": ["\\frac{1}{2}", "0.5", "\\dfrac12", "\\frac{1}{3}"]}, {"m": "\\frac{1}{2}"})
    problems = pd.DataFrame({"problem_id": ["m"], "answer": ["1/2"]})
    clusters, stats = cluster_and_score(gens, problems, "math")
    assert clusters[["answer", "size", "correct"]].values.tolist() == [["\\frac{1}{2}", 3, True],
                                                                       ["\\frac{1}{3}", 1, False]]
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert stats.entropy[0] == pytest.approx(h) and stats.frac_correct[0] == pytest.approx(0.75)
    _, gsm8k_stats = cluster_and_score(gens, problems, "gsm8k")
    assert gsm8k_stats.entropy[0] == pytest.approx(1.5)  # gsm8k style: \dfrac12 is text, 1/2 == 0.5
