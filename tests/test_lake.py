"""The DuckLake backend against a real PostgreSQL server: one schema, keys that hold with no constraints, claims
that make one worker compute a step and let another take over a dead one, several worker processes sharing one
generation with a result equal to a single-worker run on the file store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from lake_worker import sample, worker_config
from pydantic import ValidationError

from east_tasks import steps
from east_tasks.config import ExperimentConfig, StoreConfig, load_config
from east_tasks.engines.generation import release_generator
from east_tasks.engines.replicas import replica_devices
from east_tasks.errors import UserError
from east_tasks.io import mask_url
from east_tasks.paths import BACKBONE_DIR
from east_tasks.store import KEYS, TABLES, Claim, LakeStore, Store, connect

WORKER = Path(__file__).with_name("lake_worker.py")
ROOT = Path(__file__).parents[1]


def _rows(n: int, gen_key: str = "g") -> pd.DataFrame:
    return pd.DataFrame({"gen_key": gen_key, "problem_id": [f"p{i // 2}" for i in range(n)],
                         "sample_idx": [i % 2 for i in range(n)], "text": [f"t{i}" for i in range(n)]})


def test_the_lake_has_every_table_and_keys_hold_without_constraints(lake_url, tmp_path) -> None:
    assert set(KEYS) == set(TABLES) - {"data_findings"}  # every table but the unkeyed one has its key parsed
    assert KEYS["generations"] == ("gen_key", "problem_id", "sample_idx") and KEYS["checkpoints"] == ("ckpt_key",)
    with LakeStore(lake_url, str(tmp_path / "lake")) as store:
        tables = {r[0] for r in store.execute("SELECT table_name FROM information_schema.tables "
                                              "WHERE table_catalog = 'lake'")}
        assert tables == set(TABLES)
        store.insert_df("generations", _rows(6))
        store.insert_df("generations", _rows(10))  # the first 6 keys are present: only 4 rows are new
        assert store.execute("SELECT count(*), count(DISTINCT (problem_id, sample_idx)) FROM generations") == [(10, 10)]
        for status in ("running", "done"):
            store.mark_step("k", "gen", "exp", status)
        assert store.execute("SELECT status FROM step_status") == [("done",)]
        assert store.step_done("k")
    with LakeStore(lake_url, str(tmp_path / "lake")) as store:  # a second connection finds the same rows
        assert store.count("generations", "gen_key", "g") == 10
        assert store.location.startswith("ducklake:postgres:dbname=lake_")
        store.insert_df("generations", _rows(2000, gen_key="big"))  # small writes are inlined in the catalog
    assert list((tmp_path / "lake").rglob("*.parquet"))  # large ones go to the data path as Parquet


def test_sqlite_catalog_serves_processes_on_one_machine(tmp_path) -> None:
    url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"
    with connect(StoreConfig(url=url), tmp_path) as store:
        store.insert_df("generations", _rows(4))
        store.insert_df("generations", _rows(4))
        assert store.backend == "ducklake" and store.count("generations", "gen_key", "g") == 4
    assert (tmp_path / "lake").is_dir()  # data_path defaults to <data_dir>/lake


def test_bad_store_urls_are_refused_before_anything_loads(postgres, tmp_path) -> None:
    with pytest.raises(ValidationError, match="string_pattern_mismatch|should match pattern"):
        StoreConfig(url="ducklake:mysql:db=east")
    with pytest.raises(ValidationError, match="PGPASSWORD") as refused:
        StoreConfig(url="ducklake:postgres:dbname=east host=10.0.0.2 password=hunter2")
    with pytest.raises(ValidationError, match="PGPASSWORD") as nested:
        ExperimentConfig(store={"url": "ducklake:postgres:dbname=east password=hunter2"})
    assert "hunter2" not in str(refused.value) + str(nested.value)  # the error does not echo it back
    assert mask_url("dbname=east password=hunter2 host=x") == "dbname=east password=*** host=x"
    assert mask_url("postgresql://east:hunter2@db:5432/east") == "postgresql://east:***@db:5432/east"
    closed = postgres.conninfo("east").replace(f"port={postgres.port}", f"port={postgres.port + 1}")
    cfg = ExperimentConfig(data_dir=tmp_path, store={"url": f"ducklake:postgres:{closed}"})
    t0 = time.time()
    with pytest.raises(UserError, match=r"store.url ducklake:postgres:.*cannot open the DuckLake catalog"):
        steps.preflight(cfg)  # the first thing a run does: no model, no data loaded yet
    assert time.time() - t0 < 20


def _hold_claim_forever(url: str, data_path: str, key: str, lease_s: float) -> subprocess.Popen:
    code = (f"import sys, time\nfrom east_tasks.store import Claim, LakeStore\n"
            f"c = Claim(lambda: LakeStore({url!r}, {data_path!r}), {key!r}, {lease_s})\n"
            f"c.__enter__()\nprint(c.holder, flush=True)\ntime.sleep(600)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def test_a_claim_waits_while_its_holder_renews_and_is_taken_over_once_the_holder_dies(lake_url, tmp_path) -> None:
    data_path, lease = str(tmp_path / "lake"), 4.0  # renewed every 1.3 s: ample on a loaded 2-core machine
    LakeStore(lake_url, data_path).close()
    holder = _hold_claim_forever(lake_url, data_path, "step-1", lease)
    try:
        held_by = holder.stdout.readline().strip()
        claim = Claim(lambda: LakeStore(lake_url, data_path), "step-1", lease)
        taken = threading.Event()
        waiter = threading.Thread(target=lambda: (claim.__enter__(), taken.set()), daemon=True)
        waiter.start()
        assert not taken.wait(2 * lease)  # two lease periods: the living holder kept renewing
        killed_at = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        assert taken.wait(lease + 15)
        assert time.monotonic() - killed_at >= 0.3  # not before the dead holder's lease ran out
        assert claim.took_over == held_by
        with Claim(lambda: LakeStore(lake_url, data_path), "step-2", lease):  # other keys are not blocked
            pass
        claim.__exit__(None, None, None)
        with LakeStore(lake_url, data_path) as store:
            assert store.execute("SELECT count(*) FROM claims WHERE holder IS NOT NULL") == [(0,)]
    finally:
        holder.kill()


def _worker(data_dir: Path, url: str, shard: tuple[int, int] | None = None, lease_s: float = 60.0,
            clone=None, **env: str) -> subprocess.Popen:
    """A worker process of this checkout, or of `clone` (the `second_clone` fixture: another path, its own venv)."""
    args = json.dumps({"data_dir": str(data_dir), "url": url, "lease_s": lease_s, "shard": shard})
    python, root, environ = (clone.python, clone.root, clone.env) if clone else (sys.executable, ROOT, os.environ)
    return subprocess.Popen([python, str(root / "tests" / WORKER.name), args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**environ, **env})


def _generations(store: Store, gen_key: str) -> list:
    return store.query("SELECT problem_id, sample_idx, text, pred_answer, correct FROM generations "
                       "WHERE gen_key = ? ORDER BY problem_id, sample_idx", [gen_key]).values.tolist()


@pytest.fixture(scope="module")
def single_file_run(tmp_path_factory):
    cfg = worker_config(str(tmp_path_factory.mktemp("file")), None)
    result = sample(cfg)
    release_generator()
    with Store(cfg.store_path) as store:
        return result.key, _generations(store, result.key)


def test_three_workers_share_one_generation_and_equal_a_single_worker_run(lake_url, tmp_path,
                                                                            single_file_run) -> None:
    gen_key, reference = single_file_run
    # shard 0 of 2, and shard 1 of 2 twice: the two shard-1 workers contend for one claim
    workers = [_worker(tmp_path, lake_url, shard) for shard in ((0, 2), (1, 2), (1, 2))]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], "\n".join(err[-3000:] for _, err in outputs)
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    # each shard is a step of its own key: the two shard-1 workers share one
    assert [r["key"] for r in results] == [f"{gen_key}/shard-0-of-2", *[f"{gen_key}/shard-1-of-2"] * 2]
    assert results[0]["new_questions"] == 8  # chunks 1 and 3 of 3 (4 questions each)
    # one drew chunk 2, the other waited for its claim and found the shard done
    assert sorted((r["cached"], r["new_questions"] or 0) for r in results[1:]) == [(False, 4), (True, 0)]
    cfg = worker_config(str(tmp_path), lake_url)
    merged = sample(cfg)  # the merge: every question is there, the step is marked done
    assert merged.info["new_questions"] == 0 and merged.info["rows"] == 24
    with connect(cfg.store, tmp_path) as store:
        assert store.step_done(gen_key)
        assert store.execute("SELECT count(*), count(DISTINCT (problem_id, sample_idx)) FROM generations") == [(24, 24)]
        assert store.count("problems", "dataset_key", steps.prepare_data(cfg).key) == 12 + 40 + 4  # loaded once
        assert _generations(store, gen_key) == reference


def test_a_worker_killed_mid_generation_is_taken_over_from_its_committed_chunks(lake_url, tmp_path,
                                                                                 single_file_run) -> None:
    gen_key, reference = single_file_run
    doomed = _worker(tmp_path, lake_url, lease_s=2.0, EAST_PAUSE_AT="gen")
    try:
        for line in doomed.stderr:  # paused after committing its first chunk
            if "EAST_PAUSED gen" in line:  # printed after the progress bar, on its line
                break
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
    finally:
        doomed.kill()
    cfg = worker_config(str(tmp_path), lake_url, lease_s=2.0)
    with connect(cfg.store, tmp_path) as store:
        assert store.count("generations", "gen_key", gen_key) == 8  # one chunk: 4 questions x 2 samples
    resumed = sample(cfg)  # waits out the dead worker's lease, then takes the step over
    release_generator()
    assert resumed.info["resumed_questions"] == 4 and resumed.info["new_questions"] == 8
    with connect(cfg.store, tmp_path) as store:
        assert store.step_done(gen_key)
        assert _generations(store, gen_key) == reference


def _data_parallel(cfg):
    return cfg.model_copy(update={"backend": cfg.backend.model_copy(update={"data_parallel_size": 2})})


def test_two_data_parallel_replicas_sample_one_generation_equal_to_one_engine(tmp_path, single_file_run) -> None:
    gen_key, reference = single_file_run
    with pytest.raises(UserError, match=r"in 2 shards \(sampling.shards, backend.data_parallel_size\): the store is "):
        sample(_data_parallel(worker_config(str(tmp_path / "file"), None)))
    cfg = _data_parallel(worker_config(str(tmp_path), f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"))
    result = sample(cfg)  # two replica processes, one shard each, on one machine's lake (a SQLite catalog)
    assert result.info["new_questions"] == 12 and result.info["engine"] == "2 data-parallel replicas"
    with connect(cfg.store, tmp_path) as store:
        assert store.step_done(gen_key) and _generations(store, gen_key) == reference


def test_replicas_get_consecutive_gpu_groups() -> None:
    assert replica_devices(2, 1, []) == [None, None]  # the CPU build
    assert replica_devices(2, 2, ["0", "1", "2", "3"]) == ["0,1", "2,3"]
    assert replica_devices(4, 2, [str(i) for i in range(8)]) == ["0,1", "2,3", "4,5", "6,7"]
    with pytest.raises(UserError, match="needs 4 GPUs; 3 are visible"):
        replica_devices(2, 2, ["0", "1", "2"])


def test_without_the_extension_packages_duckdb_installs_them_itself(tmp_path, monkeypatch) -> None:
    """Where the PyPI packages are missing, DuckDB's own INSTALL runs: offline (here) that fails with a clear error;
    with a network it fetches the extensions."""
    from east_tasks.store import lake as store_module

    monkeypatch.setattr(store_module, "_PACKAGED_EXTENSIONS", {"ducklake": ("no_such_package_here", "ducklake")})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store_module.packaged_extension_dir.cache_clear()
    try:
        assert store_module.packaged_extension_dir() is None
        with pytest.raises(UserError, match=r"cannot open the DuckLake catalog \(.*(install|download|HTTP)"):
            LakeStore(f"ducklake:sqlite:{tmp_path / 'c.sqlite'}", str(tmp_path / "lake"))
    finally:
        store_module.packaged_extension_dir.cache_clear()


def test_the_store_url_from_the_environment_is_checked_like_a_given_one(monkeypatch) -> None:
    monkeypatch.setenv("EAST_STORE_URL", "ducklake:postgres:dbname=east password=hunter2")
    with pytest.raises(ValidationError, match="PGPASSWORD"):
        StoreConfig()
    monkeypatch.setenv("EAST_STORE_URL", "postgres://db/east")
    with pytest.raises(ValidationError, match="pattern"):
        StoreConfig()
    monkeypatch.setenv("EAST_STORE_URL", "ducklake:sqlite:/shared/east.sqlite")
    assert StoreConfig().url == "ducklake:sqlite:/shared/east.sqlite"


CLAIM_NAME = """
import json, sys
from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.errors import UserError
args = json.loads(sys.argv[1])
cfg = load_config("tiny-test", experiment="shared", data_dir=args["data_dir"], weighting={"a": args["a"]},
                  store={"url": args["url"], "data_path": args["data_path"]})
