"""`east` command line: run the self-training flow, report results, rebuild the backbone, operate from Prefect."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from east_tasks.config import PRESETS, ExperimentConfig, checked_config
from east_tasks.engines.reaper import ensure_reaper
from east_tasks.errors import ENVIRONMENT_EXIT, USER_ERROR_EXIT, UserError, one_line
from east_tasks.paths import DEFAULT_DATA_DIR
from flows.operate import PROCESS_POOL

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()

DataDir = Annotated[Path, typer.Option(help="where the DuckDB store, checkpoints and plots live")]
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


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of a failure too (or set "
                                                 "EAST_DEBUG=1)")] = False) -> None:
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


def _config_or_exit(preset: str, **overrides) -> ExperimentConfig:
    try:
        return checked_config(preset, **overrides)
    except UserError as err:
        _fail(str(err), USER_ERROR_EXIT)


@app.command()
def run(
    preset: Annotated[str, typer.Option(help=f"one of: {', '.join(PRESETS)}")] = "tiny",
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
    data_dir = _data_dir(data_dir, overrides)
    for section, values in (("weighting", {"a": a, "mapping": mapping}), ("backend", {"backend": backend}),
                            ("data", {"pool_size": pool_size})):
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    given = {"experiment": experiment, "rounds": rounds}  # options win over --set of the same field
    overrides.update({k: v for k, v in given.items() if v is not None}, data_dir=data_dir)
    cfg = _config_or_exit(preset, **overrides)
    from east_tasks.steps import preflight
    from flows.interrupts import stops_on_ctrl_c
    from flows.self_train import self_train

    t0 = time.time()
    ensure_reaper()  # a killed run leaves no engine or Prefect server behind
    with stops_on_ctrl_c(), _failures_in_one_line(cfg.data_dir):
        preflight(cfg)
        records = self_train(cfg)
    _print_table(cfg.experiment, records)
    console.print(f"done in {time.time() - t0:.1f}s; store: {cfg.store_location}")


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


@app.command()
def sweep(
    name: Annotated[str, typer.Option(help="sweep name; experiments are named <name>-<point>")] = "sweep",
    preset: Annotated[str, typer.Option(help=f"one of: {', '.join(PRESETS)}")] = "tiny",
    rounds: Annotated[int, typer.Option(help="self-training rounds per point")] = 1,
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

    Grid options left out take the defaults of `east_tasks.config.SweepGrid`."""
    from east_tasks.config import SweepGrid
    from flows.interrupts import stops_on_ctrl_c
    from flows.sweep import sweep as sweep_flow
    from flows.sweep import sweep_configs

    overrides = _parse_sets(set_ or [])
    data_dir = _data_dir(data_dir, overrides)
    try:
        given = {"a_values": a and [float(v) for v in _words(a)], "mappings": mappings and _words(mappings),
                 "losses": losses and _words(losses), "strategies": strategies and _words(strategies),
                 "seeds": seeds and [int(v) for v in _words(seeds)]}
        grid = SweepGrid(**{k: v for k, v in given.items() if v is not None})
        points = sweep_configs(name, grid, preset, rounds, data_dir, overrides)
    except (ValidationError, ValueError) as err:
        _fail(f"invalid sweep: {one_line(err) if isinstance(err, ValidationError) else err}", USER_ERROR_EXIT)
    console.print(f"sweep {name}: {len(points)} points: " + ", ".join(cfg.experiment for _, cfg in points))
    t0 = time.time()
    ensure_reaper()
    with stops_on_ctrl_c(), _failures_in_one_line(data_dir):
        console.print(sweep_flow(name, grid, preset, rounds, data_dir, overrides, concurrent))
    console.print(f"done in {time.time() - t0:.1f}s; plots in {data_dir / 'plots'}")


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
    from east_tasks.report.results import (
        best_on_validation,
        cost_report,
        paired_by_round,
        paired_by_round_markdown,
        round_results,
        sweep_results,
        sweep_summary,
        to_records,
        write_sweep_report,
    )

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


def _print_table(name: str, records: list[dict]) -> None:
    from east_tasks.report.results import fmt
    from east_tasks.report.results import tiers as tiers_of

    tiers = tiers_of(r["by_tier"] for r in records)
    sampled = [m for m in ("maj_acc", "pass_acc") if any(r[m] is not None for r in records)]  # none when k = 0
    pool = [m for m in ("pool_pass_at_n", "pool_balance", "label_accuracy") if any(r.get(m) is not None
                                                                                   for r in records)]
    table = Table(title=f"{name}: greedy test accuracy, overall and by tier (t1 easiest); validation greedy; "
                        "questions kept for training; the round's pool: pass@n, B-STaR balance score, pseudo-label "
                        "accuracy (label-free)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("round", justify="right", min_width=8)
    names = {"pool_pass_at_n": "pass@n", "pool_balance": "balance", "label_accuracy": "labels"}
    for col in ("test", *(f"t{t}" for t in tiers), *(f"{m[:-4]}@k" for m in sampled), "val", "kept",
                *(names[m] for m in pool)):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row("backbone" if r["round"] == 0 else str(r["round"]), f"{r['greedy_acc']:.3f}",
                      *(fmt(r["by_tier"].get(t, {}).get("greedy_acc")) for t in tiers),
                      *(fmt(r[m]) for m in sampled), fmt(r.get("val_greedy_acc")), str(r["n_kept"] or "-"),
                      *(fmt(r.get(m)) for m in pool))
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


@app.command()
def export(
    parquet: Annotated[Path, typer.Option(help="directory for one <table>.parquet per store table")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Every table of the store as Parquet (for pandas, Polars, Spark, DuckDB elsewhere)."""
    with _open_store(data_dir) as store:
        rows = store.export_parquet(parquet)
    for table, n in rows.items():
        typer.echo(f"{parquet / table}.parquet: {n} rows")


def main() -> None:
    app()



if __name__ == "__main__":
    main()
