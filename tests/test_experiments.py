import pytest

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.steps import EvalKeys, ModelRef


def test_an_experiment_name_keeps_one_configuration(tmp_path) -> None:
    cfg = load_config("tiny-test", experiment="exp", data_dir=tmp_path)
    steps.preflight(cfg)  # new name: fine
    steps.record_round(cfg, 0, ModelRef(path="m", hash="h"), EvalKeys(test="e"))
    steps.preflight(load_config("tiny-test", experiment="exp", data_dir=tmp_path, rounds=5))
    with pytest.raises(ValueError, match=r"weighting.a: 0.0 -> 1.0.*choose a new experiment name"):
        steps.preflight(load_config("tiny-test", experiment="exp", data_dir=tmp_path,
                                              weighting={"a": 1.0}))
    steps.preflight(load_config("tiny-test", experiment="other", data_dir=tmp_path,
                                   weighting={"a": 1.0}))


def test_missing_local_base_model_is_named(tmp_path) -> None:
    cfg = load_config("tiny-test", data_dir=tmp_path, base_model=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="base_model .*nope.*: no such directory"):
        steps.preflight(cfg)
