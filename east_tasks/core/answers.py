"""Final-answer extraction and equivalence, the public API other tools call. No `eval` of model output.

Every function takes the answer style by its `data.answer_style` value: a built-in below, or a user's style (an
import path or an entry point: `east_tasks.core.styles`, which also says what a style is). The built-ins:
- ``gsm8k``: a number, from ``#### N``, ``The answer is N``, ``\\boxed{N}``, ``A: N`` or else the last number in
  the text; normalised (thousands separators, ``$``, trailing ``.0``, fractions) and compared exactly.
- ``math``: the contents of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; ``\\boxed 5`` too),
  compared with math-verify (fractions, radicals, intervals, tuples, matrices, ``\\text{}`` answers, degrees,
  percent, units), each comparison bounded in time.
- ``mcq``: a choice letter A-J (`extract_letter`), compared exactly in upper case.

Math comparisons, and every function of a user's style, may not end (sympy on ``10^{10^{10^{10}}}``), so the core
hands them to a bounded grader (`Grader`, registered with `set_grader`): the engines' worker processes
(`east_tasks.engines.grading`), which kill a call past the style's bound; it then counts as no answer / not equal /
incorrect. The built-ins' regexes are plain text and run in the calling process.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from typing import Protocol, TypeVar

from east_tasks.core.styles import FUNCTIONS, AnswerStyle, load_style

NO_ANSWER = "<no-answer>"
# A check style without `extract` clusters its responses by verdict (`east_tasks.core.styles`).
CHECK_PASSED, CHECK_FAILED = "<passed>", "<failed>"
MATH_TIMEOUT_S = 5.0  # per parse and per comparison, as math-verify's own default

_NUMBER = r"-?[\d,]*\.?\d+(?:/\d+)?"
_GSM8K_PATTERNS = [
    re.compile(r"####\s*\$?\s*(" + _NUMBER + ")"),
    re.compile(r"[Tt]he (?:final )?answer is[:\s]*\$?\s*(" + _NUMBER + ")"),
]
_A_COLON = re.compile(r"\bA:\s*\$?\s*(" + _NUMBER + r")\s*\.?\s*$", re.MULTILINE)  # "A: 42" on its own
_ANY_NUMBER = re.compile(_NUMBER)
_BOX = re.compile(r"\\(?:boxed|fbox)\b")
_LATEX_FRAC = re.compile(r"^-?\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")

T = TypeVar("T")


def last_boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...} or \\fbox{...} (nested braces), or of `\\boxed 5`; None if absent."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    rest = text[i:].lstrip()
    if not rest.startswith("{"):
        word = re.match(r"[^\s$]+", rest) if text[i : i + 1].isspace() else None
        return word.group(0) if word else None
    depth = 0
    for j, ch in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return rest[1:j].strip()
    return None  # unbalanced: the response was cut off inside the box


def normalize_answer(raw: str) -> str:
    """Canonical numeric form so equal numbers compare equal: '1,234.0' -> '1234', '$6/8' -> '3/4',
    '0.5' -> '1/2', '\\frac{1}{2}' -> '1/2'. Non-numbers are returned stripped and lower-cased."""
    s = raw.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    frac = _LATEX_FRAC.match(s)
    if frac:
        s = ("-" if s.startswith("-") else "") + f"{frac.group(1)}/{frac.group(2)}"
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = Fraction(int(num), int(den))
        else:
            value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return s.lower()
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _extract_gsm8k(text: str) -> str | None:
    for pattern in _GSM8K_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return normalize_answer(matches[-1])
    boxed = last_boxed(text)
    if boxed:
        return normalize_answer(boxed)
    for pattern in (_A_COLON, _ANY_NUMBER):
        matches = pattern.findall(text)
        if matches:
            return normalize_answer(matches[-1])
    return None



# --- mcq: a choice letter ---------------------------------------------------------------------------------------
# A letter counts only where it is given as the answer: after "answer is" / "answer:", in a box, or alone on its
# line. A capital stands alone ("B", "**B**", "B." but not "Bob"); a lower-case one only before punctuation or the
# line's end ("the answer is b." but not "the answer is a number"); "(b)" always.
_LETTER = r"(?:\(\s*([A-Ja-j])\s*\)|\*{0,2}([A-J])\*{0,2}(?!\w)|([a-j])(?=[\s*]*(?:[.,;:!)]|$)))"
_LETTER_AFTER_PHRASE = re.compile(r"(?i:\banswer\**\s*(?:is\b|:))[\s:*$]*(?i:(?:option|choice|letter)\s+)?"
                                  + _LETTER, re.MULTILINE)
_LETTER_LINE = re.compile(r"^[\s*#>]*\(?\s*([A-Ja-j])\s*\)?\.?[\s*]*$", re.MULTILINE)
_LETTER_ONLY = re.compile(r"[\s($*]*(?:\\text\{)?[\s(]*([A-Ja-j])[\s)]*\}?[\s).*$]*")


def extract_letter(text: str) -> str | None:
    """The choice letter (upper case) a response ends on: the last of "The answer is (B)", "Answer: C",
    \\boxed{B} and a line that is only the letter ("B.", "(D)"); None when it names none (a letter inside a
    sentence, "I think A is wrong", is no answer)."""
    mentions = [(m.end(), next(g for g in m.groups() if g)) for m in _LETTER_AFTER_PHRASE.finditer(text)]
    mentions += [(m.end(), m.group(1)) for m in _LETTER_LINE.finditer(text)]
    boxes = list(_BOX.finditer(text))
    if boxes and (boxed := last_boxed(text)) and (letter := _LETTER_ONLY.fullmatch(boxed)):
        mentions.append((boxes[-1].end(), letter.group(1)))
    return max(mentions)[1].upper() if mentions else None


def normalize_letter(answer: str) -> str:
    """'(b)' -> 'B', ' C. ' -> 'C' (a gold letter in any of those forms); anything else stripped."""
    letter = _LETTER_ONLY.fullmatch(answer)
    return letter.group(1).upper() if letter else answer.strip()


def _extract_math(text: str) -> str | None:
    return last_boxed(text) or None


# --- styles ------------------------------------------------------------------------------------------------------
def answer_style(style: str) -> AnswerStyle:
    """The style `data.answer_style` names: a built-in, or a user's, loaded once per process (a `UserError` in one
    line if it cannot be)."""
    return BUILTINS[style] if style in BUILTINS else _user_style(style)


@cache
def _user_style(spec: str) -> AnswerStyle:
    return load_style(spec)


# --- the bounded grader ------------------------------------------------------------------------------------------
class Grader(Protocol):
    """Runs functions of answers where a runaway one can be stopped, each call bounded in time; past its bound a
    call gives its `fallback`. `style` is the style the call's worker must have loaded; `fn` names the style's
    function, for the logs (`east_tasks.engines.grading.WorkerPool`)."""

    def run(self, style: str, fn: str, target: Callable[..., T], args: tuple, fallback: T, bound_s: float) -> T:
        """`target(*args)`, or `fallback` past `bound_s`."""
        ...

    def run_many(self, style: str, fn: str, target: Callable[..., T], calls: list[tuple], fallback: T,
                 bound_s: float) -> list[T]:
        """`target(*args)` for each of `calls`, in parallel, each bounded alone."""
        ...


_grader: Grader | None = None


def set_grader(grader: Grader | None) -> None:
    """Registers the grader that bounded calls go to (`east_tasks.engines.grading.install`): the core is the
    bottom layer, so the engines hand it their worker processes rather than it importing them."""
    global _grader
    _grader = grader


def _registered_grader() -> Grader:
    """The grader `set_grader` registered; refuses rather than run an unbounded check here."""
    if _grader is None:
        raise RuntimeError("answers that need a bounded check (math, a user's style) need the worker processes: "
                           "call east_tasks.engines.grading.install() first (importing east_tasks.steps does)")
    return _grader


def _call(style: str, fn: str, args: tuple, fallback: T, timeout_s: float | None = None) -> T:
    """`style`'s function `fn` on `args`: here if it may run here, else by the bounded grader."""
    resolved = answer_style(style)
    if fn in resolved.in_process:
        return getattr(resolved, fn)(*args)
    return _registered_grader().run(style, fn, _apply, (style, fn, args), fallback, timeout_s or resolved.timeout_s)


