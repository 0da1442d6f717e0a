"""What an experiment shows in the Prefect UI while it runs: each published artifact is a task of its own (the
rows the data left out, auto-balance's probes, a round's selection, a round's table, the experiment's results),
and a progress bar."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from east_tasks.config import ExperimentConfig
from east_tasks.report.frames import monitor_rounds, round_results, to_records
from east_tasks.report.markdown import (
    embedded_plots,
    monitor_markdown,
    probes_markdown,
    round_markdown,
    selection_markdown,
    to_markdown,
)
from east_tasks.report.plots import plot_entropy_histogram, plot_monitor, plot_rounds
from east_tasks.report.statistics import selection_summary
from east_tasks.store import open_store


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def entropy_plot_path(cfg: ExperimentConfig, round_: int) -> Path:
    return cfg.data_dir / "plots" / f"{cfg.experiment}-round-{round_}-entropy.png"


@task(name="publish-dropped-rows", cache_policy=NO_CACHE)
def publish_dropped_rows(cfg: ExperimentConfig, dataset_key: str) -> None:
    """The rows data.on_invalid = "skip" left out, where the run is seen: where each was and why."""
    with open_store(cfg) as store:
        dropped = store.data_findings(dataset_key)
    create_markdown_artifact(
        key=f"{artifact_key(cfg.experiment)}-dropped-rows",
        markdown="\n".join([f"### {cfg.experiment}: {len(dropped)} data rows left out (data.on_invalid = skip)",
                             "", "| where | problem | detail |", "|---|---|---|",
                             *(f"| {r.location} | {r.kind} | {r.detail} |" for r in dropped.itertuples())]),
        description="Rows of the data that failed validation and were dropped")


@task(name="publish-probes", cache_policy=NO_CACHE)
def publish_probes(cfg: ExperimentConfig, round_: int) -> None:
    """Auto-balance's candidates for the round's sampling, and the choice."""
    with open_store(cfg) as store:
        rows = store.balance_probes(cfg.experiment, round_)
    name = f"{cfg.experiment}-round-{round_}"
    create_markdown_artifact(key=f"{artifact_key(name)}-auto-balance", markdown=probes_markdown(rows, name),
                             description=f"The sampling candidates probed before round {round_}, and the choice")


@task(name="publish-selection", cache_policy=NO_CACHE)
def publish_selection(cfg: ExperimentConfig, round_: int, weight_key: str) -> None:
    """Which pool questions the round trains on, with their weights and the entropy histogram, before it trains."""
    with open_store(cfg) as store:
        stats = store.question_stats(weight_key)
        examples = store.example_weights(weight_key)
    name = f"{cfg.experiment}-round-{round_}"
    png = plot_entropy_histogram(stats, name, entropy_plot_path(cfg, round_))
    create_markdown_artifact(key=f"{artifact_key(name)}-selection",
                             markdown=selection_markdown(selection_summary(stats, examples), name, png),
                             description=f"Which pool questions round {round_} trained on, and their weights")


@task(name="publish-round", cache_policy=NO_CACHE)
def publish_round(cfg: ExperimentConfig, round_: int, weight_key: str) -> None:
    """A Markdown table for one finished round (accuracy, kept questions, entropy), its exploration / exploitation
    monitor and auto-balance's probes, with the PNG plots."""
    with open_store(cfg) as store:
        df = round_results(store, cfg.experiment)
        stats = store.question_stats(weight_key)
        examples = store.example_weights(weight_key)
        monitor = monitor_rounds(store, [cfg.experiment])
        probes = store.balance_probes(cfg.experiment, round_)
    plots_dir = cfg.data_dir / "plots"
    rounds_png = plot_rounds(df, cfg.experiment, plots_dir / f"{cfg.experiment}-rounds.png")
    monitor_png = plot_monitor(monitor, f"{cfg.experiment}: exploration and exploitation",
                               plots_dir / f"{cfg.experiment}-exploration-exploitation.png")
    plots = {"entropy histogram": entropy_plot_path(cfg, round_), "accuracy per round": rounds_png,
             "exploration and exploitation per round": monitor_png}
    markdown = round_markdown(df, cfg.experiment, round_, selection_summary(stats, examples), plots)
    name = f"{cfg.experiment} round {round_}"
    markdown += "\n\n" + monitor_markdown(monitor[monitor["round"] == round_], name)
    if len(probes):  # auto-balance: the candidates the round's sampling was chosen from
        markdown += "\n\n" + probes_markdown(probes, name)
    create_markdown_artifact(key=artifact_key(f"{cfg.experiment}-round-{round_}"), markdown=markdown,
                             description=f"Round {round_} of {cfg.experiment}: accuracy, kept questions, entropy")


@task(name="publish-results", cache_policy=NO_CACHE)
def publish_results(cfg: ExperimentConfig) -> None:
    """The experiment's accuracy per round, as a table and a summary with its plot."""
    with open_store(cfg) as store:
        df = round_results(store, cfg.experiment)
    key = artifact_key(cfg.experiment)
    table = [{c: v for c, v in r.items() if c not in ("by_tier", "pass_at_k", "maj_at_k")}
             | {f"pass@{k}": v for k, v in r["pass_at_k"].items()} | {f"maj@{k}": v for k, v in r["maj_at_k"].items()}
             for r in to_records(df)]
    create_table_artifact(key=f"{key}-accuracy", table=table,
                          description=f"Test accuracy per round of {cfg.experiment}")
    png = plot_rounds(df, cfg.experiment, cfg.data_dir / "plots" / f"{cfg.experiment}-rounds.png")
    create_markdown_artifact(key=f"{key}-summary",
                             markdown=to_markdown(df, cfg.experiment) + "\n\n" + embedded_plots({"accuracy": png}))


class RoundProgress:
    """The experiment's progress artifact: rounds done out of the rounds this run was asked to reach."""

    def __init__(self, experiment: str, done: int, target: int):
        self.target = max(target, 1)
        self.id: UUID = create_progress_artifact(
            progress=self._percent(done), key=f"{artifact_key(experiment)}-progress",
            description=f"{experiment}: rounds done out of {target}")

    def _percent(self, done: int) -> float:
        return round(100.0 * min(done, self.target) / self.target, 1)

    def update(self, done: int) -> None:
        update_progress_artifact(self.id, self._percent(done))
