"""`sweep`: one `self-train` subflow per grid point, all in one store, then the sweep's report as artifacts.

Points run seed-major, so the base model's evaluation and each seed's first-round pool generations are
computed once and every later point of that seed finds them in the store.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from east_tasks.config import DEFAULT_DATA_DIR, StoreConfig, SweepGrid
from east_tasks.generation import release_generator
from east_tasks.report import embedded_plots, write_sweep_report
from east_tasks.store import connect, open_store
from east_tasks.sweep import grid_points, point_config, point_record
from flows.artifacts import artifact_key
from flows.self_train import self_train


def sweep_configs(name: str, grid: SweepGrid, preset: str, rounds: int | None, data_dir: Path,
                  overrides: dict | None) -> list:
    """Every point's config, built (and so validated) before anything runs."""
    return [(point, point_config(name, point, preset, rounds, data_dir, **dict(overrides or {})))
            for point in grid_points(grid)]


@flow(name="sweep", flow_run_name="sweep-{name}")
def sweep(name: str = "sweep", grid: SweepGrid | None = None, preset: str = "tiny", rounds: int | None = 1,
          data_dir: Path = DEFAULT_DATA_DIR, overrides: dict | None = None) -> str:
    """Runs every point of `grid` as experiment `<name>-<point>` and publishes the table and plots."""
    logger = get_run_logger()
    points = sweep_configs(name, grid or SweepGrid(), preset, rounds, data_dir, overrides)
    logger.info(f"sweep {name}: {len(points)} points")
    try:
        for i, (point, cfg) in enumerate(points, 1):
            logger.info(f"[{i}/{len(points)}] {cfg.experiment}")
            with open_store(cfg) as store:
                store.record_sweep_run(**point_record(name, cfg, point))
            self_train(cfg, keep_engine=True)  # the next point syncs its weights into the same engine
    finally:
        release_generator()
    with connect(points[0][1].store if points else StoreConfig(), Path(data_dir)) as store:
        table, plots = write_sweep_report(store, name, Path(data_dir) / "plots")
    markdown = f"{table}\n\n{embedded_plots({p.stem: p for p in plots})}"  # the UI shows them from the artifact
    key = artifact_key(f"sweep-{name}")
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description=f"Sweep {name}: results and plots")
    return markdown
