"""Optional LoRA (peft): adapters are trained instead of all weights and merged back before saving, so every
checkpoint is a plain transformers model that vLLM loads without adapter support."""

from __future__ import annotations

import torch

from east_tasks.config import LoraConfig


def add_lora(model: torch.nn.Module, cfg: LoraConfig | None) -> torch.nn.Module:
    """The model with trainable adapters on `cfg.target_modules` (the base weights frozen); as is if no cfg."""
    if cfg is None:
        return model
    import peft

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in cfg.target_modules if m in present]
    if not targets:
        raise ValueError(f"train.lora.target_modules {list(cfg.target_modules)}: none is a module of this model")
    lora = peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                           task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora)


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Adapters folded into the base weights (a no-op for a model without adapters)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
