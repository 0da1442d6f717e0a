"""The tiny model, its tokenizer, and the bootstrap that turns it into the backbone (`paths.BACKBONE_DIR`)."""
