import pytest

from east_tasks import pipeline
from east_tasks.config import load_config
from east_tasks.pipeline import ModelRef


def test_an_experiment_name_keeps_one_configuration(tmp_path) -> None:
    cfg = load_config("tiny-test", experiment="exp", data_dir=tmp_path)
    pipeline.check_experiment(cfg)  # new name: fine
    pipeline.record_round(cfg, 0, ModelRef(path="m", hash="h"), eval_key="e")
    pipeline.check_experiment(load_config("tiny-test", experiment="exp", data_dir=tmp_path, rounds=5))
    with pytest.raises(ValueError, match=r"weighting.a: 0.0 -> 1.0.*choose a new experiment name"):
        pipeline.check_experiment(load_config("tiny-test", experiment="exp", data_dir=tmp_path,
                                              weighting={"a": 1.0}))
    pipeline.check_experiment(load_config("tiny-test", experiment="other", data_dir=tmp_path,
                                          weighting={"a": 1.0}))
