"""Properties of the public answer API on arbitrary input (hypothesis): it never raises, every call returns
within its bound, gsm8k equivalence is reflexive and symmetric, clustering does not depend on response order."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from east_tasks.core.answers import answers_match, canonical_answers, cluster_answers, extract_answer

BOUND_S = 0.5  # math-verify's bound in these tests; every call must return within it and MARGIN_S
# A loaded 2-core machine's scheduling and a replacement worker's start (it imports sympy); an unbounded check of an
# exponent tower runs for minutes.
MARGIN_S = 20.0

any_text = st.text(st.characters(blacklist_categories=()), max_size=200)  # NUL bytes and lone surrogates too
hostile = st.one_of(
    st.integers(1, 100_000).map(lambda n: "9" * n),  # up to 100,000-digit numbers
    st.integers(1, 10_000).map(lambda n: "\\boxed{" * n + "1" + "}" * n),  # 10,000 nested braces
    st.integers(1, 10_000).map(lambda n: "{" * n),  # unbalanced
    st.integers(2, 6).map(lambda n: "\\boxed{" + "10^{" * n + "10" + "}" * n + "}"),  # exponent towers
    st.integers(1, 5_000).map(lambda n: "\\boxed{1}" * n),  # long \boxed{} chains
    st.integers(1, 1_000).map(lambda n: "#### " + "1," * n + "5"),
)
texts = st.one_of(any_text, hostile, st.tuples(any_text, hostile).map("".join))
quick = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
slow = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(texts)
def test_extraction_never_raises_and_is_fast(text: str) -> None:
    t0 = time.process_time()  # both extract in this process: its CPU time, which a loaded machine does not stretch
    for style in ("gsm8k", "math"):
        answer = extract_answer(text, style)
        assert answer is None or isinstance(answer, str)
        assert isinstance(answers_match(answer, "5", "gsm8k"), bool)
    assert time.process_time() - t0 < 1.0


@pytest.fixture(scope="module")
def started_workers() -> None:
    """The bound is a call's, not the workers' start (spawn and imports), which the first call waits for."""
    assert answers_match("0.5", "\\frac{1}{2}", "math")


@slow
@given(texts, st.sampled_from(["5", "\\frac{1}{2}", "(1, 2)", "10^{10}"]))
@pytest.mark.usefixtures("started_workers")
def test_math_equivalence_returns_within_its_bound_on_anything(text: str, gold: str) -> None:
    pred = extract_answer(text, "math") or text
    t0 = time.perf_counter()
    assert isinstance(answers_match(pred, gold, "math", timeout_s=BOUND_S), bool)
    assert time.perf_counter() - t0 < BOUND_S + MARGIN_S
    t0 = time.perf_counter()
    clusters = cluster_answers([pred, gold, None], gold, "math", timeout_s=BOUND_S)
    assert time.perf_counter() - t0 < BOUND_S + MARGIN_S
    assert sum(c.size for c in clusters) == 3 and any(c.correct for c in clusters)  # the gold itself is correct


@quick
@given(texts, texts)
def test_gsm8k_equivalence_is_reflexive_and_symmetric(a: str, b: str) -> None:
    assert answers_match(a, a, "gsm8k")
    assert answers_match(a, b, "gsm8k") == answers_match(b, a, "gsm8k")


def _partition(preds: list, canon: list) -> set[frozenset]:
    """The clustering as sets of the responses' answers, independent of which one names a cluster."""
    groups: dict = {}
    for p, c in zip(preds, canon, strict=True):
        groups.setdefault(c, set()).add(p)
    return {frozenset(g) for g in groups.values()}


ANSWERS = {"gsm8k": ["1", "1.0", "$1", "2", "4/2", "0.5", "1/2", "3", None],
           "math": ["\\frac{1}{2}", "0.5", "1/2", "2", "\\frac{4}{2}", "3", "\\sqrt{4}", None]}


@slow  # math's clusters compare in the bounded workers, each comparison parsing both answers with sympy
@given(st.sampled_from(["gsm8k", "math"]), st.data())
def test_clustering_is_independent_of_response_order(style: str, data) -> None:
    preds = data.draw(st.lists(st.sampled_from(ANSWERS[style]), min_size=1, max_size=12))
    shuffled = data.draw(st.permutations(preds))
    gold = data.draw(st.sampled_from([a for a in ANSWERS[style] if a is not None]))
    partition = _partition(preds, canonical_answers(preds, style))
    assert partition == _partition(shuffled, canonical_answers(shuffled, style))
    summary = sorted((c.size, c.correct) for c in cluster_answers(preds, gold, style))
    assert summary == sorted((c.size, c.correct) for c in cluster_answers(shuffled, gold, style))
