import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from east_tasks.config import WeightingConfig, load_config
from east_tasks.core.answers import cluster_answers
from east_tasks.core.weighting import (
    FILTERS,
    MAPPINGS,
    MEASURES,
    cluster_entropy,
    drop_reasons,
    map_uncertainty,
    normalised_weights,
    question_stats,
    stats_frame,
    stats_row,
    uncertainty,
)
from east_tasks.steps import keys


def test_cluster_entropy_hand_values() -> None:
    assert cluster_entropy([8]) == 0.0
    assert cluster_entropy([4, 4]) == pytest.approx(1.0)
    assert cluster_entropy([2, 1, 1]) == pytest.approx(1.5)
    assert cluster_entropy([1] * 8) == pytest.approx(3.0)  # log2(n) at most
    assert cluster_entropy([4, 4], base=math.e) == pytest.approx(math.log(2))


def test_power_mapping_normalised_to_mean_one() -> None:
    f = np.array([1.0, 0.5, 1.5])
    np.testing.assert_allclose(normalised_weights(f, a=1.0), [1.0, 0.5, 1.5])
    # a=2: [1, .25, 2.25] / mean(3.5/3)
    np.testing.assert_allclose(normalised_weights(f, a=2.0), [6 / 7, 1.5 / 7, 13.5 / 7])
    np.testing.assert_allclose(normalised_weights(f, a=0.0), [1.0, 1.0, 1.0])  # vanilla
    # a<0 favours confident (low-entropy) questions
    w = normalised_weights(f, a=-1.0)
    assert w[1] > w[0] > w[2] and w.mean() == pytest.approx(1.0)


def test_power_mapping_clamps_zero_entropy() -> None:
    raw = map_uncertainty(np.array([0.0, 1.0]), a=1.0, eps=1e-3)
    np.testing.assert_allclose(raw, [1e-3, 1.0])


def test_exp_mapping() -> None:
    w = normalised_weights(np.array([0.0, math.log(2)]), a=1.0, mapping="exp")  # [1, 2] / 1.5
    np.testing.assert_allclose(w, [2 / 3, 4 / 3])


def test_unknown_mapping_rejected() -> None:
    with pytest.raises(ValueError, match="unknown mapping 'linear'; allowed: power, exp"):
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
        frame = stats_frame([stats_row("q", cluster_answers(preds, gold="1", style="gsm8k"))])
        return drop_reasons(frame, SimpleNamespace(keep_pass_rate=None, **kw))[0]

    assert reason(["2", "3", None]) == "no_correct"
    assert reason(["1", "1", "1"]) == "all_correct"
    assert reason(["1", "1", "1"], drop_all_correct=False) is None
    assert reason(["1", None, None]) == "no_wellformed_incorrect"
    assert reason(["1", None, None], require_wellformed_incorrect=False) is None
    assert reason(["1", "2", None]) is None


def _options(**kw) -> SimpleNamespace:
    return SimpleNamespace(**{"drop_all_correct": True, "require_wellformed_incorrect": True, "keep_pass_rate": None,
                              **kw})


def test_pass_band_drops_outside_and_composes_with_the_authors_filters() -> None:
    # pass rates 1/8, 2/8, 4/8, 7/8, 8/8 and 0/8 over n = 8 samples, each with well-formed wrong answers
    rows = [stats_row(f"q{c}", cluster_answers(["1"] * c + ["2"] * (8 - c), gold="1", style="gsm8k"))
            for c in (1, 2, 4, 7, 8, 0)]
    frame = stats_frame(rows)
    assert list(frame.frac_correct) == [0.125, 0.25, 0.5, 0.875, 1.0, 0.0]
    assert list(drop_reasons(frame, _options())) == [None, None, None, None, "all_correct", "no_correct"]
    # band [0.2, 0.8]: 1/8 and 7/8 fall outside; the authors' filters keep naming the questions they drop first
    band = list(drop_reasons(frame, _options(keep_pass_rate=(0.2, 0.8))))
    assert band == ["outside_pass_band", None, None, "outside_pass_band", "all_correct", "no_correct"]
    # the band's edges are inside; with drop_all_correct off, an all-correct question falls outside [0.25, 0.5]
    edges = list(drop_reasons(frame, _options(keep_pass_rate=(0.25, 0.5), drop_all_correct=False)))
    assert edges == ["outside_pass_band", None, None, "outside_pass_band", "outside_pass_band", "no_correct"]
    assert list(FILTERS)[-1] == "outside_pass_band"


def test_learnability_is_p_times_one_minus_p() -> None:
    stats = pd.DataFrame({"problem_id": ["a", "b", "c"], "frac_correct": [0.5, 0.25, 0.875], "entropy": [1.0] * 3})
    examples = pd.DataFrame({"problem_id": ["a", "b", "c", "a"]})  # a question may give several rows
    f = uncertainty(examples, stats, "learnability")
    np.testing.assert_allclose(f, [0.25, 0.1875, 0.109375, 0.25])  # 1/2*1/2, 1/4*3/4, 7/8*1/8
    # a = 1, power: f / mean(f) over the rows; mean = (0.25 + 0.1875 + 0.109375 + 0.25) / 4 = 0.19921875
    np.testing.assert_allclose(normalised_weights(f, 1.0), np.array([0.25, 0.1875, 0.109375, 0.25]) / 0.19921875)


def test_registries_are_the_configs_allowed_values() -> None:
    assert list(MEASURES) == ["entropy", "accuracy", "rejected", "learnability", "local"]
    assert list(MAPPINGS) == ["power", "exp"]
    for name in MEASURES:
        assert WeightingConfig(strategy=name).strategy == name
    with pytest.raises(ValueError, match="unknown strategy 'entropyy'; allowed: entropy, accuracy, rejected, "
                                         "learnability, local, a 'module:function'"):
        WeightingConfig(strategy="entropyy")
    with pytest.raises(ValueError, match="keep_pass_rate must be"):
        WeightingConfig(keep_pass_rate=(0.8, 0.2))
    assert "learnability: p(1 - p)" in WeightingConfig.model_fields["strategy"].description


def confidence(rows: pd.DataFrame) -> pd.Series:
    """A user's measure: the majority answer's share."""
    return rows.majority_share


def test_a_users_strategy_plugs_in_and_is_in_the_key() -> None:
    stats = stats_frame([stats_row("a", cluster_answers(["1", "1", "1", "2"], gold="1", style="gsm8k"))])
    f = uncertainty(pd.DataFrame({"problem_id": ["a"]}), stats, f"{__name__}:confidence")
    np.testing.assert_allclose(f, [0.75])
    default = load_config("tiny-test")
    assert "keep_pass_rate" not in keys.weighting_fields(default.weighting)  # stored keys stay as they were
    banded = load_config("tiny-test", weighting={"keep_pass_rate": (0.2, 0.8)})
    assert keys.weighting_fields(banded.weighting)["keep_pass_rate"] == (0.2, 0.8)
    mine = keys.weighting_fields(load_config("tiny-test", weighting={"strategy": f"{__name__}:confidence"}).weighting)
    assert len(mine["strategy_version"]) == 16  # this file's hash: an edit weights again