def _call_many(style: str, fn: str, calls: list[tuple], fallback: T, timeout_s: float | None = None) -> list[T]:
    """`_call` over many argument tuples; bounded ones run in parallel, each bounded alone."""
    resolved = answer_style(style)
    if fn in resolved.in_process:
        return [getattr(resolved, fn)(*args) for args in calls]
    if not calls:
        return []
    return _registered_grader().run_many(style, fn, _apply, [(style, fn, args) for args in calls], fallback,
                                         timeout_s or resolved.timeout_s)


def _apply(style: str, fn: str, args: tuple) -> object:
    """In a worker: the style, imported by its name there, applied."""
    return getattr(answer_style(style), fn)(*args)


def warm_up(style: str) -> None:
    """Loads `style` and, for math, parses and compares once (sympy's import, math-verify's grammar): a worker
    does this before its first call is timed."""
    answer_style(style)
    if style == "math":
        _equal("1/2", "0.5")


# These run in the grader's workers, which stop them past the bound: math-verify's own timeouts are off.
@lru_cache(maxsize=65536)
def _parse(answer: str) -> tuple:
    from math_verify import parse

    return tuple(parse(f"\\boxed{{{answer}}}", parsing_timeout=None))


def _equal(gold: str, pred: str) -> bool:
    from math_verify import verify

    if gold.strip() == pred.strip():
        return True
    gold_p, pred_p = _parse(gold), _parse(pred)
    return bool(gold_p and pred_p and verify(list(gold_p), list(pred_p), timeout_seconds=None))


