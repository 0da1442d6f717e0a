"""Test hooks for faults at exact points. `EAST_PAUSE_AT=<point>` makes the run print `EAST_PAUSED <point>` to
stderr and wait there, so a fault test can SIGKILL it mid-generation (after a chunk is committed) or while a
checkpoint is half written. `EAST_DISK_FULL_AT=<point>` makes the write there fail as a full disk does (a fault a
test cannot make for real without a small file system of its own). Unset (the default) they do nothing."""

from __future__ import annotations

import errno
import os
import sys
import time

PAUSE_ENV = "EAST_PAUSE_AT"
DISK_FULL_ENV = "EAST_DISK_FULL_AT"


def pause_if_asked(point: str) -> None:
    if os.environ.get(PAUSE_ENV) == point:
        print(f"EAST_PAUSED {point}", file=sys.stderr, flush=True)
        time.sleep(3600)


def disk_full_if_asked(point: str, path: object) -> None:
    if os.environ.get(DISK_FULL_ENV) == point:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
