"""Procedurally generated arithmetic word problems: the embedded default task, built easy to hard.

Deterministic by seed. Tier t is a chain of t + 1 steps of + or - on small numbers, so the hard part is the
length of the chain. The backbone is taught a small, fixed labelled set that is mostly easy: many 2-3 step
problems, few 4-step ones and fewer still of 5-6 steps (`BootstrapConfig.labelled`), because this tiny model
does not extrapolate to longer chains on its own (taught 2-3 step chains alone, it solved 4-6 step ones about
5 % of the time, the same wrong answer in every sample). The unlabelled pool, validation and test splits span
every tier evenly, so self-training has what the labels barely taught to learn (docs/architecture.md, "The
embedded testbed"). Each problem carries a reference solution ``17 + 6 = 23. 23 - 4 = 19. #### 19``.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

NAMES = ["Tom", "Anna", "Ben", "Lily", "Omar", "Mia", "Sam", "Zoe", "Leo", "Ivy", "Max", "Ada"]
ITEMS = ["apples", "pens", "cards", "shells", "coins", "books", "stamps", "marbles", "cookies", "stickers"]
ADD = ["{n} buys {k} more {item}.", "{n} finds {k} more {item}.", "A friend gives {n} {k} {item}."]
SUB = ["{n} gives away {k} {item}.", "{n} loses {k} {item}.", "{n} sells {k} {item}."]


@dataclass(frozen=True)
class TierSpec:
    steps: int
    operand: tuple[int, int] = (1, 9)
    start: tuple[int, int] = (2, 20)


TIER_SPECS: dict[int, TierSpec] = {t: TierSpec(steps=t + 1) for t in range(1, 7)}
TIERS = tuple(TIER_SPECS)


@dataclass(frozen=True)
class Problem:
    problem_id: str
    question: str
    answer: str
    solution: str
    tier: int


def _apply(value: int, op: str, k: int) -> int:
    return value + k if op == "+" else value - k


def _steps(rng: random.Random, spec: TierSpec) -> tuple[int, list[tuple[str, int]]]:
    value = rng.randint(*spec.start)
    start, steps = value, []
    for _ in range(spec.steps):
        k = rng.randint(*spec.operand)
        op = "-" if k <= value and rng.random() < 0.5 else "+"
        steps.append((op, k))
        value = _apply(value, op, k)
    return start, steps


def make_problem(rng: random.Random, tier: int) -> Problem:
    start, steps = _steps(rng, TIER_SPECS[tier])
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    sentences = [f"{name} has {start} {item}."]
    lines, value = [], start
    for op, k in steps:
        sentences.append(rng.choice(ADD if op == "+" else SUB).format(n=name, k=k, item=item))
        new = _apply(value, op, k)
        lines.append(f"{value} {op} {k} = {new}.")
        value = new
    sentences.append(f"How many {item} does {name} have now?")
    question = " ".join(sentences)
    solution = " ".join(lines) + f" #### {value}"
    pid = hashlib.sha1(question.encode()).hexdigest()[:12]
    return Problem(problem_id=pid, question=question, answer=str(value), solution=solution, tier=tier)


# Every question belongs to exactly one split, decided by a hash of its text, so the splits are disjoint by
# construction and growing one never changes another (percent of the question space each may draw from).
SPLIT_SHARES: dict[str, tuple[int, int]] = {"test": (0, 25), "validation": (25, 40), "pool": (40, 70),
                                            "labelled": (70, 100)}


def split_of(question: str) -> str:
    bucket = int(hashlib.sha1(question.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in SPLIT_SHARES.items() if lo <= bucket < hi)


def make_split(split: str, size: int, seed: int = 0, tiers: tuple[int, ...] = TIERS,
               answers: tuple[int, int] | None = None) -> list[Problem]:
    """`size` distinct problems of `split`, tiers cycling through `tiers` (so balanced), deterministic by seed;
    with `answers = (lo, hi)`, only problems whose answer lies in that range."""
    if split not in SPLIT_SHARES:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLIT_SHARES)}")
    rng = random.Random(f"{split}-{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    while len(out) < size:
        p = make_problem(rng, tiers[len(out) % len(tiers)])
        if answers is not None and not answers[0] <= int(p.answer) <= answers[1]:
            continue
        if p.question not in seen and split_of(p.question) == split:
            seen.add(p.question)
            out.append(p)
    return out


@dataclass(frozen=True)
class ArithSplits:
    pool: list[Problem]
    validation: list[Problem]
    test: list[Problem]


def arith_splits(pool_size: int, validation_size: int, test_size: int, seed: int = 0,
                 pool_tiers: tuple[int, ...] | None = None, pool_answers: tuple[int, int] | None = None) -> ArithSplits:
    """The unlabelled pool, validation and test splits: every tier, easy to hard (the backbone's labelled set
    is `labelled_set`). `pool_tiers` and `pool_answers` reshape the pool alone (the study's regimes), so every
    regime is measured on the same validation and test questions."""
    return ArithSplits(pool=make_split("pool", pool_size, seed, pool_tiers or TIERS, pool_answers),
                       validation=make_split("validation", validation_size, seed),
                       test=make_split("test", test_size, seed))


def labelled_set(per_tier: tuple[int, ...], seed: int = 0) -> list[Problem]:
    """The backbone's labelled problems: `per_tier[i]` problems of tier `TIERS[i]`."""
    if len(per_tier) != len(TIERS):
        raise ValueError(f"labelled set: {len(per_tier)} sizes given for {len(TIERS)} tiers {TIERS}")
    return [p for tier, n in zip(TIERS, per_tier, strict=True) for p in make_split("labelled", n, seed + tier, (tier,))]


# --- Checked reasoning: a solution's steps recomputed against its question ---------------------------------------
def _sentence(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{n\}", r"\w+").replace(r"\{item\}", r"\w+").replace(r"\{k\}", r"(\d+)")
    return re.compile(pattern)


_CHANGES = [(_sentence(t), "+") for t in ADD] + [(_sentence(t), "-") for t in SUB]
_START = re.compile(r"has (\d+) ")
_STEP = re.compile(r"(-?\d+)\s*([+-])\s*(-?\d+)\s*=\s*(-?\d+)")
_FINAL = re.compile(r"####\s*(-?\d+)")


def question_chain(question: str) -> tuple[int, list[tuple[str, int]]] | None:
    """The start value and the (op, k) steps a question of this task asks for; None for any other text."""
    sentences = re.split(r"(?<=[.?])\s+", question.strip())
    start = _START.search(sentences[0]) if sentences else None
    steps = []
    for sentence in sentences[1:-1]:
        found = next(((op, int(m.group(1))) for pattern, op in _CHANGES if (m := pattern.fullmatch(sentence))), None)
        if found is None:
            return None
        steps.append(found)
    return (int(start.group(1)), steps) if start and steps else None


def steps_valid(question: str, response: str) -> bool | None:
    """Whether `response` takes exactly the question's steps, each computed right, from its start value to its final
    answer: `17 + 6 = 23. 23 - 4 = 19. #### 19`. A right final answer without valid steps is right by luck. None
    when `question` is not one of this task's."""
    chain = question_chain(question)
    if chain is None:
        return None
    value, wanted = chain
    final = _FINAL.search(response)
    steps = _STEP.findall(response[: final.start()] if final else response)
    if final is None or len(steps) != len(wanted):
        return False
    for (x, op, y, z), (want_op, want_k) in zip(steps, wanted, strict=True):
        x, y, z = int(x), int(y), int(z)
        if (x, op, y) != (value, want_op, want_k) or z != _apply(x, op, y):
            return False
        value = z
    return value == int(final.group(1))
