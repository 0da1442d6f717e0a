"""The public answer API: extraction and equivalence in both styles, bounded math-verify, clustering."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from east_tasks.core import answers
from east_tasks.core.answers import (
    NO_ANSWER,
    Cluster,
    answers_match,
    answers_match_many,
    canonical_answers,
    cluster_answers,
    extract_answer,
    normalize_answer,
)
from east_tasks.engines import grading


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
        ("\\boxed{\\frac{3}{4}}", "3/4"),
        ("#### 6/8", "3/4"),
        ("#### 0.5", "1/2"),
        ("#### 3 then later #### 4", "4"),
        ("#### 7 and the answer is 9", "7"),  # `####` outranks the other forms
        ("Q: how many?\nA: 42\n", "42"),
        ("A: 5 apples and 3 more make 8 apples", "8"),  # "A: N" only when N ends the line; else the last number
        ("23 - 4 = 19. no marker", "19"),  # the last number
        ("It costs $1,250.50 in total.", "2501/2"),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_gsm8k(text: str, expected: str | None) -> None:
    assert extract_answer(text, "gsm8k") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),  # nested braces
        ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
        ("first \\boxed{1}, finally \\boxed{ 2 }", "2"),  # the last box, stripped
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$", "5"),  # \boxed without braces
        ("\\boxed {x+1}", "x+1"),
        ("\\boxed{\\frac{1}{2", None),  # cut off inside the box
        ("\\boxed{}", None),
        ("The answer is 5.", None),  # math style reads boxes only
    ],
)
def test_extract_math(text: str, expected: str | None) -> None:
    assert extract_answer(text, "math") == expected


# (gold, prediction) pairs math-verify must accept, one group per answer form the issue lists.
MATH_EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"), ("\\dfrac{3}{4}", "\\frac34"), ("1/2", "\\tfrac{1}{2}"),  # fractions
    ("2\\sqrt{2}", "\\sqrt{8}"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),  # radicals
    ("(1, 2]", "(1,2]"), ("(-\\infty, 3)", "(-\\infty,3)"), ("[2,5)", "[2, 5)"),  # intervals
    ("(3, -1)", "(3,-1)"),  # tuples
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"),  # matrices
    ("\\text{(C)}", "C"), ("\\text{even}", "\\text{ even}"),  # \text{} answers
    ("30^\\circ", "30"), ("30^{\\circ}", "30"),  # degrees
    ("45\\%", "45"),  # percent
    ("5\\text{ cm}", "5"), ("12\\text{ inches}^2", "12"), ("\\$18.90", "18.90"),  # units and currency
    ("x^2+2x+1", "(x+1)^2"), ("\\{1,2\\}", "\\{2,1\\}"), ("1,000", "1000"), ("5", "5.0"),  # algebra, sets
]
MATH_DIFFERENT = [
    ("\\frac{1}{2}", "\\frac{1}{3}"), ("\\sqrt{2}", "1.414"), ("2\\sqrt{2}", "\\sqrt{6}"),
    ("(1,2]", "[1,2]"), ("(3, -1)", "(-1, 3)"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 4 & 3 \\end{pmatrix}"),
    ("\\text{even}", "\\text{odd}"), ("\\text{(C)}", "D"),
    ("30^\\circ", "60"), ("45\\%", "55"), ("5\\text{ cm}", "6"),
    ("x+1", "x+2"), ("-1", "1"), ("3", "4"),
]


@pytest.mark.parametrize(("gold", "pred"), MATH_EQUIVALENT)
def test_math_equivalent_forms(gold: str, pred: str) -> None:
    # the equivalence is checked here, not the 5 s bound (a comparison past it counts as not equivalent): a bound
    # with a loaded 2-core machine's margin
    assert answers_match(pred, gold, "math", timeout_s=60.0)


@pytest.mark.parametrize(("gold", "pred"), MATH_DIFFERENT)
def test_math_different_answers_do_not_match(gold: str, pred: str) -> None:
    assert not answers_match(pred, gold, "math")


def test_gsm8k_match_normalises_both_sides() -> None:
    assert answers_match("1234", "1,234", "gsm8k") and answers_match("$5.00", "5", "gsm8k")
    assert answers_match("0.75", "3/4", "gsm8k")
    assert not answers_match("12", "13", "gsm8k") and not answers_match(None, "5", "gsm8k")
    assert not answers_match(None, "5", "math")


def test_normalize_answer_equates_number_forms() -> None:
    assert normalize_answer("1,000.0") == normalize_answer("$1000") == "1000"
    assert normalize_answer("2/4") == normalize_answer("0.5") == normalize_answer("\\frac{1}{2}") == "1/2"
    assert normalize_answer("x + 1") == "x + 1"  # non-numeric answers compare as text
    assert normalize_answer("1/0") == "1/0"  # no crash on a zero denominator


@pytest.mark.parametrize("call", [lambda: extract_answer("5", "latex"), lambda: answers_match("5", "5", "MATH"),
                                  lambda: cluster_answers(["5"], "5", "gsm")])
def test_unknown_style_is_named(call) -> None:
    with pytest.raises(ValueError, match="allowed: gsm8k, math"):
        call()


def test_math_verify_needs_the_main_thread_unless_its_timeout_is_off() -> None:
    """The library quirk the module works around: its signal-based timeout fails in worker threads (where
    Prefect runs tasks); our bounded call works there."""
    from math_verify import parse

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="threaded environment"):
            pool.submit(parse, "\\boxed{\\frac{1}{2}}").result()
        assert pool.submit(answers_match, "0.5", "\\frac{1}{2}", "math").result()
        assert not pool.submit(answers_match, "0.4", "\\frac{1}{2}", "math").result()


TOWER = "10^{10^{10^{10}}}"  # sympy evaluates it in C with the GIL held: minutes, uninterruptible in a thread
# What a bounded call may take past its bound: a loaded 2-core machine's scheduling and a replacement worker's start
# (it imports sympy). An unbounded check of TOWER runs for minutes.
MARGIN_S = 20.0


def test_an_uncheckable_answer_is_no_match_within_its_bound_from_any_thread() -> None:
    """The input that once stalled a run: bounded now, in a worker thread too, and the workers recover."""
    assert answers_match("2", "\\frac{4}{2}", "math")  # the workers are up
    before = grading.timeouts["timed out"]
    with ThreadPoolExecutor(1) as pool:
        t0 = time.time()
        assert not pool.submit(answers_match, TOWER, "5", "math", 1.0).result()
        assert time.time() - t0 < 1.0 + MARGIN_S
    assert grading.timeouts["timed out"] == before + 1  # counted, for the step's log
    t0 = time.time()
    clusters = cluster_answers([TOWER, "5", "5", None], "5", "math", timeout_s=1.0)
    assert time.time() - t0 < 1.0 + MARGIN_S
    # past the bound the question is clustered by exact strings, still with its gold verdict
    assert clusters == [Cluster("5", 2, True), Cluster(TOWER, 1, False), Cluster(NO_ANSWER, 1, False)]
    assert answers_match("0.5", "\\frac{1}{2}", "math")  # a killed worker was replaced
    assert answers_match_many(["0.5", TOWER, None, "1/2"], ["\\frac{1}{2}"] * 4, "math", timeout_s=1.0) == \
        [True, False, False, True]


def test_the_core_starts_no_process_and_says_so_without_a_grader(monkeypatch) -> None:
    """The core hands bounded checks to the grader the engines register; without one it refuses, never hangs."""
    monkeypatch.setattr(answers, "_grader", None)
    assert answers_match("0.5", "1/2", "gsm8k")  # in-process styles need none
    assert answers_match("\\frac{1}{2}", "\\frac{1}{2}", "math")  # identical strings are never sent
    with pytest.raises(RuntimeError, match=r"call east_tasks.engines.grading.install\(\) first"):
        answers_match("0.5", "\\frac{1}{2}", "math")


def test_cluster_answers_groups_and_orders() -> None:
    clusters = cluster_answers(["5", "7", None, "5", "7", "7", None, "9"], gold="5", style="gsm8k")
    assert clusters == [
        Cluster("7", 3, False),
        Cluster("5", 2, True),
        Cluster(NO_ANSWER, 2, False),
        Cluster("9", 1, False),
    ]


def test_math_clusters_merge_equivalent_answers() -> None:
    preds = ["\\frac{1}{2}", "0.5", None, "\\sqrt{8}", "2\\sqrt{2}", "\\dfrac12", "3"]
    assert canonical_answers(preds, "math") == ["\\frac{1}{2}", "\\frac{1}{2}", None, "\\sqrt{8}", "\\sqrt{8}",
                                                "\\frac{1}{2}", "3"]
    assert cluster_answers(preds, gold="1/2", style="math") == [
        Cluster("\\frac{1}{2}", 3, True),
        Cluster("\\sqrt{8}", 2, False),
        Cluster("3", 1, False),
        Cluster(NO_ANSWER, 1, False),
    ]
    # gsm8k style keeps its exact (normalised) clusters
    assert len(cluster_answers(["1/2", "1/2", "2"], gold="0.5", style="gsm8k")) == 2
