"""Weighted SFT: each example's loss (mean over its response tokens) times its weight, then the batch mean.

The authors' code multiplies weights into a loss already averaged over the batch, which blurs each
example's weight into the batch mean; here the weight meets the loss per example, before reduction.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, Trainer, TrainingArguments

from east_tasks.config import TrainConfig
from east_tasks.io import atomic_dir, hash_dir
from east_tasks.lora import add_lora, merge_lora

IGNORE = -100


def per_example_sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's unmasked (response) tokens: shape [batch]."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    mask = labels.ne(IGNORE)
    return (token_loss * mask).sum(1) / mask.sum(1).clamp(min=1)


def weighted_sft_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weights are normalised to mean 1 over the dataset, so a plain batch mean keeps their meaning."""
    return (weights.float() * per_example_sft_loss(logits, labels)).mean()


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, weight: float = 1.0,
                   max_len: int = 256) -> dict:
    """Prompt + response + EOS, labels masked to IGNORE on the prompt: the loss is on the response only."""
    p_ids = tokenizer(prompt).input_ids
    r_ids = tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return {"input_ids": (p_ids + r_ids)[:max_len], "labels": ([IGNORE] * len(p_ids) + r_ids)[:max_len],
            "weight": float(weight)}


class WeightedSFTDataset(Dataset):
    def __init__(self, examples: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_len: int):
        self.items = [encode_example(tokenizer, ex.prompt, ex.response, ex.weight, max_len)
                      for ex in examples.itertuples(index=False)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def collate(pad_id: int) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """Right-pads a list of encoded examples into input_ids / attention_mask / labels / weights tensors."""

    def _collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        weights = torch.tensor([b["weight"] for b in batch], dtype=torch.float32)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "weights": weights}

    return _collate


class WeightedSFTTrainer(Trainer):
    """`transformers.Trainer` whose loss is `weighted_sft_loss`; everything else is stock."""

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor | tuple:
        weights = inputs.pop("weights")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_sft_loss(outputs.logits, labels, weights)
        return (loss, outputs) if return_outputs else loss


def train_weighted_sft(base_model: str, examples: pd.DataFrame, cfg: TrainConfig, out_dir: Path,
                       max_len: int = 256, trust_remote_code: bool = False) -> dict:
    """Fine-tunes `base_model` on weighted examples and writes `out_dir` atomically; returns a summary."""
    tokenizer = AutoTokenizer.from_pretrained(base_model, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code)
    model = add_lora(model, cfg.lora)
    dataset = WeightedSFTDataset(examples, tokenizer, max_len)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            learning_rate=cfg.lr,
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay,
            warmup_steps=math.ceil(cfg.warmup_ratio * cfg.epochs * math.ceil(len(dataset) / cfg.batch_size)),
            lr_scheduler_type="cosine",
            max_grad_norm=cfg.max_grad_norm,
            bf16=cfg.bf16,  # on CPU this is autocast over fp32 weights
            use_cpu=not torch.cuda.is_available(),
            seed=cfg.seed,
            data_seed=cfg.seed,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=dataset,
                                     data_collator=collate(tokenizer.pad_token_id))
        result = trainer.train()
        merge_lora(model).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        model_hash = hash_dir(tmp)
    return {"train_loss": float(result.training_loss), "steps": int(result.global_step), "model_hash": model_hash,
            "n_examples": len(dataset)}
