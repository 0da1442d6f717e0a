"""What the store knows about an experiment: its one configuration and the checkpoint of each round.

`claim_experiment` records one configuration per experiment name, so results never mix and a later run (the
`next-round` deployment, a schedule) can continue an experiment from its name alone.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from east_tasks.config import ExperimentConfig, StoreConfig, write_config_file
from east_tasks.errors import UserError
from east_tasks.io import flatten
from east_tasks.paths import resolve_stored_path
from east_tasks.steps.model import ModelRef
from east_tasks.store import claim_step, connect_existing, open_store


@dataclass(frozen=True)
class ExperimentState:
    config: ExperimentConfig  # as recorded, with `rounds` = the rounds done so far
    last_round: int  # 0 = only the base model has been evaluated
    model: ModelRef  # the checkpoint `last_round` produced, and the rounds' selections it was trained on


def round_checkpoint(data_dir: Path | str, experiment: str, round_: int | None = None) -> ExperimentState:
    """The experiment's state after `round_` (default: its latest round); a clear error if it is unknown."""
    with connect_existing(StoreConfig(), Path(data_dir)) as store:
        row = store.experiment_round(experiment, round_)
        known = store.experiments()
        trained_on = tuple(k for _, k in store.round_weight_keys(experiment, row[0] + 1) if k) if row else ()
    if row is None:
        what = f"experiment {experiment!r}" + (f" round {round_}" if round_ is not None else "")
        raise ValueError(f"no {what} in {store.location}; known experiments: {', '.join(known) or 'none'}")
    last, path, model_hash, config = row
    if last > 0:  # a checkpoint, recorded relative to the data dir; round 0 is the base model, maybe a hub name
        path = str(resolve_stored_path(Path(data_dir), path))
    if last > 0 and not Path(path).is_dir():
        raise ValueError(f"experiment {experiment!r} round {last}: checkpoint {path} is missing")
    cfg = ExperimentConfig.model_validate_json(config).model_copy(update={"rounds": last, "data_dir": Path(data_dir)})
    return ExperimentState(cfg, last, ModelRef(path=path, hash=model_hash, weight_keys=trained_on))


# More rounds continue an experiment; where it is stored, how the store is reached and where metrics go are moot.
_NOT_IDENTITY = {"rounds", "data_dir", "store", "tracking"}


def check_experiment(cfg: ExperimentConfig) -> None:
    """Refuses at once a configuration other than the one recorded for the experiment's name (claims nothing)."""
    with open_store(cfg) as store:
        recorded = store.recorded_config(cfg.experiment)
    if recorded is not None:
        _refuse_another(cfg, recorded)


def claim_experiment(cfg: ExperimentConfig) -> None:
    """One experiment name, one configuration: the name is claimed in the store, atomically, before a run's first
    model step, so that of two runs started at once with other configurations the later is refused, whenever it
    starts. Runs of one configuration share the name (and, through the step claims, its steps). Once the name is
    its, the config is written beside the experiment's results as YAML (`paths.experiment_config_path`), to rerun
    or continue it with `east run --config`."""
    mine = cfg.model_dump_json()
    with claim_step(cfg, f"experiment-{cfg.experiment}"), open_store(cfg) as store:
        recorded = store.atomically(lambda s: s.claim_experiment(cfg.experiment, mine))
    _refuse_another(cfg, recorded)
    write_config_file(cfg)


def _refuse_another(cfg: ExperimentConfig, recorded: str) -> None:
    old, new = json.loads(recorded), json.loads(cfg.model_dump_json())
    with suppress(ValidationError):  # read through today's model: fields added since compare as their defaults
        old = json.loads(ExperimentConfig.model_validate(old).model_dump_json())
    old, new = ({k: v for k, v in flatten(c).items() if k.split(".")[0] not in _NOT_IDENTITY} for c in (old, new))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise UserError(f"experiment {cfg.experiment!r} already exists in {cfg.store_location} with another "
                        f"configuration ({diffs}); choose a new experiment name")
