"""east's Python API, for notebooks and scripts (docs/python-api.md): build a config, run it, read its results,
hand a round off. The same steps and store as the `east` CLI; failures raise `east_tasks.errors.UserError` (bad
input) or `EnvironmentFault` (the machine) instead of exiting.

    import east
    cfg = east.load_config("tiny", experiment="demo", weighting={"a": 1.0})
    results = east.run(cfg)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from east_tasks.config import ExperimentConfig, StoreConfig, load_config, load_config_file
from east_tasks.errors import EnvironmentFault, UserError
from east_tasks.paths import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    import datasets

__all__ = ["EnvironmentFault", "ExperimentConfig", "UserError", "export_data", "export_model", "load_config",
           "load_config_file", "results", "run"]


def run(cfg: ExperimentConfig) -> pd.DataFrame:
    """Runs (or continues, or finds cached) the experiment `cfg` describes; its results, one row per round."""
    from east_tasks.engines.reaper import ensure_reaper
    from flows.self_train import self_train

    ensure_reaper()  # a kernel that dies leaves no vLLM engine or Prefect server behind
    self_train(cfg)
    return results(cfg)


def _where(experiment: str | ExperimentConfig, data_dir: Path | str | None) -> tuple[str, Path, StoreConfig]:
    """A config names its experiment, data dir and store; a name takes `data_dir` (and $EAST_STORE_URL)."""
    if isinstance(experiment, ExperimentConfig):
        return experiment.experiment, Path(data_dir or experiment.data_dir), experiment.store
    return experiment, Path(data_dir or DEFAULT_DATA_DIR), StoreConfig()


def results(experiment: str | ExperimentConfig, data_dir: Path | str | None = None) -> pd.DataFrame:
    """One row per recorded round (0 = the base model): test accuracy (greedy; with eval.n > 0, pass@1, pass@k and
    maj@k), validation accuracy, accuracy by tier, kept questions, the pool's monitor, the round's model."""
    from east_tasks.report.frames import round_results
    from east_tasks.store import connect_existing

    name, data_dir, where = _where(experiment, data_dir)
    with connect_existing(where, data_dir) as store:
        if name not in (known := store.experiments()):
            raise UserError(f"no experiment {name!r} in {store.location}; known: {', '.join(known) or 'none'}")
        return round_results(store, name)


def export_model(experiment: str | ExperimentConfig, out_dir: Path | str, round: int | None = None, *,
                 data_dir: Path | str | None = None, overwrite: bool = False,
                 push_to_hub: str | None = None) -> Path:
    """Round `round` (default: the last; 0 = the base model) as a Hugging Face model directory with a model card
    (`east export model`); with `push_to_hub="user/name"`, uploaded there too."""
    from east_tasks.report import export
    from east_tasks.store import connect_existing

    name, data_dir, where = _where(experiment, data_dir)
    with connect_existing(where, data_dir) as store:
        ref = export.find_round(store, name, round)
        out = export.export_model(store, data_dir, ref, Path(out_dir), overwrite)
    if push_to_hub:
        export.push_to_hub(out, push_to_hub)
    return out


def export_data(experiment: str | ExperimentConfig, out_dir: Path | str, round: int | None = None, *,
                accumulated: bool = False, data_dir: Path | str | None = None,
                overwrite: bool = False) -> datasets.Dataset:
    """Round `round`'s training rows (default: the last round's; `accumulated`: every row it trained on) as a
    `datasets` dataset and Parquet in TRL's columns (`east export data`); the dataset, read back."""
    from east_tasks.report import export
    from east_tasks.store import connect_existing

    name, data_dir, where = _where(experiment, data_dir)
    with connect_existing(where, data_dir) as store:
        ref = export.find_round(store, name, round)
        return export.export_data(store, ref, Path(out_dir), accumulated, overwrite)
