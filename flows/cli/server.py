"""Operating from Prefect: `east server` (the API and UI), `east deploy` (the pool and deployments), `east
worker` (runs the pool's flow runs)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from flows.cli.common import console, failures_in_one_line
from flows.operate import PROCESS_POOL


def server(
    host: Annotated[str, typer.Option(help="address to listen on; 127.0.0.1 keeps it to this machine")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 4200,
) -> None:
    """A Prefect server and its UI; point the other commands at it with PREFECT_API_URL=http://HOST:PORT/api."""
    from flows.operate import server_command

    console.print(f"UI: http://{host}:{port}  (export PREFECT_API_URL=http://{host}:{port}/api)")
    _become(server_command(host, port))


def _become(command: list[str]) -> None:
    """Replaces this process with a long-running Prefect one, so signals (Ctrl-C, a supervisor's stop) reach it."""
    sys.stdout.flush()
    os.execv(command[0], command)


def _require_api_url() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print("[red]PREFECT_API_URL is not set[/red]: start a server (`east server`) and "
                      "`export PREFECT_API_URL=http://127.0.0.1:4200/api`")
        raise typer.Exit(2)


def deploy(
    pool: Annotated[str, typer.Option(help="work pool (created if missing)")] = PROCESS_POOL,
    pool_type: Annotated[str, typer.Option("--type", help="process, or docker for the GPU worker image")] = "process",
    image: Annotated[str | None, typer.Option(help="docker pools: the worker image (default east-gpu-worker)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="flow runs the pool runs at once (sweep points, shards); "
                                             "above 1 needs a DuckLake store (EAST_STORE_URL)")] = 1,
) -> None:
    """Create the work pool and register the deployments of deployments/prefect.yaml on it."""
    from east_tasks.config import StoreConfig
    from east_tasks.store import require_shared_store
    from flows.operate import deploy as register

    try:
        store_url = StoreConfig().url  # $EAST_STORE_URL, checked: the Docker pool hands it to its flow runs
    except ValidationError as err:
        console.print(f"[red]EAST_STORE_URL: {err.errors()[0]['msg']}[/red]")
        raise typer.Exit(2) from None
    if concurrency > 1:
        with failures_in_one_line():
            require_shared_store(store_url, f"--concurrency {concurrency}")
    _require_api_url()
    raise typer.Exit(register(pool, pool_type, image, concurrency, store_url).returncode)


def worker(
    pool: Annotated[str, typer.Option(help="work pool to take runs from")] = PROCESS_POOL,
    pool_type: Annotated[str | None, typer.Option("--type", help="type for a pool that does not exist yet")] = None,
) -> None:
    """A Prefect worker: runs the pool's flow runs (in the directory `east deploy` recorded)."""
    from flows.operate import worker_command

    _require_api_url()
    _become(worker_command(pool, pool_type))
