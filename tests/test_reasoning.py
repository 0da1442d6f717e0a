"""Checked reasoning on the embedded task: the question's steps, each recomputed, chained, ending at the answer."""

from east_tasks.data.arith import TIERS, arith_splits, make_split, question_chain, steps_valid

Q = "Tom has 17 cards. Tom buys 6 more cards. Tom loses 4 cards. How many cards does Tom have now?"


def test_hand_checked_solutions() -> None:
    assert question_chain(Q) == (17, [("+", 6), ("-", 4)])
    assert steps_valid(Q, "17 + 6 = 23. 23 - 4 = 19. #### 19")
    assert not steps_valid(Q, "17 + 6 = 24. 24 - 5 = 19. #### 19")  # right answer, wrong steps: lucky
    assert not steps_valid(Q, "17 + 5 = 22. 22 - 3 = 19. #### 19")  # right arithmetic, not the question's numbers
    assert not steps_valid(Q, "17 - 6 = 11. 11 + 8 = 19. #### 19")  # wrong operations
    assert not steps_valid(Q, "17 + 6 = 23. 22 - 3 = 19. #### 19")  # the chain breaks
    assert not steps_valid(Q, "17 + 6 = 23. 23 - 4 = 19. #### 18")  # the chain ends elsewhere
    assert not steps_valid(Q, "17 + 6 = 23. #### 23")  # a step left out
    assert not steps_valid(Q, "#### 19") and not steps_valid(Q, "17 + 6 = 23. 23 - 4 = 19.")
    assert steps_valid("What is 2 + 2?", "2 + 2 = 4. #### 4") is None  # not a question of this task


def test_every_reference_solution_is_valid() -> None:
    assert all(steps_valid(p.question, p.solution) for p in make_split("test", 120, seed=3))


def test_regimes_reshape_the_pool_alone() -> None:
    default = arith_splits(60, 20, 30)
    skewed = arith_splits(60, 20, 30, pool_tiers=(1, 1, 2))
    guessable = arith_splits(60, 20, 30, pool_answers=(0, 9))
    assert [p.tier for p in default.pool[:6]] == list(TIERS)
    assert [p.tier for p in skewed.pool].count(1) == 40 and {p.tier for p in skewed.pool} == {1, 2}
    assert all(0 <= int(p.answer) <= 9 for p in guessable.pool) and len(guessable.pool) == 60
    for regime in (skewed, guessable):  # the same validation and test questions: every regime is comparable
        assert regime.test == default.test and regime.validation == default.validation
