"""What the Prefect UI shows of east's runs (flows/states.py), on a real Prefect API with small flows: a task whose
steps were all found in the store ends Cached, one that computed any ends Completed, and the caller gets the value
either way; a retried parent run marks its subflow's failed attempt Superseded by the new one."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, TaskRunFilter, TaskRunFilterFlowRunId
from prefect.runtime import flow_run

from east_tasks.steps import StepResult
from flows.faults import FAIL_ONCE_ENV, fail_once_if_asked
from flows.states import ended, supersede_earlier_attempts


@task(cache_policy=NO_CACHE)
def steps_task(cached: list[bool]):
    parts = [StepResult(f"step {i}", f"key{i}", was_cached, 0.0) for i, was_cached in enumerate(cached)]
    return ended(StepResult.of("steps", parts, f"{sum(cached)} of {len(cached)} cached"))


@flow(flow_run_name="round-{round_}")
def round_flow(round_: int, data_dir: str) -> str:
    supersede_earlier_attempts()
    fail_once_if_asked("round", Path(data_dir))
    return steps_task([True]).result().value


@flow
def parent_flow() -> tuple[list[str], str]:
    values = [steps_task(cached).result().value for cached in ([True], [True, True], [True, False], [False])]
    return values, flow_run.id


def _task_states(client, flow_run_id: str, count: int) -> list[str]:
    """The final state names of a flow run's `count` task runs, in the order they started. Task runs report their
    states as events, which reach the API a moment later."""
    deadline = time.time() + 60
    while True:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])))
        if (len(runs) == count and all(r.state.is_final() for r in runs)) or time.time() > deadline:
            return [r.state.name for r in sorted(runs, key=lambda r: r.start_time)]
        time.sleep(0.5)


def test_tasks_end_cached_only_when_every_step_was_found(prefect_server) -> None:
    values, run_id = parent_flow()
    assert values == ["1 of 1 cached", "2 of 2 cached", "1 of 2 cached", "0 of 1 cached"]  # `.result().value`
    with get_client(sync_client=True) as client:
        assert _task_states(client, run_id, 4) == ["Cached", "Cached", "Completed", "Completed"]


@flow(retries=1, retry_delay_seconds=0)
def retried_parent(data_dir: str) -> str:
    return round_flow(1, data_dir)


def test_a_retried_parent_supersedes_its_subflows_failed_attempt(prefect_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(FAIL_ONCE_ENV, "round")  # the subflow raises in the first attempt, the parent retries
    assert retried_parent(str(tmp_path)) == "1 of 1 cached"
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["round-1"])))
        assert len({r.parent_task_run_id for r in runs}) == 1  # Prefect's retry: a new subflow run beside the old
        by_state = {r.state.name: r for r in runs}
        assert sorted(by_state) == ["Completed", "Superseded"], [(r.state.name, r.state.message) for r in runs]
        new, old = by_state["Completed"], by_state["Superseded"]
        assert old.state.type.value == "CANCELLED"
        assert f"superseded by flow run round-1 ({new.id})" in old.state.message
        assert "it was Failed: " in old.state.message and "fault injected" in old.state.message
        # the parent's task run for the subflow (shared by both) follows the new run, not the superseded one
        parent_task = client.read_task_run(new.parent_task_run_id)
        assert parent_task.state.is_completed() and parent_task.state.state_details.child_flow_run_id == new.id
        assert _task_states(client, str(new.id), 1) == ["Cached"]
