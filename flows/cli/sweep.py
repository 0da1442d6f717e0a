"""`east sweep`: every point of a grid as its own experiment, then the sweep's report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, get_args

import typer
from pydantic import ValidationError

from east_tasks.config import PRESETS, Loss
from east_tasks.core.weighting import MAPPINGS, MEASURES
from east_tasks.engines.reaper import ensure_reaper
from east_tasks.errors import USER_ERROR_EXIT, UserError, one_line
from east_tasks.paths import DEFAULT_DATA_DIR
from flows.cli.common import (
    DataDirOrSet,
    check_data_dir,
    console,
    data_dir_of,
    fail,
    failures_in_one_line,
    parse_sets,
)


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def sweep(
    name: Annotated[str | None, typer.Option(help="sweep name (default: sweep); experiments are named "
                                             "<name>-<point>")] = None,
    preset: Annotated[str | None, typer.Option(help=f"one of: {', '.join(PRESETS)} (default: tiny)")] = None,
    rounds: Annotated[int | None, typer.Option(help="self-training rounds per point (default: 1)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="a sweep as YAML (configs/sweep-a-grid.yaml): "
                                                "name, preset, rounds, grid and the config fields of every point; "
                                                "the other options override it")] = None,
    a: Annotated[str | None, typer.Option(help="comma-separated sharpness values; 0 = vanilla")] = None,
    mappings: Annotated[str | None, typer.Option(help=f"comma-separated: {', '.join(MAPPINGS)}")] = None,
    losses: Annotated[str | None, typer.Option(help=f"comma-separated: {', '.join(get_args(Loss))}")] = None,
    strategies: Annotated[str | None, typer.Option(help=f"comma-separated: {', '.join(MEASURES)}")] = None,
    bands: Annotated[str | None, typer.Option(help="comma-separated pass-rate bands lo-hi (weighting.keep_pass_rate), "
                                              "'none' for every rate: none,0.2-0.8")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds")] = None,
    data_dir: DataDirOrSet = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any config field, as for `east run`")] = None,
    concurrent: Annotated[bool, typer.Option("--concurrent", help="every point a flow run of the east-experiment "
                                             "deployment, run side by side by the pool's workers (a DuckLake "
                                             "store, `east deploy --concurrency N`, `east worker`)")] = False,
) -> None:
    """Every point of a grid as its own experiment (cached generations shared), then the sweep report.

    Grid options left out take the --config file's lists, else the defaults of `east_tasks.config.SweepGrid`."""
    from east_tasks.config import load_sweep_file
    from flows.interrupts import stops_on_ctrl_c
    from flows.self_train import command_console
    from flows.sweep import sweep as sweep_flow
    from flows.sweep import sweep_configs

    overrides = parse_sets(set_ or [])
    if data_dir is not None or "data_dir" in overrides:  # over the file's
        overrides["data_dir"] = data_dir_of(data_dir, overrides)
    try:
        given = {"a_values": a and [float(v) for v in _words(a)], "mappings": mappings and _words(mappings),
                 "losses": losses and _words(losses), "strategies": strategies and _words(strategies),
                 "bands": bands and [None if b == "none" else tuple(map(float, b.split("-", 1)))
                                     for b in _words(bands)],
                 "seeds": seeds and [int(v) for v in _words(seeds)]}
        spec = load_sweep_file(config, name=name, preset=preset, rounds=rounds, base=overrides,
                               grid={k: v for k, v in given.items() if v is not None})
        name, preset, rounds, grid, overrides = spec.name, spec.preset, spec.rounds, spec.grid, dict(spec.base)
        data_dir = Path(overrides.pop("data_dir", DEFAULT_DATA_DIR))
        points = sweep_configs(name, grid, preset, rounds, data_dir, overrides)
    except UserError as err:  # the file: missing, or not YAML
        fail(str(err), USER_ERROR_EXIT)
    except (ValidationError, ValueError) as err:
        fail(f"invalid sweep: {one_line(err) if isinstance(err, ValidationError) else err}", USER_ERROR_EXIT)
    console.print(f"sweep {name}: {len(points)} points: " + ", ".join(cfg.experiment for _, cfg in points))
    t0 = time.time()
    check_data_dir(points[0][1])
    ensure_reaper()
    with stops_on_ctrl_c(), failures_in_one_line(data_dir), command_console():
        console.print(sweep_flow(name, grid, preset, rounds, data_dir, overrides, concurrent))
    console.print(f"done in {time.time() - t0:.1f}s; plots in {data_dir / 'plots'}")
