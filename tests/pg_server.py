"""A real PostgreSQL server for the DuckLake tests: Debian's `postgresql` package, `initdb` into a temporary
directory, listening on 127.0.0.1 only, on a free port (`.ci/run` installs the package when it is missing)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect_live import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    def __init__(self, bin_dir: Path, port: int):
        self.bin_dir, self.port = bin_dir, port

    def conninfo(self, dbname: str) -> str:
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user=east"

    def create_database(self, dbname: str) -> str:
        """A new, empty database (one DuckLake catalog); its conninfo."""
        _run([str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "east", dbname])
        return self.conninfo(dbname)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A running server (user `east`, trust auth on 127.0.0.1) in a temporary directory; removed at exit."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    # initdb refuses to run as root: as root, run the server as the package's `postgres` user
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="east-postgres-"))  # not under pytest's 0700 dirs: `postgres` must enter
    if as_user:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = root / "data", free_port()
    _run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "east"])
    _run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"), "-o",
          f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"])
    try:
        yield Postgres(bin_dir, port)
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
