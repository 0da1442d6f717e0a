"""`east` command line: run the self-training flow, report results, rebuild the backbone, operate from Prefect."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from east_tasks.config import PRESETS, ExperimentConfig, checked_config, config_yaml, load_config_file
from east_tasks.engines.generation.vllm_env import setup_engine_process
from east_tasks.engines.reaper import ensure_reaper
from east_tasks.errors import ENVIRONMENT_EXIT, USER_ERROR_EXIT, UserError, one_line
from east_tasks.paths import DEFAULT_DATA_DIR
from flows.operate import PROCESS_POOL

setup_engine_process()  # vLLM's engine processes import this module first, then vLLM (vllm_env.py)
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()

DataDir = Annotated[Path, typer.Option(help="where the DuckDB store, checkpoints and plots live")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="a YAML file of config fields (configs/*.yaml; "
                                                "`east config show` prints one): over its preset, under the "
                                                "other options")]
DataDirOrSet = Annotated[Path | None, typer.Option(help=f"where the DuckDB store, checkpoints and plots live "
                                                        f"(default: {DEFAULT_DATA_DIR}; or --set data_dir=...)")]


def _parse_sets(items: list[str]) -> dict:
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


def _data_dir(option: Path | None, overrides: dict) -> Path:
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
    root = Path(__file__).resolve().parents[1]
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


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of a failure too (or set "
                                                 "EAST_DEBUG=1)")] = False,
             version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="east's version (and git commit) and exit")] = False) -> None:
    global _debug
    _debug = _debug or debug


def _fail(message: str, code: int) -> NoReturn:
    """One red line (not reflowed, brackets not read as markup), then the exit code."""
    console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _failures_in_one_line(data_dir: Path = DEFAULT_DATA_DIR) -> Iterator[None]:
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
        _fail(str(known), known.exit_code)


def _config_or_exit(preset: str | None, config_file: Path | None = None, **overrides) -> ExperimentConfig:
    """The preset (default tiny), then the config file if any, then `overrides`; exit 2 with one line if invalid."""
    try:
        if config_file is None:
            return checked_config(preset or "tiny", **overrides)
        return load_config_file(config_file, preset, **overrides)
    except UserError as err:  # the file: missing, or not YAML; or an invalid value (checked_config)
        _fail(str(err), USER_ERROR_EXIT)
    except ValidationError as err:
        _fail(f"invalid configuration: {one_line(err)}", USER_ERROR_EXIT)
    except ValueError as err:
        _fail(f"invalid configuration: {err}", USER_ERROR_EXIT)


@app.command()
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
    overrides = _parse_sets(set_ or [])
    dir_given = data_dir is not None or "data_dir" in overrides  # else the config file's, or the default
    data_dir = _data_dir(data_dir, overrides)
    for section, values in (("weighting", {"a": a, "mapping": mapping}), ("backend", {"backend": backend}),
                            ("data", {"pool_size": pool_size})):
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    given = {"experiment": experiment, "rounds": rounds}  # options win over --set of the same field
    overrides.update({k: v for k, v in given.items() if v is not None})
    if dir_given:
        overrides["data_dir"] = data_dir
    cfg = _config_or_exit(preset, config, **overrides)
    from east_tasks.steps import preflight
    from flows.interrupts import stops_on_ctrl_c
    from flows.self_train import command_console, self_train

    t0 = time.time()
    ensure_reaper()  # a killed run leaves no engine or Prefect server behind
    with stops_on_ctrl_c(), _failures_in_one_line(cfg.data_dir), command_console():
        preflight(cfg)
        records = self_train(cfg)
    _print_table(cfg.experiment, records)
    console.print(f"done in {time.time() - t0:.1f}s; store: {cfg.store_location}")


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


@app.command()
def sweep(
    name: Annotated[str | None, typer.Option(help="sweep name (default: sweep); experiments are named "
                                             "<name>-<point>")] = None,
    preset: Annotated[str | None, typer.Option(help=f"one of: {', '.join(PRESETS)} (default: tiny)")] = None,
    rounds: Annotated[int | None, typer.Option(help="self-training rounds per point (default: 1)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="a sweep as YAML (configs/sweep-a-grid.yaml): "
                                                "name, preset, rounds, grid and the config fields of every point; "
                                                "the other options override it")] = None,
    a: Annotated[str | None, typer.Option(help="comma-separated sharpness values; 0 = vanilla")] = None,
    mappings: Annotated[str | None, typer.Option(help="comma-separated: power, exp")] = None,
    losses: Annotated[str | None, typer.Option(help="comma-separated: sft, dpo, kto")] = None,
    strategies: Annotated[str | None, typer.Option(help="comma-separated: entropy, local, accuracy, rejected")] = None,
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

    overrides = _parse_sets(set_ or [])
    if data_dir is not None or "data_dir" in overrides:  # over the file's
        overrides["data_dir"] = _data_dir(data_dir, overrides)
    try:
        given = {"a_values": a and [float(v) for v in _words(a)], "mappings": mappings and _words(mappings),
                 "losses": losses and _words(losses), "strategies": strategies and _words(strategies),
                 "seeds": seeds and [int(v) for v in _words(seeds)]}
        spec = load_sweep_file(config, name=name, preset=preset, rounds=rounds, base=overrides,
                               grid={k: v for k, v in given.items() if v is not None})
        name, preset, rounds, grid, overrides = spec.name, spec.preset, spec.rounds, spec.grid, dict(spec.base)
        data_dir = Path(overrides.pop("data_dir", DEFAULT_DATA_DIR))
        points = sweep_configs(name, grid, preset, rounds, data_dir, overrides)
    except UserError as err:  # the file: missing, or not YAML
        _fail(str(err), USER_ERROR_EXIT)
    except (ValidationError, ValueError) as err:
        _fail(f"invalid sweep: {one_line(err) if isinstance(err, ValidationError) else err}", USER_ERROR_EXIT)
    console.print(f"sweep {name}: {len(points)} points: " + ", ".join(cfg.experiment for _, cfg in points))
    t0 = time.time()
    ensure_reaper()
    with stops_on_ctrl_c(), _failures_in_one_line(data_dir), command_console():
        console.print(sweep_flow(name, grid, preset, rounds, data_dir, overrides, concurrent))
    console.print(f"done in {time.time() - t0:.1f}s; plots in {data_dir / 'plots'}")


config_app = typer.Typer(no_args_is_help=True, help="Show a resolved configuration (YAML, fit for --config).")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    preset: Annotated[str | None, typer.Option(help=f"one of: {', '.join(PRESETS)} (default: the --config file's "
                                               "preset:, else tiny)")] = None,
    config: ConfigFile = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any config field, as for `east run`")] = None,
) -> None:
    """Every field of the config `east run` would use with these options, defaults filled in, as YAML: save it,
    edit it, run it with `east run --config FILE` (the same file gives the same config)."""
    typer.echo(config_yaml(_config_or_exit(preset, config, **_parse_sets(set_ or []))), nl=False)


def _open_store(data_dir: Path):
    """The store the runs wrote: the file in data_dir, or the lake $EAST_STORE_URL names."""
    from east_tasks.config import StoreConfig
    from east_tasks.store import connect

    where = StoreConfig()
    if where.url is None and not (data_dir / "east.duckdb").exists():
        console.print(f"[red]no store at {data_dir / 'east.duckdb'}[/red]; run `east run` first")
        raise typer.Exit(1)
    with _failures_in_one_line(data_dir):
        return connect(where, data_dir)


@app.command()
def report(
    experiment: Annotated[str | None, typer.Option(help="default: every experiment in the store")] = None,
    sweep: Annotated[str | None, typer.Option(help="a sweep's table and plots instead (written beside the store)")]
    = None,
    versus: Annotated[str | None, typer.Option(help="with --sweep: another sweep to subtract, round by round, "
                                               "paired by setting and seed")] = None,
    cost: Annotated[bool, typer.Option("--cost", help="accuracy gained over the backbone per compute-hour, per "
                                       "experiment (with --sweep: per setting), and its plot")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Per-round test accuracy, read from the store; with --sweep, the sweep's Markdown table and PNG plots."""
    from east_tasks.report.frames import round_results, sweep_results, to_records
    from east_tasks.report.markdown import paired_by_round_markdown
    from east_tasks.report.pages import cost_report, write_sweep_report
    from east_tasks.report.statistics import best_on_validation, paired_by_round, sweep_summary

    if cost:
        with _open_store(data_dir) as store:
            if sweep and sweep not in store.sweeps():
                console.print(f"[red]no sweep {sweep!r}[/red]; known: {', '.join(store.sweeps()) or 'none'}")
                raise typer.Exit(1)
            markdown, summary, png = cost_report(store, data_dir / "plots", sweep=sweep,
                                                 experiments=[experiment] if experiment else None)
        print(summary.to_json(orient="records") if as_json else f"{markdown}\n\nPlot: {png}")
        return
    if sweep:
        with _open_store(data_dir) as store:
            for name in filter(None, (sweep, versus)):
                if name not in store.sweeps():
                    console.print(f"[red]no sweep {name!r}[/red]; known: {', '.join(store.sweeps()) or 'none'}")
                    raise typer.Exit(1)
            if versus:
                diffs = paired_by_round(sweep_results(store, sweep)[0], sweep_results(store, versus)[0])
                print(diffs.to_json(orient="records") if as_json else paired_by_round_markdown(diffs, sweep, versus))
                return
            if as_json:
                summary = sweep_summary(sweep_results(store, sweep)[0])
                print(json.dumps({"settings": summary.to_dict(orient="records"),
                                  "best_on_validation": best_on_validation(summary)}, indent=2, default=str))
                return
            table, plots = write_sweep_report(store, sweep, data_dir / "plots")
        print(f"{table}\n\nPlots: {', '.join(str(p) for p in plots)}")
        return
    with _open_store(data_dir) as store:
        known = store.experiments()
        if experiment and experiment not in known:
            listed = ", ".join(known) or "none"
            console.print(f"[red]no experiment {experiment!r} in {store.location}[/red]; known: {listed}")
            raise typer.Exit(1)
        names = [experiment] if experiment else known
        out = {name: to_records(round_results(store, name)) for name in names}
        where = f"{store.backend} store: {store.location}"  # a lake's URL without its password
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    console.print(where)
    for name, records in out.items():
        _print_table(name, records)


