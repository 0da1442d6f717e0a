"""The sampled metrics against hand computations: pass@k by Chen et al.'s unbiased estimator from n samples with c
correct, 1 - C(n-c, k) / C(n, k), and the majority vote of every prefix of a question's samples."""

from math import comb

import numpy as np
import pytest

from east_tasks.core.answers import NO_ANSWER
from east_tasks.core.metrics import majority_answer, pass_at_k, prefix_majorities


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 2, 0.7),  # 1 - C(3, 2) / C(5, 2) = 1 - 3/10
    (4, 1, 2, 0.5),  # 1 - C(3, 2) / C(4, 2) = 1 - 3/6
    (10, 3, 5, 11 / 12),  # 1 - C(7, 5) / C(10, 5) = 1 - 21/252
    (5, 1, 1, 0.2),  # pass@1 is c / n
    (8, 3, 1, 0.375),
    (5, 4, 2, 1.0),  # c > n - k: every k-subset holds a correct sample
    (10, 0, 3, 0.0),  # all wrong
    (10, 10, 3, 1.0),  # all right
    (1000, 1, 500, 0.5),  # C(999, 500) / C(1000, 500) = 500/1000, binomials near 1e299 never formed
])
def test_pass_at_k_by_hand(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_with_k_equal_n_is_any_sample_correct_and_matches_the_binomials() -> None:
    c = np.array([0, 1, 2, 4])
    np.testing.assert_array_equal(pass_at_k(4, c, 4), [0.0, 1.0, 1.0, 1.0])
    assert pass_at_k(5, 4, 2) == 1.0 and pass_at_k(5, 5, 5) == 1.0  # exactly: a factor of the product is 1 - k/k
    for n in range(1, 13):  # element-wise over questions with different n and c
        for k in range(1, n + 1):
            cs = np.arange(n + 1)
            exact = [1 - comb(n - c, k) / comb(n, k) for c in cs]
            np.testing.assert_allclose(pass_at_k(np.full(n + 1, n), cs, k), exact, atol=1e-12)
    np.testing.assert_allclose(pass_at_k([4, 8], [1, 3], 1), [0.25, 0.375])
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(4, 5, 1)


def test_prefix_majorities_are_the_vote_of_each_prefix_with_ties_to_the_first_seen() -> None:
    # "2" first; "7" ties it at k=2 (2 keeps it, seen first), leads at k=3; "2" ties again at k=4 and wins
    assert prefix_majorities(["2", "7", "7", "2"]) == ["2", "2", "7", "2"]
    assert prefix_majorities([None, NO_ANSWER, "3", None]) == [None, None, "3", "3"]  # answerless never win
    rng = np.random.default_rng(0)
    for _ in range(200):
        preds = [None if a == 3 else str(a) for a in rng.integers(0, 4, rng.integers(1, 12))]
        assert prefix_majorities(preds) == [majority_answer(preds[:k]) for k in range(1, len(preds) + 1)]
