"""The failures a user causes or meets, each with its exit code, so that a script (or a scheduler) can tell them
apart and the CLI prints them as one line (`--debug` or EAST_DEBUG=1 shows the traceback):

- `UserError` (exit 2): something the user must fix: bad data, a config a run cannot use, a missing or unloadable
  model, filters that leave nothing to train on, a name or path that cannot work.
- `EnvironmentFault` (exit 3): the machine, not the input: the disk is full, the store is corrupt or truncated.
- Interrupted (exit 130, as shells report SIGINT): the run stopped on Ctrl-C; rerunning resumes it.

Retrying helps neither of the first two, so the flows do not retry them; anything else is a crash worth a retry
and a traceback.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from pydantic import ValidationError

USER_ERROR_EXIT = 2
ENVIRONMENT_EXIT = 3
INTERRUPTED_EXIT = 130


class UserError(ValueError):
    exit_code = USER_ERROR_EXIT


class EnvironmentFault(RuntimeError):
    exit_code = ENVIRONMENT_EXIT


def one_line(err: ValidationError) -> str:
    """A pydantic validation error as one line: each bad field's dotted path and what is wrong with it (the CLI and
    the deployments' forms say the same)."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in err.errors())


def is_disk_full(err: BaseException) -> bool:
    """`OSError: [Errno 28]`, or a library's message carrying it (safetensors: `... os error 28`), anywhere in the
    exception's chain."""
    while err is not None:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if "no space left on device" in str(err).lower() or "os error 28" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full(err: BaseException, data_dir: Path) -> EnvironmentFault:
    """The one line for a full disk: where it was writing and how much is free there."""
    while err is not None and not (isinstance(err, OSError) and err.filename):
        err = err.__cause__ or err.__context__
    where = Path(err.filename) if err is not None else Path(data_dir)
    probe = next((p for p in (where, *where.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free
    return EnvironmentFault(f"disk full: no space left on the file system of {where} ({free / 1e6:.0f} MB free); "
                            "free some (`east gc --delete` removes checkpoints nothing uses) and rerun: it resumes "
                            "from what the store has")
