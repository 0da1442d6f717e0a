"""The `data` section: where questions come from, which columns hold what, and each source's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from east_tasks.config.base import Section
from east_tasks.core.registry import IMPORT_PATH
from east_tasks.core.styles import BUILTIN_ANSWER_STYLES, allowed_answer_styles, registered_answer_styles


class ColumnMap(Section):
    """Which dataset columns hold what. The gold answer is `answer` where that column exists and the row's
    value is non-empty, else the final answer of `solution` (gsm8k style: its `#### N`; math: its last
    \\boxed{}). Unset names take the source's defaults (`SOURCE_DEFAULTS`)."""

    question: str | None = Field(None, description="column holding the question text")
    answer: str | None = Field(None, description="column holding the gold final answer (optional when `solution` "
                               "has one)")
    solution: str | None = Field(None, description="column holding a reference solution whose final answer is the "
                                 "gold one where `answer` is empty or missing")
    tier: str | None = Field(None, description="optional difficulty column (e.g. MATH's `level`), for per-tier metrics")


# Per-source defaults, applied by DataConfig's validator (and so recorded with each run).
SOURCE_DEFAULTS: dict[str, dict] = {
    "arith": {"answer_style": "gsm8k", "prompt": "zeroshot"},  # the backbone was trained on "Q: {q}\nA:"
    # The release's `answer` field is a solution ending in `#### N`.
    "gsm8k": {"answer_style": "gsm8k", "hub_config": "main", "columns": {"question": "question", "solution": "answer"}},
    "math": {"answer_style": "math", "columns": {"question": "problem", "answer": "answer", "solution": "solution",
                                                 "tier": "level"}},
    "table": {"columns": {"question": "question", "answer": "answer"}},
}


class DataConfig(Section):
    """Where questions come from: `arith` is the embedded task; `gsm8k`, `math` and `table` (any JSONL / Parquet /
    CSV with a column mapping) read a hub dataset name or a local dir with `<split>.jsonl|.json|.parquet|.csv`."""

    source: Literal["arith", "gsm8k", "math", "table"] = Field(
        "arith", description="arith: the embedded task; gsm8k / math: those releases; table: any file, mapped by "
        "`columns`")
    path: str | None = Field(None, description="hub name (openai/gsm8k) or a dir with <split>.jsonl|.parquet|.csv")
    hub_config: str | None = Field(None, description="the hub dataset's config name for `path` (gsm8k: main)")
    pool_split: str = Field("train", description="split of `path` the unlabelled questions come from")
    test_split: str = Field("test", description="split of `path` (or `test_path`) the held-out test questions "
                            "come from")
    test_path: str | None = Field(None, description="take the test split from this dataset instead (e.g. MATH-500)")
    columns: ColumnMap | None = Field(None, description="which columns hold the question, answer, solution and "
                                      "tier; unset names take the source's defaults")
    answer_style: str | None = Field(None, description="how answers are extracted and compared: gsm8k, math, mcq, "
                                     "a 'module:function' or 'module:object' import path, or an entry point of "
                                     "group east.answer_styles (docs/answer-styles.md)")
    prompt: Literal["auto", "chat", "fewshot", "zeroshot"] = Field(
        "auto", description="zeroshot: 'Q: {q}\\nA:'; fewshot: four worked examples in that format first; chat: "
        "the tokenizer's chat template; auto: chat where the tokenizer has a template, else fewshot")
    stop: tuple[str, ...] | None = Field(None, description="stop strings (default: '\\nQ:' for plain prompts)")
    # arith: every split is disjoint from the backbone's labelled set by construction (east_tasks.data.arith).
    pool_size: int = Field(2000, ge=1, description="unlabelled self-training questions (only answers used)")
    validation_size: int = Field(0, ge=0, description="held-out questions every choice (lr, a, epochs) is made "
                                 "on; greedy only. Real data: taken from the pool split, after the pool")
    test_size: int = Field(600, ge=1, description="held-out test questions (real data: the first rows of the "
                           "test split)")
    seed: int = Field(0, description="arith: the seed its questions are generated with (real data takes the "
                      "first rows of each split)")
    pool_tiers: tuple[int, ...] | None = Field(None, description="arith: the tiers the pool's questions cycle "
                                               "through, repeated to skew it (1,1,2,2,3 is 40 % tier 1); null: "
                                               "every tier evenly")
    pool_answers: tuple[int, int] | None = Field(None, description="arith: only pool questions whose answer lies in "
                                                 "[lo, hi] (a small range makes answers guessable, so wrong "
                                                 "steps often land on the right number); null: any answer")
    on_invalid: Literal["error", "skip"] = Field("error", description="data with malformed lines, empty "
                                                 "questions or answers, conflicting duplicates, test questions "
                                                 "in the pool or prompts too long for backend.max_model_len: "
                                                 "refuse it (listing them), or drop those rows")

    @model_validator(mode="before")
    @classmethod
    def _source_defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        defaults = SOURCE_DEFAULTS.get(data.get("source", "arith"), {})
        out = {**{k: v for k, v in defaults.items() if k != "columns"}, **{k: v for k, v in data.items()
                                                                           if v is not None}}
        if "columns" in defaults:
            given = data.get("columns") or {}
            given = given.model_dump(exclude_none=True) if isinstance(given, ColumnMap) else given
            out["columns"] = {**defaults["columns"], **given}
        return out

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source != "arith" and not self.path:
            raise ValueError(f"data.path is required for source {self.source!r} (hub name or local dir)")
        if self.source != "arith" and (self.pool_tiers is not None or self.pool_answers is not None):
            raise ValueError("data.pool_tiers and data.pool_answers shape the embedded task's pool (source arith); "
                             f"not source {self.source!r}")
        if self.pool_tiers is not None and not set(self.pool_tiers) <= set(range(1, 7)):
            raise ValueError(f"data.pool_tiers: tiers are 1 to 6, not {list(self.pool_tiers)}")
        if self.pool_answers is not None and self.pool_answers[0] > self.pool_answers[1]:
            raise ValueError(f"data.pool_answers must be [lo, hi] with lo <= hi, not {list(self.pool_answers)}")
        if self.answer_style is None:
            raise ValueError(f"data.answer_style is required for source {self.source!r}: "
                             f"{', '.join(BUILTIN_ANSWER_STYLES)} or a 'module:function' import path")
        return self

    @field_validator("answer_style")
    @classmethod
    def _answer_style_form(cls, style: str | None) -> str | None:
        """The form only: importing the user's code is preflight's (`east_tasks.core.styles.load_style`)."""
        if style is None or style in BUILTIN_ANSWER_STYLES or IMPORT_PATH.fullmatch(style) \
                or style in registered_answer_styles():
            return style
        raise ValueError(f"unknown style {style!r}; {allowed_answer_styles()}")

