"""What every `east` command shares: the console, the option types, `--set` parsing, the global options, failures
as one red line with their exit code, the config a command's options resolve to, and the store the runs wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from east_tasks.config import ExperimentConfig, checked_config, load_config_file
from east_tasks.errors import USER_ERROR_EXIT, UserError, one_line
from east_tasks.paths import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from east_tasks.store import Store

console = Console()

DataDir = Annotated[Path, typer.Option(help="where the DuckDB store, checkpoints and plots live")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="a YAML file of config fields (configs/*.yaml; "
                                                "`east config show` prints one): over its preset, under the "
                                                "other options")]
DataDirOrSet = Annotated[Path | None, typer.Option(help=f"where the DuckDB store, checkpoints and plots live "
                                                        f"(default: {DEFAULT_DATA_DIR}; or --set data_dir=...)")]


def parse_sets(items: list[str]) -> dict:
    """`a.b=1` -> {"a": {"b": 1}}; values are JSON when they parse as JSON, else strings."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            console.print(f"[red]--set {item!r}: expected FIELD=VALUE, e.g. train.lr=1e-5[/red]")
            raise typer.Exit(2)
        path, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = path.strip().split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def data_dir_of(option: Path | None, overrides: dict) -> Path:
    """`--data-dir` or `--set data_dir=...` (one field, two spellings; both given must agree)."""
    given = overrides.pop("data_dir", None)
    if option is not None and given is not None and Path(given) != option:
        console.print(f"[red]--data-dir {option} and --set data_dir={given} disagree; give one[/red]")
        raise typer.Exit(2)
    return option or Path(given or DEFAULT_DATA_DIR)


_debug = os.environ.get("EAST_DEBUG", "") not in ("", "0")


def _version() -> str:
    """east's version, and the git commit of the checkout it runs from, where it runs from one."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        line = f"east {version('east')}"
    except PackageNotFoundError:
        line = "east (not installed)"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return line
    if commit.returncode == 0:
        line += f" (git {commit.stdout.strip()}{', with local changes' if changed.stdout.strip() else ''})"
    return line


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(_version())
        raise typer.Exit()


def global_options(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of a failure too (or "
                                                       "set EAST_DEBUG=1)")] = False,
                   version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                         help="east's version (and git commit) and exit")] = False,
                   ) -> None:
    """The options before the command (`east --debug run`), the app's callback."""
    global _debug
    _debug = _debug or debug


def fail(message: str, code: int) -> NoReturn:
    """One red line (not reflowed, brackets not read as markup), then the exit code."""
    console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def failures_in_one_line(data_dir: Path = DEFAULT_DATA_DIR) -> Iterator[None]:
    """What a user causes or meets (bad input: exit 2; a full disk or a damaged store: exit 3) is one line saying
    what to do (east_tasks/errors.py); a crash keeps its traceback. --debug shows the traceback of both."""
    try:
        yield
    except Exception as err:
        from east_tasks.steps import known_failure

        known = known_failure(err, data_dir)
        if known is None:
            raise
        if _debug:
            console.print_exception()
        fail(str(known), known.exit_code)


def config_or_exit(preset: str | None, config_file: Path | None = None, **overrides) -> ExperimentConfig:
    """The preset (default tiny), then the config file if any, then `overrides`; exit 2 with one line if invalid."""
    try:
        if config_file is None:
            return checked_config(preset or "tiny", **overrides)
        return load_config_file(config_file, preset, **overrides)
    except UserError as err:  # the file: missing, or not YAML; or an invalid value (checked_config)
        fail(str(err), USER_ERROR_EXIT)
    except ValidationError as err:
        fail(f"invalid configuration: {one_line(err)}", USER_ERROR_EXIT)
    except ValueError as err:
        fail(f"invalid configuration: {err}", USER_ERROR_EXIT)


def open_store(data_dir: Path) -> Store:
    """The store the runs wrote: the file in data_dir, or the lake $EAST_STORE_URL names."""
    from east_tasks.config import StoreConfig
    from east_tasks.store import connect_existing

    with failures_in_one_line(data_dir):
        return connect_existing(StoreConfig(), data_dir)


def check_data_dir(cfg: ExperimentConfig) -> None:
    """A data dir that cannot be created or written is one line (exit 3) before the Prefect server starts."""
    from east_tasks.steps.data import check_data_dir as check

    with failures_in_one_line(cfg.data_dir):
        check(cfg)
