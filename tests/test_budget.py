"""The adaptive sampling budget (`sampling.adaptive`): which questions stop after n0 samples, how many the others
get (numbers worked out by hand), the config's refusals, and a key of its own that leaves fixed-n keys alone."""

from __future__ import annotations

import numpy as np
import pytest

from east_tasks.config import checked_config, load_config
from east_tasks.core.budget import sample_counts
from east_tasks.errors import UserError
from east_tasks.steps import keys

# n0 = 4 first samples of five questions, by their correct ones: 4 (decided), 0 (none), 2, 1, 3
FIRST = [4, 0, 2, 1, 3]


def test_a_unanimous_correct_question_stops_and_the_rest_are_topped_up_to_n() -> None:
    assert sample_counts(FIRST, 4, 8).tolist() == [4, 8, 8, 8, 8]
    assert sample_counts(FIRST, 4, 8, stop_none_correct=True).tolist() == [4, 4, 8, 8, 8]
    assert sample_counts([4, 4], 4, 8, max_n=16).tolist() == [4, 4]  # all decided: nothing to share out


def test_dart_shares_the_saved_samples_by_fail_rate_up_to_max_n() -> None:
    # two stopped questions save 2 x (8 - 4) = 8 samples; the fail rates 2/4, 3/4, 1/4 (sum 1.5) take
    # floor(8 x 0.5 / 1.5) = 2, floor(8 x 0.75 / 1.5) = 4, floor(8 x 0.25 / 1.5) = 1 of them
    assert sample_counts(FIRST, 4, 8, max_n=16, stop_none_correct=True).tolist() == [4, 4, 10, 12, 9]
    assert sample_counts(FIRST, 4, 8, max_n=10, stop_none_correct=True).tolist() == [4, 4, 10, 10, 9]
    # without stop_none_correct the question with none correct is the hardest: 4 saved, fail rates 1, 1/2, 3/4, 1/4
    assert sample_counts(FIRST, 4, 8, max_n=64).tolist() == [4, 9, 8, 9, 8]
    counts = sample_counts(np.arange(9) % 5, 4, 8, max_n=256, stop_none_correct=True)
    assert counts.sum() <= 9 * 8  # never more than the fixed budget


@pytest.mark.parametrize(("overrides", "message"), [
    ({"sampling": {"adaptive": True, "n0": 8}}, "sampling.n0 8 must be below sampling.n 8"),
    ({"sampling": {"max_n": 4}}, "sampling.max_n 4 must be at least sampling.n 8"),
    ({"sampling": {"adaptive": True}, "weighting": {"labels": "majority"}},
     "sampling.adaptive needs weighting.labels=gold"),
    ({"sampling": {"adaptive": True}, "balance": {"auto": True, "sample_counts": [4, 8]}},
     "leave balance.sample_counts empty"),
])
def test_config_refuses_a_budget_it_cannot_spend(overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        checked_config("tiny-test", **overrides)


def test_the_top_up_has_a_key_of_its_own_and_fixed_n_keys_stay() -> None:
    assert not load_config("tiny-test").sampling.adaptive  # off by default: tests/test_keys.py's keys hold
    base = keys.topup_key("first", 8, None, False)
    assert len({base, keys.topup_key("first", 16, None, False), keys.topup_key("first", 8, 16, False),
                keys.topup_key("first", 8, None, True), keys.topup_key("other", 8, None, False)}) == 5
