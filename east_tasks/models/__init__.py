"""The tiny model, its tokenizer, and the bootstrap that turns it into the backbone."""

from pathlib import Path

# Produced by `east bootstrap` with the default BootstrapConfig and committed, so the demo starts here.
BACKBONE_DIR = Path(__file__).parent / "backbone"
