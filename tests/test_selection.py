import math

import pandas as pd
import pytest

from east_tasks.config import WeightingConfig
from east_tasks.selection import cluster_and_score, select_examples


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
    ex = select_examples(GENS, stats, WeightingConfig(a=a))
    assert list(ex.problem_id) == ["a", "b"]
    assert ex.response.str.contains("#### 1").iloc[0] and ex.response.str.contains("#### 2").iloc[1]
    assert list(ex.weight) == pytest.approx(expected)
    assert ex.weight.mean() == pytest.approx(1.0)


def test_all_correct_responses_option_and_exp_mapping() -> None:
    _, stats = cluster_and_score(GENS, PROBLEMS, "gsm8k")
    ex = select_examples(GENS, stats, WeightingConfig(a=math.log(2), mapping="exp", responses_per_question="all"))
    assert list(ex.problem_id) == ["a", "a", "b"]
    # exp(ln2 * H): a -> 2, b -> 4; normalised over the 3 examples (mean 8/3)
    assert list(ex.weight) == pytest.approx([0.75, 0.75, 1.5])


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
