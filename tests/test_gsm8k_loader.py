"""GSM8K from a local directory in the release format (the same `datasets` path a hub name takes)."""

import json
from pathlib import Path

import pytest

from east_tasks.config import DataConfig
from east_tasks.data.sources import load_splits

FIXTURES = Path(__file__).parent / "fixtures" / "gsm8k"


def test_local_gsm8k_release_files() -> None:
    key, splits = load_splits(DataConfig(source="gsm8k", path=str(FIXTURES), pool_size=4, test_size=10))
    assert len(splits["pool"]) == 4 and len(splits["test"]) == 3  # capped by size, and by the file
    assert list(splits["test"].answer) == ["18", "3", "70000"]
    assert splits["test"].question[0].startswith("Janet")
    assert key == load_splits(DataConfig(source="gsm8k", path=str(FIXTURES), pool_size=4, test_size=10))[0]


def test_missing_answer_marker_names_split_and_row(tmp_path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "test.jsonl").read_text().splitlines()]
    rows[1]["answer"] = "no final marker here"
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "train.jsonl").write_text((FIXTURES / "train.jsonl").read_text())
    with pytest.raises(ValueError, match="gsm8k test row 1: field 'answer' has no '#### N'"):
        load_splits(DataConfig(source="gsm8k", path=str(tmp_path)))


def test_missing_file_is_named(tmp_path) -> None:
    (tmp_path / "train.jsonl").write_text((FIXTURES / "train.jsonl").read_text())
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        load_splits(DataConfig(source="gsm8k", path=str(tmp_path)))
