import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

# Prefect keeps its SQLite database under PREFECT_HOME; never touch the user's.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="east-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import pytest

from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines import grading
from east_tasks.models.tiny import build_tokenizer

ROOT = Path(__file__).parents[1]

grading.install()  # the core's math comparisons and users' styles run in the engines' bounded workers, as in a run


# Test modules whose tests share a costly session fixture: they run on one pytest-xdist worker, which builds the
# fixture once (`pytest_collection_modifyitems` checks that every user of one is listed).
SHARED_FIXTURES = {
    "finished_run": {"test_config_files.py", "test_export.py", "test_flow.py", "test_guards.py", "test_lucky.py",
                     "test_python_api.py"},
    "clean_dir": {"test_faults.py", "test_interrupts.py"},
}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (a dev dependency)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """The suite runs on two pytest-xdist workers (`-n 2`, pyproject.toml). Each module's tests stay on one worker
    (its module fixtures are built once), and so do the modules of each `SHARED_FIXTURES` entry. (xdist's own
    `--dist loadgroup` groups nothing under pytest 9: its marks never reach the node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    group_of = {module: fixture for fixture, modules in SHARED_FIXTURES.items() for module in modules}

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return group_of.get(module.rsplit("/", 1)[-1], module)

    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, modules in SHARED_FIXTURES.items():
            if fixture in item.fixturenames and item.path.name not in modules:
                raise pytest.UsageError(f"{item.nodeid} uses {fixture}: add {item.path.name} to SHARED_FIXTURES in "
                                        "tests/conftest.py (its users run on one xdist worker)")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    corpus = [format_prompt(p.question) + format_completion(p.solution) for p in make_split("labelled", 300, seed=7)]
    return build_tokenizer(corpus)


@pytest.fixture(scope="session")
def prefect_server():
    """A real ephemeral Prefect API with its own temporary database for the whole session; its URL is the value, for
    the `east run` subprocesses whose own Prefect server is no part of what a test checks (PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


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


@dataclass(frozen=True)
class SecondClone:
    """A checkout at another path with its own venv: its `python`, its `east`, and the environment to run them in."""

    root: Path
    python: str
    east: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def second_clone(tmp_path_factory) -> SecondClone:
    """This checkout as a second machine or a Docker image has it: a `git clone` at another path (with the working
    tree's uncommitted changes) and an environment of its own, made by uv from uv.lock and uv's cache, offline.
    Its processes write bytecode (`env`), so that only the first compiles its imports. Skipped where this checkout
    is no git clone or has no uv."""
    uv = ROOT / ".uv" / "bin" / "uv"
    uv = str(uv) if uv.exists() else shutil.which("uv")
    if uv is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout and uv (make setup)")
    clone = tmp_path_factory.mktemp("elsewhere") / "east"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, changed):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([uv, "sync", "-q", "--locked", "--offline", "--extra", "cpu", "--python", python], cwd=clone,
                   check=True, env=env)
    return SecondClone(clone, str(clone / ".venv" / "bin" / "python"), str(clone / ".venv" / "bin" / "east"), env)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, prefect_server):
    """One finished `tiny-test` run (round 0 and 2 rounds, entropy weighting with a = 1, tracked in MLflow's local
    store), shared by every test that reads, exports or reruns it from cache: `cfg, records = finished_run`. A test
    that writes to it copies `cfg.data_dir` first (`shutil.copytree`): stored checkpoint paths are relative, so a
    copy is a data dir of its own. The store opens of the first run are in `finished_run_cost`."""
    from east_tasks.config import load_config
    from east_tasks.store import Store
    from flows.self_train import self_train

    cfg = load_config("tiny-test", experiment="finished", data_dir=tmp_path_factory.mktemp("finished-run"),
                      weighting={"a": 1.0}, tracking={"report_to": ["mlflow"]})
    opened = Store.opened
    records = self_train(cfg)
    _FIRST_PASS.update(store_opens=Store.opened - opened)
    return cfg, records


_FIRST_PASS: dict[str, int] = {}


@pytest.fixture(scope="session")
def finished_run_cost(finished_run) -> dict[str, int]:
    """The first (uncached) pass of `finished_run`: its store opens."""
    return dict(_FIRST_PASS)


@pytest.fixture(scope="session")
def clean_dir(tmp_path_factory, prefect_server):
    """An uninterrupted `east run` (subprocess, on the session's Prefect server) of experiment "fault" (east_runs.py:
    tiny-test, one round, smaller data): the reference every killed, interrupted or failed run must end equal to
    (tests/test_faults.py, tests/test_interrupts.py)."""
    from east_runs import east_run, finish

    data_dir = tmp_path_factory.mktemp("clean") / "data"
    code, out = finish(east_run(data_dir, api_url=prefect_server))
    assert code == 0, out[-3000:]
    return data_dir
