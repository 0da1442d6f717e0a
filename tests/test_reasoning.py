"""Checked reasoning on the embedded task: each step recomputed, chained, and ending at the final answer."""

from east_tasks.core.reasoning import steps_valid
from east_tasks.data.arith import TIERS, arith_splits, make_split


def test_hand_checked_solutions() -> None:
    assert steps_valid("17 + 6 = 23. 23 - 4 = 19. #### 19")
    assert steps_valid("3 × 4 = 12. 12 + 1 = 13. #### 13")
    assert not steps_valid("17 + 6 = 24. 24 - 5 = 19. #### 19")  # right answer, a wrong step: lucky
    assert not steps_valid("17 + 6 = 23. 22 - 3 = 19. #### 19")  # each step right, but the chain breaks
    assert not steps_valid("17 + 6 = 23. 23 - 4 = 19. #### 18")  # the chain ends elsewhere
    assert not steps_valid("#### 19")  # no steps at all
    assert not steps_valid("17 + 6 = 23. 23 - 4 = 19.")  # no final answer


def test_every_reference_solution_is_valid() -> None:
    assert all(steps_valid(p.solution) for p in make_split("test", 120, seed=3))


def test_regimes_reshape_the_pool_alone() -> None:
    default = arith_splits(60, 20, 30)
    skewed = arith_splits(60, 20, 30, pool_tiers=(1, 1, 2))
    guessable = arith_splits(60, 20, 30, pool_answers=(0, 9))
    assert [p.tier for p in default.pool[:6]] == list(TIERS)
    assert [p.tier for p in skewed.pool].count(1) == 40 and {p.tier for p in skewed.pool} == {1, 2}
    assert all(0 <= int(p.answer) <= 9 for p in guessable.pool) and len(guessable.pool) == 60
    for regime in (skewed, guessable):  # the same validation and test questions: every regime is comparable
        assert regime.test == default.test and regime.validation == default.validation
