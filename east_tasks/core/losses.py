"""The weighted losses: SFT, DPO and KTO, each example's loss times its weight before the batch mean.

Pure functions of tensors. With every weight 1 they are the standard losses: SFT is the mean response-token
cross-entropy, DPO is Rafailov et al. (2023) eq. 7, KTO is Ethayarajh et al. (2024) eq. 8 with
lambda_D = lambda_U = 1. Weights are normalised to mean 1 over the dataset, so a plain batch mean keeps
their meaning and the learning rate means the same thing for every weighting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from east_tasks.core.registry import Registry

IGNORE = -100
# train.loss: each loss's per-batch value from the model's logits, the labels, the weights and the batch's extra
# tensors. The config lists these names itself (`east_tasks.config.Loss`) so that it need not import torch;
# tests/test_training_loss.py holds the two equal.
LOSSES = Registry("train.loss")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token log-probs over each row's unmasked (response) tokens, and their count: [batch] each."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels.ne(IGNORE)
    token_logps = -F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return (token_logps * mask).sum(1), mask.sum(1)


def per_example_sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's response tokens: shape [batch]."""
    logp_sum, n_tokens = sequence_logps(logits, labels)
    return -logp_sum / n_tokens.clamp(min=1)


def weighted_sft_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (weights.float() * per_example_sft_loss(logits, labels)).mean()


def weighted_dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                      ref_rejected: torch.Tensor, weights: torch.Tensor, beta: float) -> torch.Tensor:
    """-log sigmoid(beta * (chosen log-ratio - rejected log-ratio)) per pair; inputs are summed log-probs."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return (weights.float() * -F.logsigmoid(beta * margin)).mean()


def kto_reference_point(policy: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """KTO's z_ref: the batch's mean policy/reference log-ratio, floored at 0 and not back-propagated.

    The paper estimates KL(policy || ref) on mismatched (prompt, completion) pairs; the reference log-probs
    here are cached for the real completions only, so the estimate uses those.
    """
    return (policy - ref).mean().clamp(min=0).detach()


def weighted_kto_loss(policy: torch.Tensor, ref: torch.Tensor, desirable: torch.Tensor, weights: torch.Tensor,
                      beta: float, z_ref: torch.Tensor | float) -> torch.Tensor:
    """1 - sigmoid(beta * (r - z_ref)) for desirable singles, 1 - sigmoid(beta * (z_ref - r)) otherwise."""
    ratio = policy - ref
    value = torch.where(desirable, torch.sigmoid(beta * (ratio - z_ref)), torch.sigmoid(beta * (z_ref - ratio)))
    return (weights.float() * (1 - value)).mean()


@LOSSES.register("sft", "weighted SFT: mean response-token cross-entropy per example")
def _sft(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, batch: dict, beta: float) -> torch.Tensor:
    return weighted_sft_loss(logits, labels, weights)


@LOSSES.register("dpo", "weighted DPO over (chosen, rejected) pairs", needs=("reference",))
def _dpo(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, batch: dict, beta: float) -> torch.Tensor:
    policy, _ = sequence_logps(logits, labels)
    (pc, pr), (rc, rr) = policy.chunk(2), batch["ref_logps"].chunk(2)
    return weighted_dpo_loss(pc, pr, rc, rr, weights, beta)


@LOSSES.register("kto", "weighted KTO over desirable and undesirable singles", needs=("reference",))
def _kto(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, batch: dict, beta: float) -> torch.Tensor:
    policy, _ = sequence_logps(logits, labels)
    ref = batch["ref_logps"]
    return weighted_kto_loss(policy, ref, batch["desirable"], weights, beta, kto_reference_point(policy, ref))
