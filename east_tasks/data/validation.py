"""Checks on the data before any model loads (the length check reads only the model's tokenizer). Each finding
names its file and line (JSONL) or row; by default any finding refuses the data (`data.on_invalid = "error"`),
`"skip"` drops the rows and reports the counts."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from east_tasks.data.prompts import Prompter
from east_tasks.errors import UserError

SHOWN = 5  # findings listed in the error message; the rest are counted


@dataclass(frozen=True)
class Finding:
    where: str  # "data/train.jsonl line 7"
    kind: str  # malformed | empty_question | no_gold | conflicting_gold | in_test_split | too_long
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}"


def read_jsonl(path: Path) -> tuple[list[dict], list[int], list[Finding]]:
    """The rows of a JSON-lines file, the line number of each, and a finding for each line that is not a JSON
    object (blank lines are allowed)."""
    rows, lines, bad = [], [], []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append(Finding(f"{path} line {n}", "malformed", f"malformed JSON ({err.msg}, column {err.colno})"))
                continue
            if not isinstance(row, dict):
                bad.append(Finding(f"{path} line {n}", "malformed", f"a JSON {type(row).__name__}, not an object"))
                continue
            rows.append(row)
            lines.append(n)
    return rows, lines, bad


def normalise_question(text: str) -> str:
    """Case, whitespace and trailing punctuation do not make a question new (the contamination match)."""
    return re.sub(r"\s+", " ", text.lower()).strip().rstrip(".?!")


def contamination(pool: pd.DataFrame, test: pd.DataFrame) -> list[Finding]:
    """Pool (or validation) questions that are also test questions: self-training on them trains on the test."""
    in_test = dict(zip(test.question.map(normalise_question), test["location"], strict=True))
    return [Finding(where, "in_test_split", f"question also in the test split ({in_test[q]})")
            for q, where in zip(pool.question.map(normalise_question), pool["location"], strict=True) if q in in_test]


@dataclass(frozen=True)
class LengthLimits:
    """What each prompt must fit, so that no generation meets the context mid-run: the prompt as generation builds
    it, counted with the model's tokenizer, plus the tokens its split may generate, within backend.max_model_len."""

    prompter: Prompter
    count: Callable[[list[str]], list[int]]  # each prompt's tokens, as the engine counts them
    max_model_len: int
    budgets: dict[str, tuple[int, str]]  # split -> (max_tokens, the field it comes from)


def too_long(df: pd.DataFrame, split: str, limits: LengthLimits) -> list[Finding]:
    """The questions of a split whose prompt and token budget do not fit `limits.max_model_len`."""
    if not len(df):
        return []
    budget, field = limits.budgets[split]
    counts = limits.count([limits.prompter(q) for q in df.question])
    return [Finding(where, "too_long", f"{limits.prompter.mode} prompt of {n} tokens + {field} {budget} = "
                                       f"{n + budget} > backend.max_model_len {limits.max_model_len}")
            for where, n in zip(df["location"], counts, strict=True) if n + budget > limits.max_model_len]


class DataProblems(UserError):
    def __init__(self, findings: list[Finding]):
        counts = Counter(f.kind for f in findings)
        shown = "\n".join(f"  {f}" for f in findings[:SHOWN])
        more = f"\n  ... and {len(findings) - SHOWN} more" if len(findings) > SHOWN else ""
        lengths = ("; a prompt too long fits with a shorter question or prompt (data.prompt), a lower max_tokens "
                   "or a higher backend.max_model_len (at most the model's context)") if "too_long" in counts else ""
        super().__init__(f"the data has {len(findings)} problem(s) ({', '.join(f'{n} {k}' for k, n in counts.items())})"
                         f":\n{shown}{more}\nfix them, or set data.on_invalid=skip to drop those rows{lengths}")