@app.command()
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


@app.command()
def server(
    host: Annotated[str, typer.Option(help="address to listen on; 127.0.0.1 keeps it to this machine")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 4200,
) -> None:
    """A Prefect server and its UI; point the other commands at it with PREFECT_API_URL=http://HOST:PORT/api."""
    from flows.operate import server_command

    console.print(f"UI: http://{host}:{port}  (export PREFECT_API_URL=http://{host}:{port}/api)")
    _become(server_command(host, port))


def _become(command: list[str]) -> None:
    """Replaces this process with a long-running Prefect one, so signals (Ctrl-C, a supervisor's stop) reach it."""
    sys.stdout.flush()
    os.execv(command[0], command)


def _require_api_url() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print("[red]PREFECT_API_URL is not set[/red]: start a server (`east server`) and "
                      "`export PREFECT_API_URL=http://127.0.0.1:4200/api`")
        raise typer.Exit(2)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="work pool (created if missing)")] = PROCESS_POOL,
    pool_type: Annotated[str, typer.Option("--type", help="process, or docker for the GPU worker image")] = "process",
    image: Annotated[str | None, typer.Option(help="docker pools: the worker image (default east-gpu-worker)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="flow runs the pool runs at once (sweep points, shards); "
                                             "above 1 needs a DuckLake store (EAST_STORE_URL)")] = 1,
) -> None:
    """Create the work pool and register the deployments of deployments/prefect.yaml on it."""
    from east_tasks.config import StoreConfig
    from east_tasks.store import require_shared_store
    from flows.operate import deploy as register

    try:
        store_url = StoreConfig().url  # $EAST_STORE_URL, checked: the Docker pool hands it to its flow runs
    except ValidationError as err:
        console.print(f"[red]EAST_STORE_URL: {err.errors()[0]['msg']}[/red]")
        raise typer.Exit(2) from None
    if concurrency > 1:
        with _failures_in_one_line():
            require_shared_store(store_url, f"--concurrency {concurrency}")
    _require_api_url()
    raise typer.Exit(register(pool, pool_type, image, concurrency, store_url).returncode)


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="work pool to take runs from")] = PROCESS_POOL,
    pool_type: Annotated[str | None, typer.Option("--type", help="type for a pool that does not exist yet")] = None,
) -> None:
    """A Prefect worker: runs the pool's flow runs (in the directory `east deploy` recorded)."""
    from flows.operate import worker_command

    _require_api_url()
    _become(worker_command(pool, pool_type))


