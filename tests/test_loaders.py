"""Dataset loaders through `datasets`: GSM8K and MATH release formats, and any JSONL / Parquet / CSV with a
column mapping, all from local files (the same `load_dataset` path a hub name takes)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from east_tasks.config import DataConfig
from east_tasks.core.answers import answers_match
from east_tasks.data.sources import load_splits
from east_tasks.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K = FIXTURES / "gsm8k"
MATH = FIXTURES / "math"


def test_local_gsm8k_release_files() -> None:
    key, splits, _ = load_splits(DataConfig(source="gsm8k", path=str(GSM8K), pool_size=4, test_size=10))
    assert len(splits["pool"]) == 4 and len(splits["test"]) == 3  # capped by size, and by the file
    assert list(splits["test"].answer) == ["18", "3", "70000"]
    assert splits["test"].question[0].startswith("Janet")
    assert key == load_splits(DataConfig(source="gsm8k", path=str(GSM8K), pool_size=4, test_size=10))[0]


def test_missing_answer_marker_names_file_and_row(tmp_path) -> None:
    rows = [json.loads(line) for line in (GSM8K / "test.jsonl").read_text().splitlines()]
    rows[1]["answer"] = "no final marker here, just 12"
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "train.jsonl").write_text((GSM8K / "train.jsonl").read_text())
    with pytest.raises(ValueError, match=r"test.jsonl line 2: column 'answer' has no '#### N' final answer"):
        load_splits(DataConfig(source="gsm8k", path=str(tmp_path)))


def test_missing_file_is_named(tmp_path) -> None:
    (tmp_path / "train.jsonl").write_text((GSM8K / "train.jsonl").read_text())
    with pytest.raises(UserError, match="no file for split 'test' .*test.jsonl, test.json, test.parquet"):
        load_splits(DataConfig(source="gsm8k", path=str(tmp_path)))


def test_math_gold_from_answer_column_or_last_box_of_the_solution() -> None:
    _, splits, _ = load_splits(DataConfig(source="math", path=str(MATH)))
    pool, test = splits["pool"], splits["test"]
    # train has no `answer` column: the gold is the last \boxed{} of the solution (nested braces kept whole)
    assert list(pool.answer) == ["\\frac{1}{2}", "6\\sqrt{2}", "(-1, 3)",
                                 "\\begin{pmatrix} 11 \\\\ 4 \\end{pmatrix}"]
    assert list(pool.tier) == [1, 2, 3, 2]  # "Level 2" -> 2
    assert list(test.answer) == ["120^\\circ", "\\text{Sunday}", "(2,-1)"]  # the `answer` column wins
    assert list(test.tier) == [2, 1, 2]  # MATH-500 stores the level as a number
    assert test.question[1] == "Which day of the week comes two days after Friday?"


def test_math_test_split_from_another_dataset(tmp_path) -> None:
    """The math-1.5b preset's shape: MATH train as the pool, MATH-500 as the test set."""
    (tmp_path / "test.jsonl").write_text((MATH / "test.jsonl").read_text().splitlines()[0] + "\n")
    _, splits, _ = load_splits(DataConfig(source="math", path=str(MATH), test_path=str(tmp_path)))
    assert len(splits["pool"]) == 4 and list(splits["test"].answer) == ["120^\\circ"]


def test_math_solution_without_box_is_refused_with_file_and_row(tmp_path) -> None:
    rows = [json.loads(line) for line in (MATH / "train.jsonl").read_text().splitlines()]
    rows[2]["solution"] = "So $x$ lies between $-1$ and $3$."
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text((MATH / "test.jsonl").read_text())
    with pytest.raises(ValueError, match=r"train.jsonl line 3: column 'solution' has no \\boxed\{\} final answer"):
        load_splits(DataConfig(source="math", path=str(tmp_path)))


def _write(df: pd.DataFrame, path: Path) -> None:
    {".parquet": df.to_parquet, ".csv": lambda p: df.to_csv(p, index=False),
     ".jsonl": lambda p: df.to_json(p, orient="records", lines=True)}[path.suffix](path)


