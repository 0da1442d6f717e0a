"""A sweep's grid points and their experiment configs (the flow that runs them lives in flows/sweep.py).

Every point is its own experiment in the one store, so points that share a seed share the base model's
evaluation and the first round's pool generations (same keys): K settings cost about one generation plus
K trainings and evaluations per seed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from east_tasks.config import ExperimentConfig, SweepGrid, load_config


@dataclass(frozen=True)
class SweepPoint:
    seed: int
    loss: str
    strategy: str
    mapping: str
    a: float
    band: tuple[float, float] | None = None

    @property
    def slug(self) -> str:
        weighting = "vanilla" if self.a == 0 else f"{self.strategy}-{self.mapping}-a{self.a:g}"
        band = "" if self.band is None else f"-band{self.band[0]:g}-{self.band[1]:g}"
        return f"{self.loss}-{weighting}{band}-s{self.seed}"


def grid_points(grid: SweepGrid) -> list[SweepPoint]:
    """The grid's distinct points, seed-major. With a = 0 every weight is 1, so strategy and mapping are moot
    and all such points collapse into one vanilla point per loss, band and seed."""
    points: dict[SweepPoint, None] = {}
    for seed, loss, band, strategy, mapping, a in itertools.product(grid.seeds, grid.losses, grid.bands,
                                                                    grid.strategies, grid.mappings, grid.a_values):
        point = (SweepPoint(seed, loss, "entropy", "power", 0.0, band) if a == 0 else
                 SweepPoint(seed, loss, strategy, mapping, a, band))
        points.setdefault(point)
    return list(points)


def point_config(sweep: str, point: SweepPoint, preset: str = "tiny", rounds: int | None = None,
                 data_dir: Path | None = None, **overrides) -> ExperimentConfig:
    """The preset with `overrides`, then the point's fields; named `<sweep>-<point slug>`."""
    sections = {k: dict(overrides.pop(k, {})) for k in ("weighting", "train", "sampling")}
    sections["weighting"].update(strategy=point.strategy, mapping=point.mapping, a=point.a, seed=point.seed)
    if point.band is not None:
        sections["weighting"]["keep_pass_rate"] = point.band
    sections["train"].update(loss=point.loss, seed=point.seed)
    sections["sampling"].update(seed=point.seed)
    return load_config(preset, experiment=f"{sweep}-{point.slug}", rounds=rounds, data_dir=data_dir,
                       **sections, **overrides)


def point_record(sweep: str, cfg: ExperimentConfig, point: SweepPoint) -> dict:
    fields = asdict(point)
    band = fields.pop("band")
    return {"sweep": sweep, "experiment": cfg.experiment, **fields,
            "keep_pass_rate": None if band is None else json.dumps(list(band))}
