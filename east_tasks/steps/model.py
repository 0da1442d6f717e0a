"""A model as the steps pass it around: where it is and its content hash (which every key downstream reads)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from east_tasks.io import fingerprint, hash_dir


class ModelRef(BaseModel):
    """A model directory (or hub name) and its content hash; pydantic so Prefect can pass it around."""

    model_config = ConfigDict(frozen=True)
    path: str
    hash: str


def model_ref(path: str | Path) -> ModelRef:
    """Local dirs are hashed by content; hub names by name (pin a revision in the name for stability)."""
    p = Path(path)
    return ModelRef(path=str(path), hash=hash_dir(p) if p.is_dir() else fingerprint({"hub": str(path)}))
