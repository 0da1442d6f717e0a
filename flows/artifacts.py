"""What an experiment shows in the Prefect UI while it runs: a table per round and a progress bar."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from east_tasks.config import ExperimentConfig
from east_tasks.report.frames import monitor_rounds, round_results
from east_tasks.report.markdown import monitor_markdown, probes_markdown, round_markdown
from east_tasks.report.plots import plot_monitor, plot_rounds
from east_tasks.report.statistics import selection_summary
from east_tasks.store import open_store


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def entropy_plot_path(cfg: ExperimentConfig, round_: int) -> Path:
    return cfg.data_dir / "plots" / f"{cfg.experiment}-round-{round_}-entropy.png"


def publish_round(cfg: ExperimentConfig, round_: int, weight_key: str) -> str:
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
    return markdown


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
