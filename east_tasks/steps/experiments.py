"""What the store knows about an experiment: its recorded configuration and the checkpoint of each round.

`preflight` records one configuration per experiment name, so a later run (the `next-round` deployment, a
schedule) can continue an experiment from its name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from east_tasks.config import ExperimentConfig, StoreConfig
from east_tasks.paths import STORE_FILE
from east_tasks.steps.model import ModelRef
from east_tasks.store import connect


@dataclass(frozen=True)
class ExperimentState:
    config: ExperimentConfig  # as recorded, with `rounds` = the rounds done so far
    last_round: int  # 0 = only the base model has been evaluated
    model: ModelRef  # the checkpoint `last_round` produced


def round_checkpoint(data_dir: Path | str, experiment: str, round_: int | None = None) -> ExperimentState:
    """The experiment's state after `round_` (default: its latest round); a clear error if it is unknown."""
    where = StoreConfig()
    store_path = Path(data_dir) / STORE_FILE
    if where.url is None and not store_path.exists():
        raise ValueError(f"no store at {store_path}: run the experiment first (east run / the self-train deployment)")
    with connect(where, Path(data_dir)) as store:
        row = store.experiment_round(experiment, round_)
        known = store.experiments()
    if row is None:
        what = f"experiment {experiment!r}" + (f" round {round_}" if round_ is not None else "")
        raise ValueError(f"no {what} in {store.location}; known experiments: {', '.join(known) or 'none'}")
    last, path, model_hash, config = row
    if last > 0 and not Path(path).is_dir():  # round 0 is the base model, maybe a hub name
        raise ValueError(f"experiment {experiment!r} round {last}: checkpoint {path} is missing")
    cfg = ExperimentConfig.model_validate_json(config).model_copy(update={"rounds": last, "data_dir": Path(data_dir)})
    return ExperimentState(cfg, last, ModelRef(path=path, hash=model_hash))
