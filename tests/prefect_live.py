"""A real Prefect server process (`east server`) for the tests that operate east from Prefect, and a client for
its REST API (the one the UI talks to)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

EAST = [str(Path(sys.executable).parent / "east")]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RetryWhileBusy(httpx.HTTPTransport):
    """Prefect's SQLite database answers 503 ("database is locked") while a busy machine's writers queue up;
    the UI shows an error and the person clicks again, so the test client asks again too (10 times, 1 s apart)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(10):
            response = super().handle_request(request)
            if response.status_code != 503:
                return response
            response.close()
            time.sleep(1)
        return response


class Live:
    """A Prefect server process and its REST API (the one the UI talks to)."""

    def __init__(self, url: str, data_dir: Path, auth_string: str | None = None):
        self.url, self.data_dir = url, data_dir
        self.worker: subprocess.Popen | None = None
        auth = httpx.BasicAuth(*auth_string.split(":", 1)) if auth_string else None  # what the UI sends
        self.api = httpx.Client(base_url=f"{url}/api", timeout=30, transport=_RetryWhileBusy(), auth=auth)

    def deployment(self, name: str) -> dict:
        return self.api.get(f"/deployments/name/{name}").raise_for_status().json()

    def trigger(self, name: str, parameters: dict) -> httpx.Response:
        return self.api.post(f"/deployments/{self.deployment(name)['id']}/create_flow_run",
                             json={"parameters": parameters})

    def wait(self, run_id: str, timeout: float = 900) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self.api.get(f"/flow_runs/{run_id}").raise_for_status().json()
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(1)
        raise TimeoutError(f"flow run {run_id} still {run['state_type']} after {timeout}s")

    def wait_process_exit(self, run: dict, timeout: float = 60) -> None:
        """A run's state turns Failed a moment before its process exits; a retry in that moment races the
        exiting process in Prefect 3.7.7's process worker (it reports the retried run Crashed and deletes
        its working directory). A person clicks Retry later; the test waits for the process like them."""
        pid = int(run["infrastructure_pid"].rsplit(":", 1)[-1])  # "pid" or "host:pid"
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                time.sleep(2)  # the worker's clean-up after the exit
                return
            time.sleep(0.5)
        raise TimeoutError(f"flow-run process {pid} still alive after {timeout}s")

    def subflow(self, parent_id: str, name: str) -> dict:
        [run] = self.subflows(parent_id, name)
        return run

    def subflows(self, parent_id: str, name: str) -> list[dict]:
        """The runs of a subflow named `name` under a flow run (a retried parent run has one per attempt)."""
        runs = self.api.post("/flow_runs/filter", json={"flow_runs": {"name": {"any_": [name]}}}).json()
        return [r for r in runs if r["parent_task_run_id"] and self._parent_run(r) == parent_id]

    def task_states(self, flow_run_id: str, timeout: float = 60) -> dict[str, list[str]]:
        """{task name: the state names of its runs, oldest first} for a flow run's task runs (a retried run has one
        per attempt; a subflow's is its tracking task's), once all are final: task runs report their states as
        events, which reach the API a moment after the flow run ends."""
        deadline, seen = time.time() + timeout, None
        while True:
            runs = self.api.post("/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}}
                                 ).json()
            final = [(r["id"], r["state_name"]) for r in runs if r["state_type"] in TERMINAL]
            if (runs and len(final) == len(runs) and sorted(final) == seen) or time.time() > deadline:
                break  # all final, and the same a second later
            seen = sorted(final)
            time.sleep(1)
        states: dict[str, list[str]] = {}
        for run in sorted(runs, key=lambda r: r["start_time"] or r["expected_start_time"]):
            states.setdefault(run["name"].rsplit("-", 1)[0], []).append(run["state_name"])
        return states

    def _parent_run(self, run: dict) -> str:
        return self.api.get(f"/task_runs/{run['parent_task_run_id']}").json()["flow_run_id"]

    def messages(self) -> list[str]:
        """Every log line the server has, oldest first."""
        out: list[str] = []
        while page := self.api.post("/logs/filter", json={"limit": 200, "offset": len(out),
                                                          "sort": "TIMESTAMP_ASC"}).json():
            out += [log["message"] for log in page]
        return out

    def artifact(self, key: str) -> dict:
        return self.api.get(f"/artifacts/{key}/latest").raise_for_status().json()


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no prefect server at {url} after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)  # the CLI's children (uvicorn, flow-run processes) go with it
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def prefect_env(home: Path, port: int) -> dict[str, str]:
    """The environment of a server on 127.0.0.1:port and of the CLIs and workers that talk to it."""
    return {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO"}


def start_server(port: int, env: dict[str, str], log) -> subprocess.Popen:
    """`east server --port PORT`, healthy (its own process group: `stop` takes its children too)."""
    proc = subprocess.Popen([*EAST, "server", "--port", str(port)], env=env, start_new_session=True, stdout=log,
                            stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc
