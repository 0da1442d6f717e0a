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
from east_tasks.io import flatten, hash_dir
from east_tasks.paths import BACKBONE_DIR, resolve_stored_path
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
    if is_embedded_backbone(cfg.base_model):  # recorded by a checkout at another path, maybe: this one's
        cfg = cfg.model_copy(update={"base_model": str(BACKBONE_DIR)})
        path = str(BACKBONE_DIR) if last == 0 else path
    return ExperimentState(cfg, last, ModelRef(path=path, hash=model_hash, weight_keys=trained_on))


# More rounds continue an experiment; where it is stored, how the store is reached and where metrics go are moot,
# and so is the guard, which changes no result, only whether a round is accepted (relaxing it accepts a round).
_NOT_IDENTITY = {"rounds", "data_dir", "store", "tracking", "guard"}
# Fields that say where a model or data is: the same content elsewhere (a moved checkout, another worker's
# mount) is the same experiment.
_DATA_PLACES = {"data.path", "data.test_path"}


def is_embedded_backbone(path: str) -> bool:
    """Whether `path` is the committed backbone of some checkout of east (this one's, or one at another path, as
    an experiment recorded it): the backbone's identity is its name, not where the repository sits."""
    return Path(path).parts[-3:] == BACKBONE_DIR.parts[-3:]


def same_model(old: str, new: str, recorded_hash: str | None) -> bool:
    """Whether base model `new` is the recorded `old` one: the same name, both the embedded backbone, or a local
    directory whose content hash is the one round 0 recorded (or, before any round, `old`'s where it still is)."""
    if old == new or (is_embedded_backbone(old) and is_embedded_backbone(new)):
        return True
    if not Path(new).is_dir():  # a hub name (or nothing): only its name could match
        return False
    want = recorded_hash or (hash_dir(Path(old)) if Path(old).is_dir() else None)
    return want is not None and hash_dir(Path(new)) == want


def check_experiment(cfg: ExperimentConfig) -> None:
    """Refuses at once a configuration other than the one recorded for the experiment's name (claims nothing).
    Data at another place is left to the claim, which compares it by content once it is loaded."""
    with open_store(cfg) as store:
        recorded = store.recorded_config(cfg.experiment)
        origin = store.experiment_origin(cfg.experiment) if recorded is not None else (None, None)
    if recorded is not None:
        _refuse_another(cfg, recorded, origin)


def claim_experiment(cfg: ExperimentConfig, dataset_key: str | None = None) -> None:
    """One experiment name, one configuration: the name is claimed in the store, atomically, before a run's first
    model step, so that of two runs started at once with other configurations the later is refused, whenever it
    starts. Runs of one configuration share the name (and, through the step claims, its steps). A model or data
    that moved is compared by content (`dataset_key`: the loaded data's). Once the name is its, the config is
    written beside the experiment's results as YAML (`paths.experiment_config_path`), to rerun or continue it
    with `east run --config`."""
    mine = cfg.model_dump_json()
    with claim_step(cfg, f"experiment-{cfg.experiment}"), open_store(cfg) as store:
        recorded = store.atomically(lambda s: s.claim_experiment(cfg.experiment, mine))
        origin = store.experiment_origin(cfg.experiment)
    _refuse_another(cfg, recorded, origin, dataset_key, claiming=True)
    write_config_file(cfg)


def _refuse_another(cfg: ExperimentConfig, recorded: str, origin: tuple[str | None, str | None] = (None, None),
                    dataset_key: str | None = None, claiming: bool = False) -> None:
    """Raises unless `cfg` is the recorded configuration, places aside: `origin` is what round 0 recorded (the base
    model's hash, the data's dataset_key). Before the data is loaded (`claiming` False), data at another place
    alone is not refused yet: the claim compares its rows (`dataset_key`)."""
    old, new = json.loads(recorded), json.loads(cfg.model_dump_json())
    with suppress(ValidationError):  # read through today's model: fields added since compare as their defaults
        old = json.loads(ExperimentConfig.model_validate(old).model_dump_json())
    old, new = ({k: v for k, v in flatten(c).items() if k.split(".")[0] not in _NOT_IDENTITY} for c in (old, new))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    model_hash, recorded_data = origin
    if "base_model" in changed and same_model(str(old["base_model"]), str(new["base_model"]), model_hash):
        changed.remove("base_model")
    same_rows = dataset_key is not None and dataset_key == recorded_data
    if same_rows or (not claiming and set(changed) <= _DATA_PLACES):  # the claim compares the rows
        changed = [k for k in changed if k not in _DATA_PLACES]
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise UserError(f"experiment {cfg.experiment!r} already exists in {cfg.store_location} with another "
                        f"configuration ({diffs}); choose a new experiment name")
