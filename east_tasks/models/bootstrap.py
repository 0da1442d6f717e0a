"""Teach the tiny model the embedded task from a small, fixed labelled set: the "backbone" EAST starts from.

A plain nanoGPT-style loop over `labelled_set`: mostly easy problems and few of the longer chains, so the
backbone solves the harder tiers only sometimes and self-training on the unlabelled pool has something to
learn (docs/architecture.md, "The embedded testbed"). Learning arrives as a sudden drop of the loss a few
hundred steps in, so the learning rate must still be high then.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from east_tasks.data.arith import labelled_set
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines.training import IGNORE, encode_example, pad
from east_tasks.io import atomic_dir, hash_dir
from east_tasks.models.tiny import build_tiny_model, build_tokenizer, save_model_dir
from east_tasks.progress import Progress


@dataclass(frozen=True)
class BootstrapConfig:
    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    # Labelled problems per tier (disjoint from pool, validation and test by construction): mostly easy.
    labelled: tuple[int, ...] = (2000, 2000, 600, 300, 150, 50)
    data_seed: int = 0
    threads: int = 2


def lr_at(step: int, cfg: BootstrapConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def bootstrap_backbone(out_dir: Path, cfg: BootstrapConfig = BootstrapConfig(), progress: bool = True) -> dict:
    """Builds tokenizer + model, trains, and writes `out_dir` atomically. Returns the manifest."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    labelled = labelled_set(cfg.labelled, cfg.data_seed)
    texts = [(format_prompt(p.question), format_completion(p.solution)) for p in labelled]
    tokenizer = build_tokenizer(prompt + completion for prompt, completion in texts)
    model = build_tiny_model(tokenizer)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98),
    )
    encoded = [encode_example(tokenizer, prompt, completion) for prompt, completion in texts]
    rng = random.Random(cfg.seed)
    model.train()
    start, losses = time.time(), []
    meter = Progress("bootstrap", cfg.steps, "step", enabled=progress)
    for step in range(cfg.steps):
        batch = pad(rng.sample(encoded, cfg.batch_size), tokenizer.pad_token_id)
        ids, labels = batch["input_ids"], batch["labels"]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float()[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        meter.update(1, loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    meter.close()
    model.eval()
    with atomic_dir(Path(out_dir)) as tmp:
        save_model_dir(model, tokenizer, tmp)
        manifest = {
            "config": asdict(cfg),
            "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "first_loss": losses[0],
            "train_seconds": round(time.time() - start, 1),
            "model_hash": hash_dir(tmp),
        }
        (tmp / "bootstrap_manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