print("ready", flush=True)
sys.stdin.readline()  # every process starts claiming at once
try:
    steps.claim_experiment(cfg)
except UserError as err:
    print("refused", err)
else:
    print("claimed")
"""


def test_one_experiment_one_configuration_on_a_lake_when_claimed_at_once(lake_url, tmp_path) -> None:
    """Three processes (two configurations) claim one experiment name on a lake at the same instant: the name
    goes to one configuration; its runs share it; the other configuration's is refused naming the difference."""
    data_path = str(tmp_path / "lake")
    LakeStore(lake_url, data_path).close()
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_NAME, json.dumps(
        {"data_dir": str(tmp_path / f"w{i}"), "a": a, "url": lake_url, "data_path": data_path})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT) for i, a in enumerate((0.0, 0.0, 1.0))]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    said = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    with LakeStore(lake_url, data_path) as store:
        rows = store.execute("SELECT config FROM experiments WHERE experiment = 'shared'")
    assert len(rows) == 1, rows  # no key constraint in a lake: the claim on the name is what keeps it one row
    a = json.loads(rows[0][0])["weighting"]["a"]
    assert said[:2] == (["claimed", "claimed"] if a == 0 else [said[0]] * 2) and said[0] != said[2]
    refused = [s for s in said if s.startswith("refused")]
    assert len(refused) == (1 if a == 0 else 2) and all("weighting.a" in s for s in refused)


