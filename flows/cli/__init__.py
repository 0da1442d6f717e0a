"""`east` command line: run the self-training flow, report results, rebuild the backbone, operate from Prefect."""

from __future__ import annotations

import typer

from east_tasks.engines.generation.vllm_env import setup_engine_process
from flows.cli import common, config, export, machine, report, run, server, store, sweep

setup_engine_process()  # vLLM's engine processes import this package first, then vLLM (vllm_env.py)
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.callback()(common.global_options)
for command in (run.run, sweep.sweep, report.report, machine.bootstrap, server.server, server.deploy, server.worker,
                store.gc, machine.doctor):  # in `east --help`'s order
    app.command()(command)
app.add_typer(config.app, name="config")
app.add_typer(store.app, name="store")
app.add_typer(export.app, name="export")


def main() -> None:
    app()