@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ".csv"])
def test_table_source_with_a_column_mapping(tmp_path, ext: str) -> None:
    pool = pd.DataFrame({"prompt": ["What is 2 + 3?", "What is half of 9?", "What is 2 + 3?"],
                         "target": [5, 4.5, 5], "difficulty": ["easy", "hard 2", "easy"]})
    test = pd.DataFrame({"prompt": ["What is 10 * 10?"], "target": ["1,000"], "difficulty": ["3"]})
    _write(pool, tmp_path / f"train{ext}")
    _write(test, tmp_path / f"test{ext}")
    cfg = DataConfig(source="table", path=str(tmp_path), answer_style="gsm8k",
                     columns={"question": "prompt", "answer": "target", "tier": "difficulty"})
    _, splits, _ = load_splits(cfg)
    assert list(splits["pool"].question) == ["What is 2 + 3?", "What is half of 9?"]  # duplicate dropped
    # stored as the file gives them (a mixed int/float column reads as floats); compared after normalisation
    assert list(splits["pool"].answer) == ["5.0", "4.5"] and list(splits["test"].answer) == ["1,000"]
    assert answers_match("5", "5.0", "gsm8k") and answers_match("1000", "1,000", "gsm8k")
    assert list(splits["pool"].tier) == [0, 2]


def test_table_gold_from_a_mapped_solution_column(tmp_path) -> None:
    df = pd.DataFrame({"q": ["Simplify $\\frac{2}{4}$."], "worked": ["Divide by 2: $\\boxed{\\frac{1}{2}}$."]})
    df.to_parquet(tmp_path / "test.parquet")
    df.assign(q="Simplify $\\frac{3}{6}$.").to_parquet(tmp_path / "train.parquet")  # not a test question
    cfg = DataConfig(source="table", path=str(tmp_path), answer_style="math",
                     columns={"question": "q", "solution": "worked"})
    assert load_splits(cfg)[1]["test"].answer.tolist() == ["\\frac{1}{2}"]


def test_missing_column_names_file_column_and_what_is_there(tmp_path) -> None:
    df = pd.DataFrame({"prompt": ["What is 2 + 3?"], "target": ["5"]})
    for split in ("train", "test"):
        df.to_csv(tmp_path / f"{split}.csv", index=False)
    cfg = DataConfig(source="table", path=str(tmp_path), answer_style="gsm8k", columns={"question": "prompt"})
    with pytest.raises(ValueError, match=r"train.csv: no column 'answer' \(data.columns.answer\) and no "
                                         r"data.columns.solution .*available columns: prompt, target"):
        load_splits(cfg)
    cfg = DataConfig(source="table", path=str(tmp_path), answer_style="gsm8k",
                     columns={"question": "text", "answer": "target"})
    with pytest.raises(ValueError, match=r"train.csv: no column 'text' \(data.columns.question\); "
                                         r"available columns: prompt, target"):
        load_splits(cfg)
    with pytest.raises(ValueError, match=r"math/train.jsonl: no column 'q' \(data.columns.question\); "
                                         r"available columns: level, problem, solution, type"):
        load_splits(DataConfig(source="math", path=str(MATH), columns={"question": "q"}))


def test_data_config_defaults_by_source_and_clear_errors() -> None:
    gsm = DataConfig(source="gsm8k", path="openai/gsm8k")
    assert (gsm.answer_style, gsm.hub_config, gsm.columns.solution, gsm.prompt) == ("gsm8k", "main", "answer", "auto")
    math = DataConfig(source="math", path="HuggingFaceH4/MATH-500", columns={"question": "question"})
    assert (math.answer_style, math.columns.question, math.columns.solution) == ("math", "question", "solution")
    assert DataConfig().prompt == "zeroshot"  # the embedded task keeps the prompt its backbone was trained on
    assert DataConfig.model_validate(json.loads(math.model_dump_json())) == math  # recorded configs round-trip
    with pytest.raises(ValidationError, match="data.answer_style is required for source 'table'"):
        DataConfig(source="table", path="x")
    with pytest.raises(ValidationError, match="data.path is required for source 'math'"):
        DataConfig(source="math")
    with pytest.raises(ValidationError, match="answer_style"):
        DataConfig(source="table", path="x", answer_style="latex")


