"""Weighted SFT on the real backbone: weights change what is learned, checkpoints are atomic."""

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from east_tasks.config import TrainConfig
from east_tasks.core.losses import per_example_sft_loss
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines.training import (
    LengthGroupedBatches,
    WeightedDataset,
    collate,
    train_weighted,
    weighted_trainer,
)
from east_tasks.io import hash_dir
from east_tasks.paths import BACKBONE_DIR
from east_tasks.steps import keys


def _losses(model_dir, examples: pd.DataFrame) -> torch.Tensor:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    batch = collate(tok.pad_token_id)(list(WeightedDataset(examples, tok, 256)))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return per_example_sft_loss(logits, batch["labels"])


def test_heavier_examples_are_learned_more(tmp_path) -> None:
    problems = make_split("pool", 8, seed=99, tiers=(3,))  # a tier the backbone solves about 3 times in 4
    # Wrong-but-well-formed solutions the backbone finds unlikely, so learning them is visible.
    examples = pd.DataFrame({
        "prompt": [format_prompt(p.question) for p in problems],
        "response": [format_completion(p.solution.replace(f"#### {p.answer}", f"#### {int(p.answer) + 1}"))
                     for p in problems],
        "weight": [1.9] * 4 + [0.1] * 4,
    })
    before = _losses(BACKBONE_DIR, examples)
    cfg = TrainConfig(lr=3e-4, epochs=3, batch_size=8, warmup_ratio=0.0)
    summary = train_weighted(str(BACKBONE_DIR), examples, cfg, tmp_path / "ckpt")
    after = _losses(tmp_path / "ckpt", examples)
    drop = (before - after) / before
    assert summary["steps"] == 3 and summary["model_hash"] == hash_dir(tmp_path / "ckpt")
    assert drop[:4].mean() > 2 * drop[4:].mean() > 0  # heavy examples' loss falls at least twice as much
    assert not list(tmp_path.glob(".*tmp-*"))  # the temp dir was renamed into place, nothing left behind


def test_group_by_length_batches_rows_of_similar_length(tmp_path) -> None:
    tok = AutoTokenizer.from_pretrained(BACKBONE_DIR)
    model = AutoModelForCausalLM.from_pretrained(BACKBONE_DIR)
    # The backbone splits digits one by one: prompt "7" is <s> 7, a response of k digits is k tokens and </s>.
    ks = [1, 9, 2, 10, 3, 11, 4, 12]
    dataset = WeightedDataset(pd.DataFrame({"prompt": "7", "response": ["5" * k for k in ks], "weight": 1.0}), tok,
                              256)
    assert dataset.lengths() == [4, 12, 5, 13, 6, 14, 7, 15] and dataset.num_tokens() == 76

    def batches(cfg: TrainConfig) -> list[list[int]]:
        trainer = weighted_trainer(model, tok, dataset, cfg, str(tmp_path))
        return [b["attention_mask"].sum(1).tolist() for b in trainer.get_train_dataloader()]

    # one window (8 rows are fewer than 50 batches), sorted longest first and cut into batches, whose order is
    # shuffled: widths 15, 13, 7, 5 pad 4 of 80 positions (in the given order, 12 + 13 + 14 + 15: 32 of 108)
    grouped = batches(TrainConfig(batch_size=2, group_by_length=True))
    assert sorted(grouped, reverse=True) == [[15, 14], [13, 12], [7, 6], [5, 4]] and grouped != sorted(grouped)
    plain = batches(TrainConfig(batch_size=2))
    assert sorted(n for b in plain for n in b) == sorted(dataset.lengths()) and sorted(plain) != sorted(grouped)
    # a partial batch stays last, so the DataLoader's batches are the sampler's: 7 rows, batches of 2
    order = list(LengthGroupedBatches([4, 12, 5, 13, 6, 14, 7], 2, seed=0))
    assert sorted(order) == list(range(7)) and order[-1] == 0  # the shortest row, alone, last
    # off by default, and then the checkpoint key reads the train fields as every stored key did
    assert "group_by_length" not in keys.train_fields(TrainConfig())
    assert keys.train_fields(TrainConfig(group_by_length=True))["group_by_length"] is True
