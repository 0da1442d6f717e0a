"""Fault injection for testing "retry from the UI": `EAST_FAIL_ONCE=<task name>` makes that task raise once.

The worker's environment carries the variable into every flow run; a marker file under the data dir
remembers that the fault fired, so the retried run passes. Unset (the default) it does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

FAIL_ONCE_ENV = "EAST_FAIL_ONCE"


def fail_once_if_asked(task_name: str, data_dir: Path) -> None:
    if os.environ.get(FAIL_ONCE_ENV) != task_name:
        return
    marker = Path(data_dir) / "injected-faults" / task_name
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    raise RuntimeError(f"fault injected by {FAIL_ONCE_ENV}={task_name} (it fires once: retry the run)")
