"""The states east's runs end in, so that the Prefect UI tells reused work from computed work and a retry from
the attempt it replaced.

- A task whose steps were all found in the store ends **Cached** (Prefect's name for a COMPLETED state whose result
  was reused), decided by the steps' own keys (`StepResult.cached`); Prefect's task caching stays off (NO_CACHE),
  the store being the one cache. A task that runs steps returns its `StepResult` in that state, and its caller
  takes it with `.result()`.
- Retrying a flow run gives each subflow that had failed a new flow run beside the failed one (Prefect 3.7.7,
  `FlowRunEngine.load_subflow_run`): the new run marks the earlier ones **Superseded**, pointing to itself.
"""

from __future__ import annotations

from typing import TypeVar

from prefect import get_client, get_run_logger
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateDetails, StateType
from prefect.context import FlowRunContext
from prefect.states import Cancelled, Completed, Running, State

from east_tasks.steps import StepResult

T = TypeVar("T")
CACHED, SUPERSEDED = "Cached", "Superseded"


def ended(result: StepResult[T]) -> State[StepResult[T]]:
    """The end state of a task that ran the steps of `result`: Cached when every one was found in the store, else
    Completed; `.result()` gives its caller the `StepResult`."""
    return Completed(data=result, name=CACHED if result.cached else "Completed")


def supersede_earlier_attempts() -> int:
    """Marks the failed or crashed runs of this subflow from earlier attempts of its parent run (the same parent
    task run) Superseded by this one; returns how many. They end CANCELLED: they will not finish, and they no longer
    count as this round's failure."""
    run = FlowRunContext.get().flow_run
    if run is None or run.parent_task_run_id is None:
        return 0
    with get_client(sync_client=True) as client:
        stale = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[run.parent_task_run_id]),
            id=FlowRunFilterId(not_any_=[run.id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))))
        for earlier in stale:
            client.set_flow_run_state(earlier.id, Cancelled(
                name=SUPERSEDED, message=f"superseded by flow run {run.name} ({run.id}), started by a retry of the "
                f"parent run; it was {earlier.state.name}: {earlier.state.message}"), force=True)
            get_run_logger().info(f"{earlier.name} ({earlier.id}), of an earlier attempt: superseded by this run")
        if stale:  # the server copied the last one's state to the parent task run they share: back to this run's
            client.set_task_run_state(run.parent_task_run_id, Running(
                state_details=StateDetails(child_flow_run_id=run.id)), force=True)
    return len(stale)
