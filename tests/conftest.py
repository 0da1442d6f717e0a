import os
import tempfile
import uuid

# Prefect keeps its SQLite database under PREFECT_HOME; never touch the user's.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="east-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import pytest

from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines import grading
from east_tasks.models.tiny import build_tokenizer

grading.install()  # the core's math comparisons and users' styles run in the engines' bounded workers, as in a run


@pytest.fixture(scope="session")
def tiny_tokenizer():
    corpus = [format_prompt(p.question) + format_completion(p.solution) for p in make_split("labelled", 300, seed=7)]
    return build_tokenizer(corpus)


@pytest.fixture(scope="session")
def prefect_server():
    """A real ephemeral Prefect API with its own temporary database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole session (tests/pg_server.py); EAST_SKIP_POSTGRES=1 skips its tests."""
    from pg_server import postgres_server

    if os.environ.get("EAST_SKIP_POSTGRES") == "1":
        pytest.skip("EAST_SKIP_POSTGRES=1")
    with postgres_server() as server:
        yield server


@pytest.fixture
def lake_url(postgres) -> str:
    """A DuckLake URL whose catalog is a fresh, empty PostgreSQL database."""
    return "ducklake:postgres:" + postgres.create_database(f"lake_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, prefect_server):
    """One finished `tiny-test` run (round 0 and 2 rounds, entropy weighting with a = 1, tracked in MLflow's local
    store), shared by every test that reads, exports or reruns it from cache: `cfg, records = finished_run`. A test
    that writes to it copies `cfg.data_dir` first (`shutil.copytree`): stored checkpoint paths are relative, so a
    copy is a data dir of its own. What the first run cost is in `finished_run_cost`."""
    import time

    from east_tasks.config import load_config
    from east_tasks.store import Store
    from flows.self_train import self_train

    cfg = load_config("tiny-test", experiment="finished", data_dir=tmp_path_factory.mktemp("finished-run"),
                      weighting={"a": 1.0}, tracking={"report_to": ["mlflow"]})
    t0, opened = time.time(), Store.opened
    records = self_train(cfg)
    _FIRST_PASS.update(seconds=time.time() - t0, store_opens=Store.opened - opened)
    return cfg, records


_FIRST_PASS: dict[str, float] = {}


@pytest.fixture(scope="session")
def finished_run_cost(finished_run) -> dict[str, float]:
    """The first (uncached) pass of `finished_run`: its wall seconds and store opens."""
    return dict(_FIRST_PASS)


@pytest.fixture(scope="session")
def clean_dir(tmp_path_factory):
    """An uninterrupted `east run` (subprocess) of experiment "fault", tiny-test, one round: the reference every
    killed, interrupted or failed run must end equal to (tests/test_faults.py, tests/test_interrupts.py)."""
    from east_runs import east_run, finish

    data_dir = tmp_path_factory.mktemp("clean") / "data"
    code, out = finish(east_run(data_dir))
    assert code == 0, out[-3000:]
    return data_dir
