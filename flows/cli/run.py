"""`east run`: EAST self-training rounds of one experiment, then its result table."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from east_tasks.config import PRESETS
from east_tasks.engines.reaper import ensure_reaper
from flows.cli.common import (
    ConfigFile,
    DataDirOrSet,
    check_data_dir,
    config_or_exit,
    console,
    data_dir_of,
    failures_in_one_line,
    parse_sets,
)


def run(
    preset: Annotated[str | None, typer.Option(help=f"one of: {', '.join(PRESETS)} (default: the --config file's "
                                               "preset:, else tiny)")] = None,
    config: ConfigFile = None,
    experiment: Annotated[str | None, typer.Option(help="name (default: the preset's)")] = None,
    rounds: Annotated[int | None, typer.Option(help="self-training rounds")] = None,
    a: Annotated[float | None, typer.Option(help="sharpness of the entropy mapping; 0 = vanilla")] = None,
    mapping: Annotated[str | None, typer.Option(help="power | exp")] = None,
    backend: Annotated[str | None, typer.Option(help="vllm | hf")] = None,
    pool_size: Annotated[int | None, typer.Option(help="unlabelled questions per round")] = None,
    data_dir: DataDirOrSet = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any config field, e.g. --set train.lr=1e-5 "
                                                    "--set data.path=/data/gsm8k (repeatable)")] = None,
) -> None:
    """EAST self-training rounds from the preset's base model, every step cached in the DuckDB store."""
    overrides = parse_sets(set_ or [])
    dir_given = data_dir is not None or "data_dir" in overrides  # else the config file's, or the default
    data_dir = data_dir_of(data_dir, overrides)
    for section, values in (("weighting", {"a": a, "mapping": mapping}), ("backend", {"engine": backend}),
                            ("data", {"pool_size": pool_size})):
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    given = {"experiment": experiment, "rounds": rounds}  # options win over --set of the same field
    overrides.update({k: v for k, v in given.items() if v is not None})
    if dir_given:
        overrides["data_dir"] = data_dir
    cfg = config_or_exit(preset, config, **overrides)
    from east_tasks.report.tables import print_results
    from east_tasks.steps import preflight
    from flows.interrupts import stops_on_ctrl_c
    from flows.self_train import command_console, self_train

    t0 = time.time()
    check_data_dir(cfg)
    ensure_reaper()  # a killed run leaves no engine or Prefect server behind
    with stops_on_ctrl_c(), failures_in_one_line(cfg.data_dir), command_console():
        preflight(cfg)
        records = self_train(cfg)
    print_results(console, cfg.experiment, records)
    console.print(f"done in {time.time() - t0:.1f}s; store: {cfg.store_location}")
