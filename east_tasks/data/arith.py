"""Procedurally generated arithmetic word problems: the embedded default task.

Deterministic by seed. Three difficulty tiers (see ENVIRONMENT.md for why these sizes):
tier 1: 2 steps of +/-, start 2-20, operands 1-9; tier 2: 3 steps, numbers up to 99;
tier 3: 4 steps with +, - and x (factor 2-5). Each problem carries a reference solution of the form
``17 + 6 = 23. 23 - 4 = 19. #### 19``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

NAMES = ["Tom", "Anna", "Ben", "Lily", "Omar", "Mia", "Sam", "Zoe", "Leo", "Ivy", "Max", "Ada"]
ITEMS = ["apples", "pens", "cards", "shells", "coins", "books", "stamps", "marbles", "cookies", "stickers"]
ADD = ["{n} buys {k} more {item}.", "{n} finds {k} more {item}.", "A friend gives {n} {k} {item}."]
SUB = ["{n} gives away {k} {item}.", "{n} loses {k} {item}.", "{n} sells {k} {item}."]
MUL = ["{n} ends up with {k} times as many {item}.", "The number of {item} {n} has grows {k} times."]

TIERS = (1, 2, 3)


@dataclass(frozen=True)
class Problem:
    problem_id: str
    question: str
    answer: str
    solution: str
    tier: int


def _apply(value: int, op: str, k: int) -> int:
    return value + k if op == "+" else value - k if op == "-" else value * k


def _steps(rng: random.Random, tier: int) -> tuple[int, list[tuple[str, int]]]:
    if tier == 1:
        start, n_steps, hi, ops = rng.randint(2, 20), 2, 9, "+-"
    elif tier == 2:
        start, n_steps, hi, ops = rng.randint(10, 99), 3, 99, "+-"
    else:
        start, n_steps, hi, ops = rng.randint(2, 20), 4, 20, "+-*"
    value, steps = start, []
    for _ in range(n_steps):
        op = rng.choice(ops)
        if op == "*":
            k = rng.randint(2, 5)
        elif op == "-":
            if value < 1:
                op, k = "+", rng.randint(1, hi)
            else:
                k = rng.randint(1, min(hi, value))
        else:
            k = rng.randint(1, hi)
        steps.append((op, k))
        value = _apply(value, op, k)
    return start, steps


def make_problem(rng: random.Random, tier: int) -> Problem:
    start, steps = _steps(rng, tier)
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    sentences = [f"{name} has {start} {item}."]
    lines, value = [], start
    for op, k in steps:
        template = rng.choice({"+": ADD, "-": SUB, "*": MUL}[op])
        sentences.append(template.format(n=name, k=k, item=item))
        new = _apply(value, op, k)
        lines.append(f"{value} {op} {k} = {new}.")
        value = new
    sentences.append(f"How many {item} does {name} have now?")
    question = " ".join(sentences)
    solution = " ".join(lines) + f" #### {value}"
    pid = hashlib.sha1(question.encode()).hexdigest()[:12]
    return Problem(problem_id=pid, question=question, answer=str(value), solution=solution, tier=tier)


def stream(seed: int, tier: int | None = None, exclude: frozenset[str] = frozenset()) -> Iterator[Problem]:
    """Endless deterministic stream; tiers cycle 1, 2, 3 unless one is fixed. Skips excluded questions."""
    rng = random.Random(seed)
    i = 0
    while True:
        t = tier if tier is not None else TIERS[i % len(TIERS)]
        i += 1
        p = make_problem(rng, t)
        if p.question not in exclude:
            yield p


def make_split(size: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[Problem]:
    """`size` distinct problems, tiers balanced, none of whose questions is in `exclude`."""
    seen: set[str] = set(exclude)
    out: list[Problem] = []
    for p in stream(seed):
        if len(out) == size:
            break
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


@dataclass(frozen=True)
class ArithSplits:
    bootstrap_seed: int
    pool: list[Problem]
    test: list[Problem]

    @property
    def held_out(self) -> frozenset[str]:
        """Questions the bootstrap stream must never show the model."""
        return frozenset(p.question for p in self.pool + self.test)


def arith_splits(pool_size: int, test_size: int, seed: int = 0) -> ArithSplits:
    """Test split first, then an unlabelled pool disjoint from it; bootstrap excludes both."""
    test = make_split(test_size, seed=seed * 1000 + 1)
    pool = make_split(pool_size, seed=seed * 1000 + 2, exclude=frozenset(p.question for p in test))
    return ArithSplits(bootstrap_seed=seed * 1000 + 3, pool=pool, test=test)
