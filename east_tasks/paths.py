"""Where things live by default: the committed backbone and the data directory (the floor every layer stands on)."""

from pathlib import Path

# Produced by `east bootstrap` with the default BootstrapConfig and committed, so the demo starts here.
BACKBONE_DIR = Path(__file__).parent / "models" / "backbone"
DEFAULT_DATA_DIR = Path("data")
STORE_FILE = "east.duckdb"  # the DuckDB store's name inside a data directory
CHECKPOINTS = "checkpoints"  # the data directory's checkpoint directory


def stored_checkpoint_path(ckpt_key: str) -> str:
    """How the store records a checkpoint's place: relative to the data directory, so the data directory can be
    moved, copied or mounted elsewhere and still find its checkpoints."""
    return f"{CHECKPOINTS}/{ckpt_key}"


def resolve_stored_path(data_dir: Path, stored: str) -> Path:
    """A path the store recorded, on this machine: relative ones are the data directory's."""
    path = Path(stored)
    return path if path.is_absolute() else Path(data_dir) / path


def experiment_config_path(data_dir: Path, experiment: str) -> Path:
    """Where a run writes its resolved config (YAML), beside its results: rerun it with `east run --config`."""
    return Path(data_dir) / "experiments" / experiment / "config.yaml"
