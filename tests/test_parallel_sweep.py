"""A concurrent sweep on a work pool of concurrency 2, two `east worker` processes and one DuckLake store
(catalog in a real PostgreSQL server), behind a Prefect server that requires an auth string: every point's results
equal the same sweep run point after point on the DuckDB file, points really ran side by side, no step's rows
were written twice, and a client without the auth string gets nothing."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from itertools import pairwise

from prefect_live import EAST, Live, free_port, prefect_env, start_server, stop

from east_tasks.store import LakeStore, Store

SETS = [f"--set={s}" for s in ("backend.engine=hf", "data.pool_size=32", "data.validation_size=8",
                                "data.test_size=24", "sampling.n=4", "sampling.chunk_size=16", "eval.n=0",
                                "train.epochs=1")]
SWEEP = ["sweep", "--name", "par", "--preset", "tiny-test", "--rounds", "1", "--a", "0,1", "--seeds", "0", *SETS]
COMPARED = ["experiment", "round", "n_kept", "greedy_acc", "val_greedy_acc", "weight_key"]
AUTH = "east:test-auth-string"


def _generations(store: Store, gen_key: str) -> list:
    return store.query("SELECT problem_id, sample_idx, text, correct FROM generations WHERE gen_key = ? "
                       "ORDER BY problem_id, sample_idx", [gen_key]).values.tolist()


def test_a_concurrent_sweep_on_two_workers_equals_the_sequential_single_file_sweep(postgres, lake_url,
                                                                                     tmp_path) -> None:
    port = free_port()
    env = {**prefect_env(tmp_path / "prefect-home", port), "PREFECT_SERVER_API_AUTH_STRING": AUTH,
           "PREFECT_API_AUTH_STRING": AUTH}  # the server requires it; every CLI and worker sends it
    lake_env = {**env, "EAST_STORE_URL": lake_url}
    refused = subprocess.run([*EAST, "deploy", "--concurrency", "2"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "one process writes at a time" in " ".join(refused.stdout.split())  # file
    leaky = subprocess.run([*EAST, "deploy"], env={**env, "EAST_STORE_URL": f"{lake_url} password=hunter2"},
                           capture_output=True, text=True)
    assert leaky.returncode == 2 and "PGPASSWORD" in leaky.stdout and "hunter2" not in leaky.stdout

    logs = [(tmp_path / f"{name}.log").open("w") for name in ("server", "worker-1", "worker-2")]
    procs = []
    try:
        procs.append(start_server(port, env, logs[0]))
        deployed = subprocess.run([*EAST, "deploy", "--concurrency", "2"], env=lake_env, capture_output=True,
                                  text=True)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        live = Live(f"http://127.0.0.1:{port}", tmp_path, AUTH)
        assert live.api.get("/work_pools/east-process").json()["concurrency_limit"] == 2
        stranger = Live(f"http://127.0.0.1:{port}", tmp_path, "east:wrong")
        experiment = live.deployment("east-experiment/experiment")
        assert stranger.api.get("/deployments/name/east-experiment/experiment").status_code == 401
        assert stranger.api.post(f"/deployments/{experiment['id']}/create_flow_run", json={}).status_code == 401
        assert Live(f"http://127.0.0.1:{port}", tmp_path).api.get("/flow_runs/filter").status_code in (401, 405)
        procs += [subprocess.Popen([*EAST, "worker"], env=lake_env, start_new_session=True, stdout=log,
                                   stderr=subprocess.STDOUT) for log in logs[1:]]

        concurrent = subprocess.run([*EAST, *SWEEP, "--concurrent", "--data-dir", str(tmp_path / "lake-run")],
                                    env=lake_env, capture_output=True, text=True, timeout=1200)
        assert concurrent.returncode == 0, concurrent.stdout[-3000:] + concurrent.stderr[-3000:]
        runs = live.api.post("/flow_runs/filter", json={"flow_runs": {"name": {"like_": "par-"}}}).json()
        points = [r for r in runs if r["deployment_id"]]
        assert len(points) == 2 and {r["state_type"] for r in points} == {"COMPLETED"}
        spans = sorted((datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"]))
                       for r in points)
        assert any(later[0] < earlier[1] for earlier, later in pairwise(spans))  # side by side
        assert len({r["infrastructure_pid"] for r in points}) == 2  # each point its own process

        sequential = subprocess.run([*EAST, *SWEEP, "--data-dir", str(tmp_path / "file-run")],
                                    env={k: v for k, v in env.items() if k != "EAST_STORE_URL"},
                                    capture_output=True, text=True, timeout=1200)
        assert sequential.returncode == 0, sequential.stdout[-3000:] + sequential.stderr[-3000:]

        # sampling.shards = 2 on a new lake: the round's pool generation as two flow runs the workers take
        shard_lake = "ducklake:postgres:" + postgres.create_database("shards")
        sharded = subprocess.run([*EAST, "run", "--preset", "tiny-test", "--rounds", "1", "--experiment", "sharded",
                                  *SETS, "--set=sampling.shards=2",
                                  "--data-dir", str(tmp_path / "shard-run")],
                                 env={**env, "EAST_STORE_URL": shard_lake}, capture_output=True, text=True,
                                 timeout=900)
        assert sharded.returncode == 0, sharded.stdout[-3000:] + sharded.stderr[-3000:]
        shard_runs = live.api.post("/flow_runs/filter", json={"flow_runs": {"name": {"like_": "sharded-generate"}}}
                                   ).json()
        assert sorted(r["name"][-len("shard-1-of-2"):] for r in shard_runs) == ["shard-1-of-2", "shard-2-of-2"]
        assert {r["state_type"] for r in shard_runs} == {"COMPLETED"}
    finally:
        for proc in reversed(procs):
            stop(proc)
        for log in logs:
            log.close()

    with Store(tmp_path / "file-run" / "east.duckdb") as store:
        expected = store.sweep_table("par")[COMPARED].sort_values(COMPARED[:2]).reset_index(drop=True)
    with LakeStore(lake_url, str(tmp_path / "lake-run" / "lake")) as lake:
        got = lake.sweep_table("par")[COMPARED].sort_values(COMPARED[:2]).reset_index(drop=True)
        for table, key in (("generations", "gen_key, problem_id, sample_idx"), ("step_status", "step_key"),
                           ("evaluations", "eval_key"), ("training_examples", "weight_key, example_idx"),
                           ("problems", "dataset_key, split, problem_id")):
            assert lake.execute(f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}") == [(0,)], table
        assert lake.execute("SELECT count(*) FROM claims WHERE holder IS NOT NULL") == [(0,)]  # all released
    with LakeStore(shard_lake, str(tmp_path / "shard-run" / "lake")) as lake:
        [(pool_key,)] = lake.execute("SELECT gen_key FROM experiment_rounds WHERE experiment = 'sharded' AND round = 1")
        merged = _generations(lake, pool_key)
    with Store(tmp_path / "file-run" / "east.duckdb") as store:  # sweep point s0 sampled the same pool whole
        assert merged == _generations(store, pool_key) and len(merged) == 32 * 4
    assert len(expected) == 4  # 2 points x (round 0 + round 1)
    assert got.to_dict("records") == expected.to_dict("records")
    assert os.path.isdir(tmp_path / "lake-run" / "lake")
