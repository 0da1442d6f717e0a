"""Tracker settings are checked before any work; what a tracked run logs is read back in test_flow.py."""

import os

import pytest
from pydantic import ValidationError

from east_tasks.config import load_config
from east_tasks.errors import UserError
from east_tasks.report import tracking
from east_tasks.steps import preflight


def test_an_unknown_tracker_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValidationError, match="'mlflow', 'wandb' or 'tensorboard'"):
        load_config("tiny-test", tracking={"report_to": ["comet"]})


def test_a_tracker_that_is_not_installed_is_a_user_error_before_anything_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(tracking.PACKAGES, "wandb", ("east_no_such_module", "wandb"))
    cfg = load_config("tiny-test", data_dir=tmp_path, tracking={"report_to": ["wandb"]})
    with pytest.raises(UserError, match=r"report_to includes 'wandb', but east_no_such_module is not installed "
                                        r"\(pip install wandb\)"):
        preflight(cfg)
    assert not (tmp_path / "east.duckdb").exists()  # refused before the store was opened


def test_training_without_trackers_reports_nowhere_and_leaves_the_environment_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    with tracking.training_run(load_config("tiny-test", data_dir=tmp_path), "x") as kwargs:
        assert kwargs == {"report_to": []}
    cfg = load_config("tiny-test", data_dir=tmp_path, tracking={"report_to": ["tensorboard"]})
    with tracking.training_run(cfg, "x-round-1") as kwargs:
        assert kwargs == {"report_to": ["tensorboard"], "run_name": "x-round-1"}
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tensorboard" / cfg.experiment / "x-round-1")
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ
