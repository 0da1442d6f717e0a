"""Running east from Prefect: a local server, the work pool and deployments, and a worker.

Thin wrappers over Prefect's own CLI (`prefect server start`, `prefect deploy`, `prefect worker start`)
with the project's defaults: the server listens on 127.0.0.1 only, deployments come from
deployments/prefect.yaml, and runs start in this repository (EAST_REPO_DIR, read by its pull step).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO_DIR / "deployments" / "prefect.yaml"
PROCESS_POOL = "east-process"
GPU_IMAGE = "east-gpu-worker:latest"


def prefect_command(*args: str) -> list[str]:
    """Prefect's CLI from this interpreter, never prompting (so it also runs unattended)."""
    return [sys.executable, "-m", "prefect", "--no-prompt", *args]


IMAGE_REPO_DIR = "/opt/east"  # where docker/Dockerfile puts the project


def server_command(host: str, port: int) -> list[str]:
    return prefect_command("server", "start", "--host", host, "--port", str(port))


def worker_command(pool: str, pool_type: str | None) -> list[str]:
    """`pool_type` creates a missing pool of that type (Prefect would otherwise guess one). No `--limit`:
    with one, a Prefect 3.7.7 worker exits when a run it has just finished is retried before it let go of
    the run's slot; the pool's own concurrency limit (see `ensure_work_pool`) does that job."""
    return prefect_command("worker", "start", "--pool", pool, *(["--type", pool_type] if pool_type else []))


async def ensure_work_pool(name: str, pool_type: str, image: str | None = None, concurrency: int = 1,
                           store_url: str | None = None) -> bool:
    """Creates the pool with Prefect's default job template for its type (a Docker pool defaults to `image`,
    keeps `data/` in the compose file's volume and hands flow runs `store_url`, which carries no password),
    running `concurrency` flow runs at once; returns False if it already existed (then only its concurrency limit
    is set)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    async with get_client() as client:
        try:
            pool = await client.read_work_pool(name)
            if pool.concurrency_limit != concurrency:
                await client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency))
            return False
        except ObjectNotFound:
            pass
        template = await get_default_base_job_template_for_infrastructure_type(pool_type)
        if template is None:
            raise ValueError(f"unknown work pool type {pool_type!r} (process, docker, kubernetes, ...)")
        if pool_type == "docker":
            props = template["variables"]["properties"]
            props["image"]["default"] = image or GPU_IMAGE
            # names from docker/compose.yaml; east-secrets holds the lake catalog's libpq password file
            props["volumes"]["default"] = ["east-data:/opt/east/data", "east-secrets:/opt/east/secrets:ro"]
            props["networks"]["default"] = ["east"]
            props["env"]["default"] = {"PGPASSFILE": "/opt/east/secrets/pgpass",
                                       **({"EAST_STORE_URL": store_url} if store_url else {})}
        # One run at a time unless asked: the DuckDB file takes one writer (east deploy checks), a GPU one job.
        await client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, base_job_template=template,
                                                     concurrency_limit=concurrency))
        return True


def deploy(pool: str, pool_type: str, image: str | None = None, concurrency: int = 1,
           store_url: str | None = None) -> subprocess.CompletedProcess:
    """Creates the work pool if missing (or sets its concurrency), then registers every deployment of
    deployments/prefect.yaml on it."""
    asyncio.run(ensure_work_pool(pool, pool_type, image, concurrency, store_url))
    # `prefect deploy` fills in the pull step's {{ $EAST_REPO_DIR }} now, not when a run starts, so it must
    # name the directory the runs will see: this checkout, or the project's place in the GPU image.
    repo_dir = IMAGE_REPO_DIR if pool_type == "docker" else os.environ.get("EAST_REPO_DIR", str(REPO_DIR))
    env = {**os.environ, "EAST_REPO_DIR": repo_dir, "PREFECT_DEFAULT_WORK_POOL_NAME": pool}
    return subprocess.run(prefect_command("deploy", "--all", "--prefect-file", str(PREFECT_FILE)), cwd=REPO_DIR,
                          env=env, check=False)


def run_deployments(deployment: str, runs: dict[str, dict], poll_s: float = 2.0) -> None:
    """One flow run of `deployment` per name -> parameters (subflows of the calling flow run in the UI), all
    created at once for the work pool to schedule; returns when all have finished, raising if any did not
    complete. Inside a flow run."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from east_tasks.errors import UserError

    logger = get_run_logger()
    pending = {run_deployment(deployment, parameters=params, flow_run_name=name, timeout=0).id: name
               for name, params in runs.items()}
    failed = []
    with get_client(sync_client=True) as client:
        while pending:
            time.sleep(poll_s)
            for run_id, name in list(pending.items()):
                state = client.read_flow_run(run_id).state
                if state and state.is_final():
                    logger.info(f"{name}: {state.name}")
                    del pending[run_id]
                    if not state.is_completed():
                        failed.append(f"{name} ({state.name})")
    if failed:
        raise UserError(f"{len(failed)} of {len(runs)} flow runs of {deployment} did not complete: "
                        f"{', '.join(failed)}")
