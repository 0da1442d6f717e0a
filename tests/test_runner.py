"""The step runner on hand-made steps and a real store: one timer, the gate before computing, what runs after the
commit, results found outside the store, and GPU time only for the steps that compute on the GPU."""

from __future__ import annotations

import pytest

from east_tasks import cost
from east_tasks.config import load_config
from east_tasks.errors import UserError
from east_tasks.steps.runner import Output, Step, StepResult, run_step
from east_tasks.store import Store


def _cfg(tmp_path):
    return load_config("tiny-test", data_dir=tmp_path)


def _status(cfg, key: str) -> tuple | None:
    with Store(cfg.store_path) as store:
        rows = store.execute("SELECT status, wall_s, gpu_s FROM step_status WHERE step_key = ?", [key])
    return rows[0] if rows else None


def test_a_computed_step_reports_the_seconds_it_records_and_is_then_found(tmp_path) -> None:
    cfg, calls, after = _cfg(tmp_path), [], []

    def compute(ctx) -> Output[int]:
        calls.append(ctx.key)
        return Output(lambda store: {"wrote": 1}, {"n": 2}, value=7)

    step = Step("s", "k1", compute, load=lambda store: (7, store.step_detail("k1")), after_commit=after.append)
    first = run_step(cfg, step)
    assert (first.cached, first.value, first.info) == (False, 7, {"n": 2, "wrote": 1})
    status, wall_s, gpu_s = _status(cfg, "k1")
    assert status == "done" and first.seconds == wall_s and gpu_s == 0.0  # one timer
    assert after == [first]  # once the rows are in
    second = run_step(cfg, step)
    assert (second.cached, second.value, second.info) == (True, 7, {"n": 2, "wrote": 1})
    assert calls == ["k1"] and after == [first]  # found: not computed, nothing after a commit


def test_the_check_refuses_before_anything_is_computed_or_marked(tmp_path) -> None:
    cfg = _cfg(tmp_path)

    def refuse(store) -> None:
        raise UserError("refused")

    def compute(ctx) -> Output:
        raise AssertionError("computed")

    with pytest.raises(UserError, match="refused"):
        run_step(cfg, Step("s", "k2", compute, check=refuse))
    assert _status(cfg, "k2") is None


def test_a_result_found_outside_the_store_needs_no_mark_and_an_invalid_one_is_computed_again(tmp_path) -> None:
    cfg, there, calls = _cfg(tmp_path), [True], []

    def compute(ctx) -> Output:
        calls.append(1)
        there[0] = True
        return Output()

    step = Step("files", "k3", compute, found=lambda: there[0],
                invalid=lambda store: None if there[0] else "files missing")
    assert run_step(cfg, step).cached and _status(cfg, "k3") is None and not calls
    there[0] = False
    assert not run_step(cfg, step).cached and _status(cfg, "k3")[0] == "done" and calls == [1]
    there[0] = False  # done, but its files are gone
    assert not run_step(cfg, step).cached and calls == [1, 1]


def test_gpu_time_is_that_of_the_steps_that_compute_on_the_gpu(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cost, "_on_gpu", lambda: True)  # a GPU is visible
    cfg = _cfg(tmp_path)
    inner: list[StepResult] = []

    def outer(ctx) -> Output:  # a selection that scores responses inside it
        inner.append(run_step(cfg, Step("scoring", "gpu-inner", lambda ctx: Output(), gpu=True)))
        return Output()

    run_step(cfg, Step("sql only", "cpu", lambda ctx: Output()))
    run_step(cfg, Step("selection", "cpu-outer", outer))
    assert _status(cfg, "cpu")[2] == 0.0
    assert _status(cfg, "gpu-inner")[2] == inner[0].seconds > 0
    assert _status(cfg, "cpu-outer")[2] == pytest.approx(inner[0].seconds, abs=1e-3)


def test_a_result_of_several_steps_is_found_only_when_every_one_was() -> None:
    parts = [StepResult("a", "ka", True, 1.0), StepResult("b", "kb", False, 2.0)]
    result = StepResult.of("both", parts, "v")
    assert (result.key, result.cached, result.seconds, result.value) == ("kb", False, 3.0, "v")
    assert StepResult.of("both", parts[:1], None).cached
