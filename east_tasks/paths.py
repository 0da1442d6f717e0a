"""Where things live by default: the committed backbone and the data directory (the floor every layer stands on)."""

from pathlib import Path

# Produced by `east bootstrap` with the default BootstrapConfig and committed, so the demo starts here.
BACKBONE_DIR = Path(__file__).parent / "models" / "backbone"
DEFAULT_DATA_DIR = Path("data")
STORE_FILE = "east.duckdb"  # the DuckDB store's name inside a data directory
