"""Engines: generation backends (vLLM, transformers), the weighted trainer, LoRA, torchrun and replica launchers,
and the reaper that stops an engine whose parent died. They know nothing of the store or of keys."""