Column = tuple[str, list[str]]  # a result table's header and its cells, one per round


def _result_columns(records: list[dict]) -> tuple[list[Column], list[Column], list[Column]]:
    """The columns of an experiment's result table: the round and its results, the sampled test metrics, and the
    test accuracy by tier (the latter two tables of their own on a terminal too narrow for one)."""
    from east_tasks.report.frames import tiers as tiers_of
    from east_tasks.report.markdown import fmt

    def col(header: str, cell: Callable[[dict], str]) -> Column:
        return header, [cell(r) for r in records]

    n = max((r["k"] or 0 for r in records), default=0)  # samples per test question; 0: greedy only
    sampled = ([("pass@1", "pass1"), ("±SE", "pass1_se"), (f"maj@{n}", "maj_acc"), (f"pass@{n}", "pass_acc")]
               if any(r["pass_acc"] is not None for r in records) else [])
    names = {"pool_pass_at_n": "pass@n", "pool_balance": "balance", "label_accuracy": "labels"}
    pool = [m for m in names if any(r.get(m) is not None for r in records)]
    main = [col("round", lambda r: "backbone" if r["round"] == 0 else str(r["round"])),
            col("test", lambda r: f"{r['greedy_acc']:.3f}"),
            col("val", lambda r: fmt(r.get("val_greedy_acc"))),
            col("kept", lambda r: str(r["n_kept"] or "-")),
            *(col(names[m], lambda r, m=m: fmt(r.get(m))) for m in pool)]
    by_tier = [col(f"t{t}", lambda r, t=t: fmt(r["by_tier"].get(t, {}).get("greedy_acc")))
               for t in tiers_of(r["by_tier"] for r in records)]
    return main, [col(header, lambda r, m=m: fmt(r[m])) for header, m in sampled], by_tier


