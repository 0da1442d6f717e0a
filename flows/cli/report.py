"""`east report`: the results the store holds, per experiment, per sweep or per compute-hour."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from east_tasks.paths import DEFAULT_DATA_DIR
from flows.cli.common import DataDir, console, fail, open_store


def report(
    experiment: Annotated[str | None, typer.Option(help="default: every experiment in the store")] = None,
    sweep: Annotated[str | None, typer.Option(help="a sweep's table and plots instead (written beside the store)")]
    = None,
    choose: Annotated[str | None, typer.Option(help="with --sweep: 'validation' prints the setting validation "
                                               "picks, its test accuracy and its paired difference to vanilla")]
    = None,
    versus: Annotated[str | None, typer.Option(help="with --sweep: another sweep to subtract, round by round, "
                                               "paired by setting and seed")] = None,
    cost: Annotated[bool, typer.Option("--cost", help="accuracy gained over the backbone per compute-hour, per "
                                       "experiment (with --sweep: per setting), and its plot")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Per-round test accuracy, read from the store; with --sweep, the sweep's Markdown table and PNG plots."""
    from east_tasks.report.frames import rejected_records, round_results, sweep_results, to_records
    from east_tasks.report.markdown import chosen_line, paired_by_round_markdown
    from east_tasks.report.pages import cost_report, write_sweep_report
    from east_tasks.report.statistics import (
        best_on_validation,
        choose_on_validation,
        paired_by_round,
        paired_differences,
        sweep_summary,
    )
    from east_tasks.report.tables import print_results

    if cost:
        with open_store(data_dir) as store:
            if sweep and sweep not in store.sweeps():
                console.print(f"[red]no sweep {sweep!r}[/red]; known: {', '.join(store.sweeps()) or 'none'}")
                raise typer.Exit(1)
            markdown, summary, png = cost_report(store, data_dir / "plots", sweep=sweep,
                                                 experiments=[experiment] if experiment else None)
        print(summary.to_json(orient="records") if as_json else f"{markdown}\n\nPlot: {png}")
        return
    if sweep:
        with open_store(data_dir) as store:
            for name in filter(None, (sweep, versus)):
                if name not in store.sweeps():
                    console.print(f"[red]no sweep {name!r}[/red]; known: {', '.join(store.sweeps()) or 'none'}")
                    raise typer.Exit(1)
            if versus:
                diffs = paired_by_round(sweep_results(store, sweep)[0], sweep_results(store, versus)[0])
                print(diffs.to_json(orient="records") if as_json else paired_by_round_markdown(diffs, sweep, versus))
                return
            if choose:
                if choose != "validation":
                    fail(f"--choose {choose!r}: only 'validation' (test is reported, never chosen on)", 2)
                results = sweep_results(store, sweep)[0]
                chosen = choose_on_validation(sweep_summary(results), paired_differences(results))
                print(json.dumps(chosen, indent=2, default=str) if as_json else chosen_line(chosen))
                return
            if as_json:
                summary = sweep_summary(sweep_results(store, sweep)[0])
                print(json.dumps({"settings": summary.to_dict(orient="records"),
                                  "best_on_validation": best_on_validation(summary)}, indent=2, default=str))
                return
            table, plots = write_sweep_report(store, sweep, data_dir / "plots")
        print(f"{table}\n\nPlots: {', '.join(str(p) for p in plots)}")
        return
    with open_store(data_dir) as store:
        known = store.experiments()
        if experiment and experiment not in known:
            listed = ", ".join(known) or "none"
            console.print(f"[red]no experiment {experiment!r} in {store.location}[/red]; known: {listed}")
            raise typer.Exit(1)
        names = [experiment] if experiment else known
        out = {name: to_records(round_results(store, name)) + rejected_records(store, name) for name in names}
        where = f"{store.backend} store: {store.location}"  # a lake's URL without its password
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    console.print(where)
    for name, records in out.items():
        print_results(console, name, records)
        for rejected in filter(None, (r.get("rejected") for r in records)):
            console.print(rejected, markup=False, highlight=False, soft_wrap=True)