def test_workers_whose_repositories_sit_at_different_paths_share_one_lake(lake_url, tmp_path, single_file_run,
                                                                         second_clone) -> None:
    """A clone at another path, with its own environment, shares the lake with this checkout: the generation its
    worker computed is found here by key, equal to a single-worker run, and its experiment (whose default base model
    is its own copy of the backbone) is this one's."""
    gen_key, reference = single_file_run
    there = _worker(tmp_path, lake_url, clone=second_clone)
    out, err = there.communicate(timeout=300)
    assert there.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"key": gen_key, "cached": False, "rows": 24,
                                                         "new_questions": 12}
    cfg = worker_config(str(tmp_path), lake_url)
    assert sample(cfg).cached  # this checkout finds the clone's step done
    with connect(cfg.store, tmp_path) as store:
        assert _generations(store, gen_key) == reference

    args = {"data_dir": str(tmp_path), "a": 0.0, "url": lake_url, "data_path": str(tmp_path / "lake")}
    steps.claim_experiment(load_config("tiny-test", experiment="shared", data_dir=tmp_path, weighting={"a": 0.0},
                                       store={"url": lake_url, "data_path": args["data_path"]}))
    there = subprocess.run([second_clone.python, "-c", CLAIM_NAME, json.dumps(args)], input="go\n", text=True,
                           capture_output=True, cwd=second_clone.root, env=second_clone.env, timeout=300)
    assert there.stdout.split()[-1:] == ["claimed"], there.stdout + there.stderr[-3000:]
    with LakeStore(lake_url, args["data_path"]) as store:
        (config,), = store.execute("SELECT config FROM experiments WHERE experiment = 'shared'")
    assert json.loads(config)["base_model"] == str(BACKBONE_DIR)  # this checkout's path; the clone's run shares it
