import pytest

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.steps import EvalKeys, ModelRef


def test_an_experiment_name_keeps_one_configuration(tmp_path) -> None:
    cfg = load_config("tiny-test", experiment="exp", data_dir=tmp_path)
    steps.preflight(cfg)  # new name: fine, and nothing is claimed yet (bad data may still refuse the run)
    steps.preflight(load_config("tiny-test", experiment="exp", data_dir=tmp_path, weighting={"a": 1.0}))
    steps.claim_experiment(cfg)
    steps.claim_experiment(cfg)  # the same configuration again: its own
    steps.record_round(cfg, 0, ModelRef(path="m", hash="h"), EvalKeys(test="e"))
    steps.preflight(load_config("tiny-test", experiment="exp", data_dir=tmp_path, rounds=5))
    other = load_config("tiny-test", experiment="exp", data_dir=tmp_path, weighting={"a": 1.0})
    for check in (steps.preflight, steps.claim_experiment):
        with pytest.raises(ValueError, match=r"weighting.a: 0.0 -> 1.0.*choose a new experiment name"):
            check(other)
    steps.preflight(load_config("tiny-test", experiment="other", data_dir=tmp_path,
                                   weighting={"a": 1.0}))


def test_missing_local_base_model_is_named(tmp_path) -> None:
    cfg = load_config("tiny-test", data_dir=tmp_path, base_model=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="base_model .*nope.*: no such directory"):
        steps.preflight(cfg)


def test_a_disk_that_cannot_hold_a_checkpoint_is_refused_at_the_start(tmp_path) -> None:
    from east_tasks.errors import EnvironmentFault
    from east_tasks.steps.data import _check_free_disk

    cfg = load_config("tiny-test", data_dir=tmp_path / "data")
    _check_free_disk(cfg, 1_000_000)  # the tiny model's checkpoints fit
    with pytest.raises(EnvironmentFault, match=r"disk full: \d+ MB free on the file system of data_dir .*data"):
        _check_free_disk(cfg, 10**18)  # an exabyte-sized model's do not
