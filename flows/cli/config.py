"""`east config show`: the configuration a run's options resolve to, as YAML fit for --config."""

from __future__ import annotations

from typing import Annotated

import typer

from east_tasks.config import PRESETS, config_yaml
from flows.cli.common import ConfigFile, config_or_exit, parse_sets

app = typer.Typer(no_args_is_help=True, help="Show a resolved configuration (YAML, fit for --config).")


@app.command("show")
def config_show(
    preset: Annotated[str | None, typer.Option(help=f"one of: {', '.join(PRESETS)} (default: the --config file's "
                                               "preset:, else tiny)")] = None,
    config: ConfigFile = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any config field, as for `east run`")] = None,
) -> None:
    """Every field of the config `east run` would use with these options, defaults filled in, as YAML: save it,
    edit it, run it with `east run --config FILE` (the same file gives the same config)."""
    typer.echo(config_yaml(config_or_exit(preset, config, **parse_sets(set_ or []))), nl=False)