def _rich_table(title: str, columns: list[Column]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, (header, _) in enumerate(columns):
        table.add_column(header, justify="right", min_width=8 if i == 0 else None)
    for row in zip(*(cells for _, cells in columns), strict=True):
        table.add_row(*row)
    return table


def _markdown_table(title: str, columns: list[Column]) -> str:
    return "\n".join([f"### {title}", "", "| " + " | ".join(h for h, _ in columns) + " |", "|---" * len(columns) + "|",
                      *("| " + " | ".join(row) + " |" for row in zip(*(cells for _, cells in columns), strict=True))])


def _print_table(name: str, records: list[dict]) -> None:
    """An experiment's results: on a terminal, a table that fits it (the tiers in a second table where one is too
    wide); anywhere else (a log, a pipe) or on a terminal too narrow for either, Markdown, whose numbers no width
    cuts."""
    from rich.measure import Measurement

    main, sampled, by_tier = _result_columns(records)
    n = max((r["k"] or 0 for r in records), default=0)
    title = (f"{name}: greedy test accuracy, overall{' and by tier (t1 easiest)' if by_tier else ''}; "
             + (f"from {n} samples per test question: pass@1 ± SE, maj@{n}, pass@{n}; " if n else "")
             + "validation greedy; questions kept for training; the round's pool: pass@n, B-STaR balance score, "
             "pseudo-label accuracy (label-free)")
    columns = [main[0], main[1], *by_tier, *sampled, *main[2:]]  # tiers and samples beside the greedy accuracy
    layouts = [[_rich_table(title, columns)],
               [_rich_table(f"{name}: greedy test accuracy; validation greedy; questions kept for training; the "
                            "round's pool: pass@n, B-STaR balance score, pseudo-label accuracy (label-free)", main),
                *([_rich_table(f"{name}: from {n} samples per test question: pass@1 ± SE, maj@{n}, pass@{n}",
                               [main[0], *sampled])] if sampled else []),
                *([_rich_table(f"{name}: greedy test accuracy by tier (t1 easiest)", [main[0], *by_tier])]
                  if by_tier else [])]]
    natural = console.options.update(max_width=10**6)
    fits = [layout for layout in layouts
            if all(Measurement.get(console, natural, t).maximum <= console.width for t in layout)]
    if not console.is_terminal or not fits:
        console.print(_markdown_table(title, columns), markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    for table in fits[0]:
        console.print(table)


@app.command()
def gc(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    keep_last: Annotated[int | None, typer.Option(min=1, help="also remove the checkpoints of every round before "
                                                  "each experiment's last K (default: keep every round's)")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="remove them (default: only list them)")] = False,
) -> None:
    """Checkpoints the store does not reference and temp dirs killed runs left; a dry run unless --delete.

    Never what a run may use: a live writer's temp dir (another machine's: one active in the last hour), or a
    checkpoint a round, a trained step, a started training step or a held claim refers to."""
    from east_tasks.store.housekeeping import removable, remove

    with _open_store(data_dir) as store:
        paths = removable(store, data_dir / "checkpoints", keep_last)
    for path in paths:
        typer.echo(f"{'removing' if delete else 'would remove'} {path}")
    if delete:
        console.print(f"removed {len(paths)} directories, {remove(paths) / 1e6:.1f} MB")
    else:
        console.print(f"{len(paths)} directories; run with --delete to remove them")


store_app = typer.Typer(no_args_is_help=True, help="Check the store, or copy it consistently.")
app.add_typer(store_app, name="store")


@store_app.command("check")
def store_check(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Opens the store (schema version and columns), reads back every table (DuckDB verifies each block's
    checksum) and looks for the checkpoints it records; exit 3 if something cannot be read."""
    from east_tasks.store.housekeeping import check

    with _failures_in_one_line(data_dir), _open_store(data_dir) as store:
        results = check(store, data_dir)
    for ok, what in results:
        typer.echo(f"{'ok     ' if ok else 'FAILED '} {what}")
    if not all(ok for ok, what in results[:-1]):  # missing checkpoints are recomputed by a rerun: a warning
        _fail("the store cannot be read whole: restore it from a backup (`east store backup`), or move it aside "
              "and rerun", ENVIRONMENT_EXIT)


@store_app.command("backup")
def store_backup(dest: Annotated[Path, typer.Argument(help="directory for the copy (DEST/east.duckdb)")],
                 data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """A consistent copy of the store (the file, or a lake copied into a file) while runs may be writing to it.
    Copy data_dir/checkpoints beside it to make DEST a data dir of its own (checkpoint paths are relative)."""
    from east_tasks.store.housekeeping import backup

    with _failures_in_one_line(data_dir), _open_store(data_dir) as store:
        final = backup(store, dest)
    console.print(f"backed up {store.location} to {final} ({final.stat().st_size / 1e6:.1f} MB)")


export_app = typer.Typer(help="Hand a round off: its model (`model`), its training rows (`data`); or, with "
                         "--parquet DIR, every table of the store.")
app.add_typer(export_app, name="export")
Target = Annotated[str, typer.Argument(help="EXPERIMENT or EXPERIMENT:ROUND (default: the last recorded round; "
                                       "0 = the base model)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace an earlier export in DIR")]


@export_app.callback(invoke_without_command=True)
def export(
    ctx: typer.Context,
    parquet: Annotated[Path | None, typer.Option(help="directory for one <table>.parquet per store table")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Every table of the store as Parquet (for pandas, Polars, Spark, DuckDB elsewhere) with --parquet DIR; a
    round's model or training rows with `export model` / `export data`."""
    if ctx.invoked_subcommand is not None:
        return
    if parquet is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    with _open_store(data_dir) as store:
        rows = store.export_parquet(parquet)
    for table, n in rows.items():
        typer.echo(f"{parquet / table}.parquet: {n} rows")


@export_app.command("model")
def export_model(
    target: Target,
    out: Annotated[Path, typer.Argument(help="the model directory to write (config.json, model.safetensors, "
                                       "tokenizer, generation_config.json, README.md model card)")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    overwrite: Overwrite = False,
    push_to_hub: Annotated[str | None, typer.Option(help="then upload DIR to this Hugging Face Hub repo "
                                                    "(user/name; created if missing; token from `hf auth login` "
                                                    "or HF_TOKEN)")] = None,
) -> None:
    """A round's model as a plain Hugging Face model directory with a model card (AutoModelForCausalLM loads it)."""
    from east_tasks.report import export

    with _failures_in_one_line(data_dir):
        experiment, round_ = export.parse_target(target)
        with _open_store(data_dir) as store:
            ref = export.find_round(store, experiment, round_)
            export.export_model(store, data_dir, ref, out, overwrite)
        console.print(f"{ref.experiment}:{ref.round} (model {ref.model_hash}) -> {out}")
        if push_to_hub:
            console.print(f"pushed to {export.push_to_hub(out, push_to_hub)}")


@export_app.command("data")
def export_data(
    target: Target,
    out: Annotated[Path, typer.Argument(help="the directory to write (data.parquet, dataset/ for "
                                       "datasets.load_from_disk, README.md)")],
    accumulated: Annotated[bool, typer.Option("--accumulated", help="every row the round trained on (with "
                                              "train.accumulate, earlier rounds' too), not only the rows it kept")]
    = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    overwrite: Overwrite = False,
) -> None:
    """A round's training rows as a Hugging Face `datasets` dataset and Parquet, in TRL's columns for its loss."""
    from east_tasks.report import export

    with _failures_in_one_line(data_dir):
        experiment, round_ = export.parse_target(target)
        with _open_store(data_dir) as store:
            ref = export.find_round(store, experiment, round_)
            dataset = export.export_data(store, ref, out, accumulated, overwrite)
    console.print(f"{ref.experiment}:{ref.round}: {dataset.num_rows} rows ({', '.join(dataset.column_names)}) "
                  f"-> {out}")


@app.command()
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


def main() -> None:
    app()



if __name__ == "__main__":
    main()
