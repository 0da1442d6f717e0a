"""A study's page: a sweep's tables and plots written beside each other, and the cost table with its plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from east_tasks.io import atomic_write
from east_tasks.report.frames import pool_entropy_by_round, round_costs, sweep_monitor, sweep_probes, sweep_results
from east_tasks.report.markdown import (
    cost_markdown,
    entropy_markdown,
    monitor_sweep_markdown,
    paired_markdown,
    probes_sweep_markdown,
    rounds_markdown,
    sweep_markdown,
)
from east_tasks.report.plots import (
    plot_accuracy_vs_a,
    plot_accuracy_vs_compute,
    plot_accuracy_vs_round,
    plot_entropy_vs_error,
    plot_monitor,
    plot_paired_differences,
    plot_tiers_vs_round,
)
from east_tasks.report.statistics import (
    best_on_validation,
    cost_summary,
    paired_differences,
    setting_name,
    sweep_summary,
)
from east_tasks.store import Store


def write_sweep_report(store: Store, sweep: str, out_dir: Path) -> tuple[str, list[Path]]:
    """The sweep's tables and PNG plots, written under `out_dir` (the page shows the plots beside it by name);
    returns the tables' Markdown and the plots, for the caller to show them its own way."""
    df, unfinished = sweep_results(store, sweep)
    summary = sweep_summary(df)
    first_pool = df[df["round"] == 1].gen_key.dropna()
    start = df[df["round"] == 0].greedy_acc
    plots = [plot_accuracy_vs_a(summary, f"{sweep}: accuracy vs a", out_dir / f"{sweep}-accuracy-vs-a.png",
                                start.mean() if len(start) else None),
             plot_accuracy_vs_round(df, f"{sweep}: accuracy per round", out_dir / f"{sweep}-accuracy-vs-round.png"),
             plot_tiers_vs_round(df, f"{sweep}: accuracy per round by tier", out_dir / f"{sweep}-tiers-vs-round.png")]
    diffs = paired_differences(df)
    if len(diffs):
        plots.append(plot_paired_differences(diffs, f"{sweep}: paired differences",
                                             out_dir / f"{sweep}-paired-differences.png"))
    if len(first_pool):
        stats = store.first_pool_stats(first_pool.iloc[0])  # drawn in one order
        plots.append(plot_entropy_vs_error(stats, f"{sweep}: round-1 pool questions",
                                           out_dir / f"{sweep}-entropy-vs-error.png"))
    table = sweep_markdown(summary, sweep, unfinished)
    if chosen := best_on_validation(summary):
        table += (f"\n\nBest weighted setting on validation: **{setting_name(pd.Series(chosen))}** "
                  f"(validation greedy {chosen['val_greedy_acc']:.3f}); test is not used to choose.")
    if len(diffs):
        table += "\n\n" + paired_markdown(diffs, sweep)
    table += "\n\n" + rounds_markdown(df, sweep)
    if len(entropy := pool_entropy_by_round(store, df)):
        table += "\n\n" + entropy_markdown(entropy, sweep)
    if len(monitor := sweep_monitor(store, df)):
        table += "\n\n" + monitor_sweep_markdown(monitor, sweep)
        plots.append(plot_monitor(monitor, f"{sweep}: exploration and exploitation",
                                  out_dir / f"{sweep}-exploration-exploitation.png", label="setting"))
    if len(probes := sweep_probes(store, df)):
        table += "\n\n" + probes_sweep_markdown(probes, sweep)
    if round_costs(store, list(df.experiment.unique())).costed.any():
        costs, _, png = cost_report(store, out_dir, sweep=sweep)
        table += "\n\n" + costs
        plots.append(png)
    page = "\n".join([table, "", *[f"![{p.stem}]({p.name})" for p in plots]])
    atomic_write(out_dir / f"{sweep}.md", lambda tmp: Path(tmp).write_text(page + "\n"))
    return table, plots


def cost_report(store: Store, out_dir: Path, *, sweep: str | None = None,
                experiments: list[str] | None = None) -> tuple[str, pd.DataFrame, Path]:
    """The cost table (per sweep setting, mean over seeds; or per experiment) and its accuracy-vs-compute plot."""
    if sweep:
        runs = store.sweep_runs(sweep)
        labels = {r.experiment: setting_name(r) for r in runs.itertuples(index=False)}
    else:
        labels = {e: e for e in (experiments or store.experiments())}
    costs = round_costs(store, list(labels))
    settings = pd.DataFrame({"experiment": list(labels), "setting": list(labels.values())}) if sweep else None
    summary = cost_summary(costs, settings)
    title = sweep or ", ".join(labels)
    png = plot_accuracy_vs_compute(costs, labels, f"{title}: accuracy vs compute",
                                   out_dir / f"{sweep or 'experiments'}-accuracy-vs-compute.png")
    return cost_markdown(summary, title), summary, png
