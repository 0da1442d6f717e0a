"""A model as the steps pass it around: where it is, its content hash (which every key downstream reads) and the
rounds that trained it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from east_tasks.io import fingerprint, hash_dir


class ModelRef(BaseModel):
    """A model directory (or hub name), its content hash, and the selections (weight keys) of the rounds that
    trained it, in order: with `train.accumulate` a round trains on them again. Pydantic so Prefect can pass it
    around."""

    model_config = ConfigDict(frozen=True)
    path: str
    hash: str
    weight_keys: tuple[str, ...] = ()


def model_ref(path: str | Path) -> ModelRef:
    """Local dirs are hashed by content; hub names by name (pin a revision in the name for stability)."""
    p = Path(path)
    return ModelRef(path=str(path), hash=hash_dir(p) if p.is_dir() else fingerprint({"hub": str(path)}))
