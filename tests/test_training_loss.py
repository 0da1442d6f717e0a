import math

import pandas as pd
import pytest
import torch

from east_tasks.core.losses import IGNORE, per_example_sft_loss, weighted_sft_loss
from east_tasks.engines.training import WeightedDataset


def _logits_for(token_logits: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(token_logits, dtype=torch.float32)


# Vocab 2, sequence 3. Position t's logits predict label t+1.
# Example 0: one response token (label 0) predicted with logits [2, 0] -> CE = log(1 + e^-2).
# Example 1: two response tokens (labels 1, 0) with logits [2, 0] and [0, 0] -> CE = log(1 + e^2), log 2.
LOGITS = _logits_for([[[0, 0], [2, 0], [0, 0]], [[2, 0], [0, 0], [0, 0]]])
LABELS = torch.tensor([[IGNORE, IGNORE, 0], [IGNORE, 1, 0]])
L0 = math.log(1 + math.exp(-2))
L1 = (math.log(1 + math.exp(2)) + math.log(2)) / 2


def test_per_example_loss_is_mean_over_response_tokens() -> None:
    assert per_example_sft_loss(LOGITS, LABELS).tolist() == pytest.approx([L0, L1], rel=1e-6)


def test_weight_multiplies_each_example_before_the_batch_mean() -> None:
    w = torch.tensor([1.5, 0.5])
    assert weighted_sft_loss(LOGITS, LABELS, w).item() == pytest.approx((1.5 * L0 + 0.5 * L1) / 2, rel=1e-6)
    # The authors' variant (mean weight times the already-averaged batch loss) loses the per-example weight.
    blurred = w.mean().item() * (L0 + L1) / 2
    assert weighted_sft_loss(LOGITS, LABELS, w).item() != pytest.approx(blurred, rel=1e-3)


def test_unit_weights_give_plain_per_example_mean() -> None:
    assert weighted_sft_loss(LOGITS, LABELS, torch.ones(2)).item() == pytest.approx((L0 + L1) / 2, rel=1e-6)


def test_dataset_masks_prompt_tokens(tiny_tokenizer) -> None:
    ex = pd.DataFrame({"prompt": ["Q: 1 + 1?\nA:"], "response": [" 1 + 1 = 2. #### 2"], "weight": [2.0]})
    item = WeightedDataset(ex, tiny_tokenizer, max_len=256)[0]
    assert item["weight"] == 2.0
    (item,) = item["seqs"]
    n_prompt = len(tiny_tokenizer("Q: 1 + 1?\nA:").input_ids)
    assert item["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert item["labels"][n_prompt:] == item["input_ids"][n_prompt:]
    assert item["input_ids"][-1] == tiny_tokenizer.eos_token_id


def test_the_configs_losses_are_the_registry() -> None:
    from typing import get_args

    from east_tasks.config import Loss
    from east_tasks.core.losses import LOSSES

    assert get_args(Loss) == tuple(LOSSES) == ("sft", "dpo", "kto")
    assert [LOSSES.get(n).needs for n in LOSSES] == [(), ("reference",), ("reference",)]
