"""The DuckLake store vs the DuckDB file for one sweep, and the sweep on W workers vs one, side by side in one run.

    .venv/bin/python bench/parallel_store.py [--preset tiny] [--a 0,1] [--seeds 0,1] [--workers 2] [--set K=V ...]

Starts a PostgreSQL server for the lake's catalog (tests/pg_server.py: Debian's package, 127.0.0.1 only) and a
Prefect server, then runs the same sweep four times, each into an empty store:
  1. `east sweep` point after point in one process (its engine kept) on the DuckDB file,
  2. the same on the lake: (2) / (1) is what the catalog's round trips, the keyed inserts and the claims cost;
  3. `east sweep --concurrent` on a pool of concurrency 1 with one worker (every point its own flow run),
  4. the same with concurrency W and W workers: (3) / (4) is the speed-up W workers give on this machine.
A CPU-bound sweep on a 2-core machine cannot run faster side by side; what predicts a W-GPU machine (one point
per GPU) is the list-scheduling makespan of run 3's point durations on W workers, printed beside it.
"""

from __future__ import annotations

import argparse
import heapq
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from benchmarks import record

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from pg_server import postgres_server  # noqa: E402
from prefect_live import EAST, Live, free_port, prefect_env, start_server, stop  # noqa: E402


def makespan(durations: list[float], workers: int) -> float:
    """Points taken in order by the first free worker."""
    free = [0.0] * workers
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--a", default="0,1")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=["data.pool_size=300", "data.test_size=300",
                                                                          "data.validation_size=100"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="east-bench-parallel-"))
    sweep = ["sweep", "--name", "bench", "--preset", args.preset, "--rounds", "1", "--a", args.a, "--seeds",
             args.seeds, *(f"--set={s}" for s in args.sets)]
    port = free_port()
    env = prefect_env(root / "prefect-home", port)
    walls: dict[str, float] = {}
    with postgres_server() as pg, (root / "server.log").open("w") as server_log:
        server = start_server(port, env, server_log)
        live = Live(f"http://127.0.0.1:{port}", root)
        try:
            def timed(name: str, extra: list[str], store_url: str | None) -> None:
                run_env = {**env, **({"EAST_STORE_URL": store_url} if store_url else {})}
                t0 = time.time()
                done = subprocess.run([*EAST, *sweep, *extra, "--data-dir", str(root / name)], env=run_env,
                                      capture_output=True, text=True)
                walls[name] = time.time() - t0
                if done.returncode:
                    raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                print(f"{name}: {walls[name]:.1f} s", flush=True)

            def lake() -> str:
                return "ducklake:postgres:" + pg.create_database(f"bench_{uuid.uuid4().hex[:8]}")

            timed("file", [], None)
            timed("lake", [], lake())
            durations: dict[int, list[float]] = {}
            for w in (1, args.workers):
                url = lake()
                worker_env = {**env, "EAST_STORE_URL": url}
                subprocess.run([*EAST, "deploy", "--concurrency", str(w)], env=worker_env, check=True,
                               capture_output=True)
                logs = [(root / f"worker-{w}-{i}.log").open("w") for i in range(w)]
                workers = [subprocess.Popen([*EAST, "worker"], env=worker_env, start_new_session=True, stdout=log,
                                            stderr=subprocess.STDOUT) for log in logs]
                try:
                    since = datetime.now().astimezone()
                    timed(f"lake-{w}-workers", ["--concurrent"], url)
                finally:
                    for proc in workers:
                        stop(proc)
                    for log in logs:
                        log.close()
                runs = live.api.post("/flow_runs/filter", json={"flow_runs": {
                    "name": {"like_": "bench-"}, "start_time": {"after_": since.isoformat()}}}).json()
                durations[w] = [(datetime.fromisoformat(r["end_time"]) - datetime.fromisoformat(r["start_time"]))
                                .total_seconds() for r in sorted(runs, key=lambda r: r["start_time"])
                                if r["deployment_id"]]
        finally:
            stop(server)
    w = args.workers
    one, many = walls["lake-1-workers"], walls[f"lake-{w}-workers"]
    points = durations[1]
    lines = [f"sweep: preset {args.preset}, a={args.a}, seeds={args.seeds}, 1 round, {' '.join(args.sets)}; "
             f"{len(points)} points",
             f"point after point, DuckDB file:       {walls['file']:8.1f} s",
             f"point after point, DuckLake (PG):     {walls['lake']:8.1f} s   lake / file = "
             f"{walls['lake'] / walls['file']:.2f}x (target <= 1.3x)",
             f"concurrent, 1 worker (concurrency 1): {one:8.1f} s   (each point its own process and engine)",
             f"concurrent, {w} workers (concurrency {w}): {many:8.1f} s   speed-up {one / many:.2f}x on "
             f"{os.cpu_count()} cores",
             f"point durations with 1 worker: {', '.join(f'{d:.0f}' for d in points)} s; with {w}: "
             f"{', '.join(f'{d:.0f}' for d in durations[w])} s",
             f"predicted for {w} GPUs (one point each; makespan of the 1-worker durations): "
             f"{makespan(points, w):.0f} s, {sum(points) / makespan(points, w):.2f}x over one"]
    record("parallel-store", "DuckLake vs the DuckDB file, and a sweep on W workers", lines)


if __name__ == "__main__":
    main()
