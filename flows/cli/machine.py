"""This machine's east: `east bootstrap` rebuilds the committed backbone, `east doctor` checks the install."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from east_tasks.paths import DEFAULT_DATA_DIR
from flows.cli.common import DataDir, console


def bootstrap(
    out: Annotated[Path | None, typer.Option(help="default: the committed backbone dir")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps (default from BootstrapConfig)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Rebuild the tiny backbone from scratch with the project's seeded bootstrap (≈10 min on 2 cores)."""
    from dataclasses import replace

    from east_tasks.models.bootstrap import BootstrapConfig, bootstrap_backbone
    from east_tasks.paths import BACKBONE_DIR

    cfg = BootstrapConfig(seed=seed)
    cfg = replace(cfg, steps=steps) if steps else cfg
    manifest = bootstrap_backbone(out or BACKBONE_DIR, cfg)
    console.print_json(data=manifest)


def doctor(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Checks this machine for east in a few seconds, starting no engine: Python and packages, the vLLM and torch
    builds, GPUs, free disk, the store, the Prefect API, the libraries vLLM's CPU build preloads, the tests' tools.
    One line each: ok, warn or FAIL, and what to do; exit 1 if something FAILs."""
    from east_tasks.report.doctor import FAIL, run_checks

    checks = run_checks(data_dir)
    for check in checks:
        console.print(check.line(), style="red" if check.status == FAIL else None, markup=False, highlight=False,
                      soft_wrap=True)
    if any(c.status == FAIL for c in checks):
        raise typer.Exit(1)
