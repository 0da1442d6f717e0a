import math

import numpy as np
import pytest

from east_tasks.core.answers import cluster_answers
from east_tasks.core.weighting import (
    cluster_entropy,
    drop_reason,
    entropy_weights,
    map_uncertainty,
    question_stats,
)


def test_cluster_entropy_hand_values() -> None:
    assert cluster_entropy([8]) == 0.0
    assert cluster_entropy([4, 4]) == pytest.approx(1.0)
    assert cluster_entropy([2, 1, 1]) == pytest.approx(1.5)
    assert cluster_entropy([1] * 8) == pytest.approx(3.0)  # log2(n) at most
    assert cluster_entropy([4, 4], base=math.e) == pytest.approx(math.log(2))


def test_power_mapping_normalised_to_mean_one() -> None:
    f = np.array([1.0, 0.5, 1.5])
    np.testing.assert_allclose(entropy_weights(f, a=1.0), [1.0, 0.5, 1.5])
    # a=2: [1, .25, 2.25] / mean(3.5/3)
    np.testing.assert_allclose(entropy_weights(f, a=2.0), [6 / 7, 1.5 / 7, 13.5 / 7])
    np.testing.assert_allclose(entropy_weights(f, a=0.0), [1.0, 1.0, 1.0])  # vanilla
    # a<0 favours confident (low-entropy) questions
    w = entropy_weights(f, a=-1.0)
    assert w[1] > w[0] > w[2] and w.mean() == pytest.approx(1.0)


def test_power_mapping_clamps_zero_entropy() -> None:
    raw = map_uncertainty(np.array([0.0, 1.0]), a=1.0, eps=1e-3)
    np.testing.assert_allclose(raw, [1e-3, 1.0])


def test_exp_mapping() -> None:
    w = entropy_weights(np.array([0.0, math.log(2)]), a=1.0, mapping="exp")  # [1, 2] / 1.5
    np.testing.assert_allclose(w, [2 / 3, 4 / 3])


def test_unknown_mapping_rejected() -> None:
    with pytest.raises(ValueError, match="allowed: 'power', 'exp'"):
        map_uncertainty(np.ones(2), 1.0, mapping="linear")  # type: ignore[arg-type]


def test_question_stats_hand_values() -> None:
    # gold 5: clusters 5 x4, 7 x3, no-answer x1
    stats = question_stats(cluster_answers(["5", "5", "7", None, "7", "7", "5", "5"], gold="5", style="gsm8k"))
    expected_h = -(0.5 * math.log2(0.5) + 0.375 * math.log2(0.375) + 0.125 * math.log2(0.125))
    assert stats.entropy == pytest.approx(expected_h)  # 1.4056
    assert stats.frac_correct == 0.5
    assert stats.rejected_share == 0.375
    assert (stats.n_clusters, stats.n_correct, stats.n_wellformed_incorrect) == (3, 4, 3)


def test_drop_reasons_follow_the_authors_filters() -> None:
    def reason(preds, **kw):
        kw = {"drop_all_correct": True, "require_wellformed_incorrect": True, **kw}
        return drop_reason(question_stats(cluster_answers(preds, gold="1", style="gsm8k")), **kw)

    assert reason(["2", "3", None]) == "no_correct"
    assert reason(["1", "1", "1"]) == "all_correct"
    assert reason(["1", "1", "1"], drop_all_correct=False) is None
    assert reason(["1", None, None]) == "no_wellformed_incorrect"
    assert reason(["1", None, None], require_wellformed_incorrect=False) is None
    assert reason(["1", "2", None]) is None