def _gsm8k_dir(tmp_path: Path, train_lines: list[str], test_lines: list[str] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.jsonl").write_text("".join(line + "\n" for line in train_lines))
    test = test_lines if test_lines is not None else (GSM8K / "test.jsonl").read_text().splitlines()
    (tmp_path / "test.jsonl").write_text("".join(line + "\n" for line in test))
    return tmp_path


def _row(question: object, answer: str) -> str:
    return json.dumps({"question": question, "answer": f"Work. #### {answer}"})


def test_bad_rows_are_named_with_file_and_line_and_refused_before_anything_runs(tmp_path) -> None:
    test_q = json.loads((GSM8K / "test.jsonl").read_text().splitlines()[0])["question"]
    lines = [_row("What is 1 + 1?", "2"),
             '{"question": "What is 2 + 2?", "answer": "#### 4"',  # line 2: cut off
             _row("", "3"), _row(None, "3"),  # lines 3, 4: empty and null questions
             _row("What is 5 + 1?", "5"), _row("What is 5 + 1?", "6"),  # lines 5, 6: one question, two golds
             _row("What is 1 + 1?", "2"),  # line 7: a plain duplicate of line 1 (same gold): kept once
             _row("  " + test_q.upper() + " ", "18"),  # line 8: a test question, other case and spacing
             _row("What is 3 + 4?", "7")]
    path = _gsm8k_dir(tmp_path, lines)
    with pytest.raises(UserError) as err:
        load_splits(DataConfig(source="gsm8k", path=str(path)))
    message = str(err.value)
    assert "5 problem(s) (1 malformed, 2 empty_question, 1 conflicting_gold, 1 in_test_split)" in message
    assert f"{path / 'train.jsonl'} line 2: malformed JSON" in message
    assert "line 3: empty question" in message and "line 4: empty question" in message
    assert f"line 6: the question of {path / 'train.jsonl'} line 5 again, with gold answer '6' there '5'" in message
    assert "more" not in message and "data.on_invalid=skip" in message  # 5 findings: all shown

    key, splits, dropped = load_splits(DataConfig(source="gsm8k", path=str(path), on_invalid="skip"))
    assert list(splits["pool"].question) == ["What is 1 + 1?", "What is 3 + 4?"]  # 5 + 1 is ambiguous: gone
    assert [f.where.rsplit(" ", 1)[-1] for f in dropped] == ["2", "3", "4", "6", "8"]
    assert [f.kind for f in dropped] == ["malformed", "empty_question", "empty_question", "conflicting_gold",
                                         "in_test_split"]
    assert "test.jsonl line 1" in dropped[-1].detail  # which test question it duplicates
    assert len(splits["test"]) == 3


def test_more_findings_than_shown_are_counted(tmp_path) -> None:
    path = _gsm8k_dir(tmp_path, [_row("", "1")] * 8 + [_row("What is 1 + 2?", "3")])
    with pytest.raises(UserError, match=r"(?s)8 problem\(s\) \(8 empty_question\).*line 5: empty.*and 3 more"):
        load_splits(DataConfig(source="gsm8k", path=str(path)))


def test_skipped_rows_are_recorded_in_the_store(tmp_path) -> None:
    from east_tasks import steps
    from east_tasks.config import load_config
    from east_tasks.store import Store

    path = _gsm8k_dir(tmp_path / "d", [_row("What is 1 + 2?", "3"), "not json", _row("What is 2 + 2?", "4")])
    cfg = load_config("tiny-test", data_dir=tmp_path, eval={"max_tokens": 32},  # the tiny model's 256 tokens
                      data={"source": "gsm8k", "path": str(path), "on_invalid": "skip", "pool_size": 5,
                            "prompt": "zeroshot"})
    result = steps.prepare_data(cfg)
    assert result.info["dropped"] == {"malformed": 1} and result.info["pool"] == 2
    with Store(cfg.store_path) as store:
        rows = store.query("SELECT * FROM data_findings WHERE dataset_key = ?", [result.key])
    assert rows.location.tolist() == [f"{path / 'train.jsonl'} line 2"] and rows.kind.tolist() == ["malformed"]


def test_a_label_free_pool_may_lack_gold_but_validation_may_not(tmp_path) -> None:
    unlabelled = [json.dumps({"question": "What is 2 + 5?", "answer": "no marker, no gold"}),
                  json.dumps({"question": "What is 9 - 4?"})]  # no answer column in this row at all
    lines = [_row("What is 1 + 1?", "2"), *unlabelled, _row("What is 3 + 4?", "7"), unlabelled[0]]
    path = _gsm8k_dir(tmp_path, lines)
    with pytest.raises(UserError, match=r"(?s)3 problem\(s\) \(3 no_gold\).*line 3: no gold answer \(column "
                       r"'answer' empty\)"):  # gold labels: refused, as always
        load_splits(DataConfig(source="gsm8k", path=str(path), pool_size=4))

    _, splits, _ = load_splits(DataConfig(source="gsm8k", path=str(path), pool_size=4), pool_gold_required=False)
    assert list(splits["pool"].answer) == ["2", "", "", "7"]  # the repeat of line 2 is one question

    # a validation question (after the pool's) is graded, so it needs its gold even in label-free rounds
    cfg = DataConfig(source="gsm8k", path=str(path), pool_size=2, validation_size=2)
    with pytest.raises(UserError, match=r"line 3: no gold answer, which a validation question needs"):
        load_splits(cfg, pool_gold_required=False)
    _, splits, dropped = load_splits(cfg.model_copy(update={"on_invalid": "skip"}), pool_gold_required=False)
    assert list(splits["validation"].answer) == ["7"] and [f.kind for f in dropped] == ["no_gold"]
