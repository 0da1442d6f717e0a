"""A test hook for kills at exact points: `EAST_PAUSE_AT=<point>` makes the run print `EAST_PAUSED <point>` to
stderr and wait there, so a fault test can SIGKILL it mid-generation (after a chunk is committed) or while a
checkpoint is half written. Unset (the default) it does nothing."""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "EAST_PAUSE_AT"


def pause_if_asked(point: str) -> None:
    if os.environ.get(PAUSE_ENV) == point:
        print(f"EAST_PAUSED {point}", file=sys.stderr, flush=True)
        time.sleep(3600)
