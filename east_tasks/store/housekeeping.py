"""Disk housekeeping: checkpoints the store no longer points at, and temp dirs a killed run left."""

from __future__ import annotations

import shutil
from pathlib import Path

from east_tasks.store import Store


def unreferenced(store: Store, checkpoint_dir: Path, keep_last: int | None = None) -> list[Path]:
    """Checkpoint dirs (and `.*.tmp-*` leftovers) under `checkpoint_dir` the store does not reference; with
    `keep_last`, also those of every round before each experiment's last `keep_last`."""
    if not checkpoint_dir.is_dir():
        return []
    keep = store.referenced_checkpoints(keep_last)
    return sorted(p for p in checkpoint_dir.iterdir() if p.is_dir() and p.resolve() not in keep)


def remove(paths: list[Path]) -> int:
    """Deletes the dirs; returns the bytes freed."""
    freed = 0
    for path in paths:
        freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path)
    return freed
