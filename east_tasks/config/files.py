"""Config files: an experiment (or a sweep) versioned as YAML, as TRL / axolotl / torchtune users keep theirs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from east_tasks.config.base import Section, new_names
from east_tasks.config.presets import load_config, merge_fields
from east_tasks.config.schema import ExperimentConfig, SweepGrid
from east_tasks.errors import UserError
from east_tasks.io import atomic_write, mask_url
from east_tasks.paths import experiment_config_path


def read_yaml(path: Path | str) -> dict:
    """The field: value pairs of a YAML file; a missing file or bad YAML is one line naming the file (and line)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path}: no such file") from None
    except OSError as err:
        raise UserError(f"config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).replace("\n", " ")
        raise UserError(f"config file {path}{where}: invalid YAML: {problem}") from None
    if data is None:  # empty, or only comments
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected `field: value` lines at the top level, found a "
                        f"{type(data).__name__}")
    return data


def load_config_file(path: Path | str, preset: str | None = None, **overrides) -> ExperimentConfig:
    """An experiment from a YAML file of (some of) ExperimentConfig's fields: the preset first (`preset`, else the
    file's `preset:`, else tiny), then the file, then `overrides` (the CLI's flags and --set). Unknown fields are
    refused like any invalid value (a ValidationError naming the dotted field)."""
    fields = new_names(read_yaml(path))  # so that the overrides' old names win over the file's new ones
    named = fields.pop("preset", None)  # load_config records the preset it applies
    preset = preset or named or "tiny"
    return load_config(preset, **merge_fields(fields, new_names({k: v for k, v in overrides.items()
                                                                 if v is not None})))


def config_yaml(cfg: ExperimentConfig) -> str:
    """Every field of `cfg` as YAML (defaults filled in, paths as strings, tuples as lists), in the models' order:
    fed back through `load_config_file` it gives the same config. A store URL is shown masked, as everywhere."""
    import yaml

    fields = cfg.model_dump(mode="json")
    if fields["store"]["url"]:
        fields["store"]["url"] = mask_url(fields["store"]["url"])  # a URL never holds a password (StoreConfig)
    return yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=120)


def write_config_file(cfg: ExperimentConfig) -> Path:
    """The run's resolved config, beside its results (`paths.experiment_config_path`), written atomically."""
    path = experiment_config_path(cfg.data_dir, cfg.experiment)
    text = (f"# {cfg.experiment}: the resolved config of its last run; rerun (or continue, raising rounds) with\n"
            f"#   east run --config {path}\n{config_yaml(cfg)}")
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


# The fields of a sweep file besides the ExperimentConfig fields every point starts from.
_SWEEP_KEYS = {"name", "preset", "rounds", "grid", "base"}


class SweepFile(Section):
    """A sweep as YAML (`east sweep --config`): its name, preset, rounds, grid, and the ExperimentConfig fields every
    point starts from, under `base:` or at the top level (`base:` wins); the point's own fields come last."""

    name: str = Field("sweep", description="the sweep's name; its experiments are named <name>-<point>")
    preset: str = Field("tiny", description="the preset every point starts from (east_tasks.config.PRESETS)")
    rounds: int | None = Field(1, ge=0, le=100, description="self-training rounds per point (None: the preset's)")
    grid: SweepGrid = Field(default_factory=SweepGrid, description="the settings swept; a list left out takes "
                            "SweepGrid's default")
    base: dict = Field({}, description="ExperimentConfig fields every point starts from (validated with each point)")

    @model_validator(mode="before")
    @classmethod
    def _base_at_top_level(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        # an empty section (its lines commented out) is YAML's null: the default; only `rounds: null` means something
        out = {k: v for k, v in data.items() if k in _SWEEP_KEYS and (v is not None or k == "rounds")}
        if top := {k: v for k, v in data.items() if k not in _SWEEP_KEYS}:
            base = out.get("base", {})
            out["base"] = merge_fields(top, base) if isinstance(base, dict) else base
        return out

    @field_validator("base")
    @classmethod
    def _not_the_sweeps_own(cls, base: dict) -> dict:
        if own := sorted(base.keys() & {"experiment", "preset", "rounds"}):
            raise ValueError(f"{', '.join(own)}: a sweep sets these itself (experiments are named <name>-<point>); "
                             "give the sweep's name, preset and rounds at the top level")
        return base


def load_sweep_file(path: Path | str | None = None, **overrides) -> SweepFile:
    """A sweep from its YAML file (if any), then `overrides` (the CLI's: name, preset, rounds, a partial grid, base)
    over it; None values are not given."""
    given = {k: v for k, v in overrides.items() if v is not None and v != {}}
    return SweepFile.model_validate(merge_fields(read_yaml(path) if path else {}, given))