def _representatives(preds: list[str], style: str) -> dict[str, str]:
    """Each distinct answer -> the first earlier answer equivalent to it (math-verify's equivalence is not
    transitive in every corner, so an answer joins the first cluster whose first member it matches)."""
    equal = answer_style(style).equivalent
    reps: list[str] = []
    canon: dict[str, str] = {}
    for p in preds:
        if p not in canon:
            canon[p] = next((r for r in reps if equal(p, r)), p)
            if canon[p] == p:
                reps.append(p)
    return canon


def _clusters_and_gold(preds: list[str], gold: str, style: str) -> tuple[dict[str, str], dict[str, bool]]:
    canon = _representatives(preds, style)
    equal = answer_style(style).equivalent
    return canon, {r: equal(gold, r) for r in set(canon.values())}


BUILTINS: dict[str, AnswerStyle] = {
    "gsm8k": AnswerStyle(extract=_extract_gsm8k, normalize=normalize_answer, exact_match=True,
                         in_process=frozenset(FUNCTIONS)),
    "math": AnswerStyle(extract=_extract_math, equivalent=_equal, timeout_s=MATH_TIMEOUT_S,
                        in_process=frozenset({"extract"})),
    "mcq": AnswerStyle(extract=extract_letter, normalize=normalize_letter, exact_match=True,
                       in_process=frozenset(FUNCTIONS)),
}
STYLES = tuple(BUILTINS)  # as `east_tasks.config.BUILTIN_ANSWER_STYLES` (the config imports no layer)


# --- extraction and grading --------------------------------------------------------------------------------------
def extract_answer(text: str, style: str) -> str | None:
    """The final answer of a response (gsm8k: normalised number; math: the last box's LaTeX; mcq: the letter);
    None if none, or if the style extracts no answers (a check style without `extract`)."""
    return None if answer_style(style).extract is None else _call(style, "extract", (text,), None)


def extract_answers(texts: list[str], style: str) -> list[str | None]:
    """`extract_answer` of many responses (a user's style: in parallel on every worker, each bounded alone), as
    text (a user's `extract` may give a number)."""
    if answer_style(style).extract is None:
        return [None] * len(texts)
    return [None if a is None else str(a) for a in _call_many(style, "extract", [(t,) for t in texts], None)]


def _normalized(answers: list[str], style: str) -> dict[str, str]:
    """Each distinct answer -> its normalised form (itself when the style does not normalise)."""
    distinct = list(dict.fromkeys(answers))
    if answer_style(style).normalize is None:
        return {a: a for a in distinct}
    normalised = _call_many(style, "normalize", [(a,) for a in distinct], None)
    return {a: a if n is None else n for a, n in zip(distinct, normalised, strict=True)}


def normalize(answer: str, style: str) -> str:
    """An answer as the style compares it exactly (itself for styles without `normalize`)."""
    return _normalized([answer], style)[answer]


def answers_match(pred: str | None, gold: str, style: str, timeout_s: float | None = None) -> bool:
    """Whether an extracted answer equals the gold answer, or another answer (math: bounded by `timeout_s`,
    default the style's; an answer that cannot be checked in time counts as not matching). A check
    style grades responses, not answers (`grade_responses`): here its answers compare as its clusters do."""
    resolved = answer_style(style)
    if pred is None or resolved.extract is None:
        return False
    if resolved.exact_match:
        norm = _normalized([pred, gold], style)
        return norm[pred] == norm[gold]
    return pred.strip() == gold.strip() or bool(_call(style, "equivalent", (gold, pred), False, timeout_s))


