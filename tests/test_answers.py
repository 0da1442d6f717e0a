import pytest

from east_tasks.answers import (
    NO_ANSWER,
    Cluster,
    cluster_answers,
    extract_answer,
    is_correct,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17 + 6 = 23. 23 - 4 = 19. #### 19", "19"),
        ("#### 1,234", "1234"),
        ("so #### $5.00", "5"),
        ("The answer is 42.", "42"),
        ("the final answer is: -3", "-3"),
        ("Thus \\boxed{7}.", "7"),
        ("\\boxed{\\frac{1}{2}} then \\boxed{12}", "12"),
        ("#### 6/8", "3/4"),
        ("#### 0.5", "1/2"),
        ("#### 3 then later #### 4", "4"),
        ("23 - 4 = 19. no marker", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_normalize_answer_equates_number_forms() -> None:
    assert normalize_answer("1,000.0") == normalize_answer("$1000") == "1000"
    assert normalize_answer("2/4") == normalize_answer("0.5") == "1/2"
    assert normalize_answer("x + 1") == "x + 1"  # non-numeric answers compare as text
    assert normalize_answer("1/0") == "1/0"  # no crash on a zero denominator


def test_is_correct_uses_normalised_gold() -> None:
    assert is_correct("1234", "1,234")
    assert not is_correct(None, "5")


def test_cluster_answers_groups_and_orders() -> None:
    clusters = cluster_answers(["5", "7", None, "5", "7", "7", None, "9"], gold="5")
    assert clusters == [
        Cluster("7", 3, False),
        Cluster("5", 2, True),
        Cluster(NO_ANSWER, 2, False),
        Cluster("9", 1, False),
    ]
