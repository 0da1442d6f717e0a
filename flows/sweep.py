"""`sweep`: one `self-train` subflow per grid point, all in one store, then the sweep's report as artifacts.

Points run seed-major, so the base model's evaluation and each seed's first-round pool generations are
computed once and every later point of that seed finds them in the store. With `concurrent`, every point is its
own flow run of the `east-experiment/experiment` deployment instead, run by the work pool's workers as many at
once as the pool's concurrency allows (`east deploy --concurrency N`, a DuckLake store); points that share a step
wait for the one worker computing it (east_tasks.store.Claim) and then reuse it.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from east_tasks.config import StoreConfig, SweepGrid
from east_tasks.engines.generation import release_generator
from east_tasks.paths import DEFAULT_DATA_DIR
from east_tasks.report.markdown import embedded_plots
from east_tasks.report.pages import write_sweep_report
from east_tasks.store import connect, open_store, require_shared_store
from east_tasks.sweep import grid_points, point_config, point_record
from flows.artifacts import artifact_key
from flows.operate import run_deployments
from flows.self_train import self_train


def sweep_configs(name: str, grid: SweepGrid, preset: str, rounds: int | None, data_dir: Path,
                  overrides: dict | None) -> list:
    """Every point's config, built (and so validated) before anything runs."""
    return [(point, point_config(name, point, preset, rounds, data_dir, **dict(overrides or {})))
            for point in grid_points(grid)]


EXPERIMENT_DEPLOYMENT = "east-experiment/experiment"  # flows/entrypoints.py:run_experiment


@flow(name="sweep", flow_run_name="sweep-{name}")
def sweep(name: str = "sweep", grid: SweepGrid | None = None, preset: str = "tiny", rounds: int | None = 1,
          data_dir: Path = DEFAULT_DATA_DIR, overrides: dict | None = None, concurrent: bool = False) -> str:
    """Runs every point of `grid` as experiment `<name>-<point>` and publishes the table and plots; with
    `concurrent`, as flow runs of the experiment deployment that the pool's workers run side by side."""
    logger = get_run_logger()
    points = sweep_configs(name, grid or SweepGrid(), preset, rounds, data_dir, overrides)
    logger.info(f"sweep {name}: {len(points)} points")
    if concurrent:
        require_shared_store(points[0][1].store.url, "a concurrent sweep")
        for point, cfg in points:
            with open_store(cfg) as store:
                store.record_sweep_run(**point_record(name, cfg, point))
        run_deployments(EXPERIMENT_DEPLOYMENT, {cfg.experiment: {"config": cfg.model_dump(mode="json")}
                                                for _, cfg in points})
    else:
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