def answers_match_many(preds: list[str | None], golds: list[str], style: str,
                       timeout_s: float | None = None) -> list[bool]:
    """`answers_match` over many pairs; comparisons in workers run in parallel on every worker, each bounded alone."""
    resolved = answer_style(style)
    pairs = list(zip(preds, golds, strict=True))
    if resolved.extract is None:  # a check style without answers: nothing to compare
        return [False] * len(pairs)
    if resolved.exact_match:
        norm = _normalized([a for pair in pairs for a in pair if a is not None], style)
        return [p is not None and norm[p] == norm[g] for p, g in pairs]
    todo = [(g, p) for p, g in pairs if p is not None and p.strip() != g.strip()]
    matched = iter(_call_many(style, "equivalent", todo, False, timeout_s))
    return [p is not None and (p.strip() == g.strip() or bool(next(matched))) for p, g in pairs]


def grade_responses(preds: list[str | None], golds: list[str], style: str,
                    texts: list[str] | None = None) -> list[bool]:
    """Each response against its gold: by its extracted answer (`preds`, from `extract_answers`), or for a check
    style by `check(response, gold)` on its text (`texts`, which a check style needs)."""
    if not answer_style(style).grades_responses:
        return answers_match_many(preds, golds, style)
    if texts is None:
        raise ValueError(f"answer style {style!r} grades whole responses with check(): give their texts")
    return [bool(v) for v in _call_many(style, "check", list(zip(texts, golds, strict=True)), False)]


# --- clustering ------------------------------------------------------------------------------------------------
def canonical_answers(preds: list[str | None], style: str, timeout_s: float | None = None) -> list[str | None]:
    """Each answer replaced by a canonical representative: an exact-match style's, its normalised form (gsm8k: the
    normalised number); else the first earlier answer the style finds equivalent (math: math-verify; the whole
    question bounded by `timeout_s`, default the style's; past it, exact strings)."""
    resolved = answer_style(style)
    distinct = list(dict.fromkeys(p for p in preds if p is not None))
    if resolved.exact_match:
        canon = _normalized(distinct, style)
    elif len(distinct) > 1:
        canon = _registered_grader().run(style, "equivalent", _representatives, (distinct, style),
                                         {p: p for p in distinct}, timeout_s or resolved.timeout_s)
    else:
        canon = {p: p for p in distinct}
    return [None if p is None else canon[p] for p in preds]


@dataclass(frozen=True)
class Cluster:
    answer: str  # the cluster's first answer, or NO_ANSWER (or a check style's CHECK_PASSED / CHECK_FAILED)
    size: int
    correct: bool


def cluster_answers(preds: list[str | None], gold: str, style: str, timeout_s: float | None = None,
                    verdicts: list[bool] | None = None) -> list[Cluster]:
    """Groups responses whose answers are equivalent under `answers_match`; answerless ones share one cluster.
    Math: the whole question bounded by `timeout_s` (past it: exact strings, and exact match with the gold).
    A check style needs the responses' `verdicts` (their `check`): its clusters are its answers, correct when one
    of their responses passed, or without `extract` the passed and the failed responses (`east_tasks.core.styles`).

    Sorted largest first (ties by answer) so the "most common incorrect answer" is well defined.
    """
    resolved = answer_style(style)
    if resolved.grades_responses:
        if verdicts is None:
            raise ValueError(f"answer style {style!r} grades responses with check(): cluster_answers needs verdicts")
        if resolved.extract is None:
            counts = Counter(CHECK_PASSED if v else CHECK_FAILED for v in verdicts)
            clusters = [Cluster(a, n, a == CHECK_PASSED) for a, n in counts.items()]
            return sorted(clusters, key=lambda c: (-c.size, c.answer))
        canon = canonical_answers(preds, style, timeout_s)
        correct = {a: False for a in canon if a is not None}
        correct |= {a: True for a, v in zip(canon, verdicts, strict=True) if a is not None and v}
    elif resolved.exact_match:
        canon = canonical_answers(preds, style)
        norm = _normalized([*(a for a in canon if a is not None), gold], style)  # graded as `answers_match` does
        correct = {a: norm[a] == norm[gold] for a in canon if a is not None}
    else:
        distinct = list(dict.fromkeys(p for p in preds if p is not None))
        exact = ({p: p for p in distinct}, {p: p.strip() == gold.strip() for p in distinct})
        mapping, correct = _registered_grader().run(style, "equivalent", _clusters_and_gold, (distinct, gold, style),
                                                    exact, timeout_s or resolved.timeout_s) if distinct else exact
        canon = [None if p is None else mapping[p] for p in preds]
    counts = Counter(NO_ANSWER if p is None else p for p in canon)
    clusters = [Cluster(a, n, a != NO_ANSWER and correct[a]) for a, n in counts.items()]
    return sorted(clusters, key=lambda c: (-c.size, c.answer))
