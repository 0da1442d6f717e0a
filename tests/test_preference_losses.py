"""Weighted DPO / KTO losses against hand-computed values and the papers' unweighted formulas."""

import math

import pytest
import torch

from east_tasks.core.losses import kto_reference_point, weighted_dpo_loss, weighted_kto_loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# Two pairs of summed log-probs. Pair 0: chosen ratio +1, rejected ratio -1 -> margin 2.
# Pair 1: chosen ratio -1, rejected ratio +1 -> margin -2.
PC, PR = torch.tensor([-10.0, -5.0]), torch.tensor([-12.0, -5.0])
RC, RR = torch.tensor([-11.0, -4.0]), torch.tensor([-11.0, -6.0])


def test_dpo_hand_values() -> None:
    # -log sigmoid(0.1 * 2) = log(1 + e^-0.2) = 0.598139; -log sigmoid(-0.2) = 0.798139
    per_pair = [0.5981388693, 0.7981388693]
    w = torch.tensor([1.5, 0.5])
    assert weighted_dpo_loss(PC, PR, RC, RR, w, beta=0.1).item() == pytest.approx(
        (1.5 * per_pair[0] + 0.5 * per_pair[1]) / 2, rel=1e-6)


def test_dpo_unit_weights_is_standard_dpo() -> None:
    standard = sum(_softplus(-0.5 * ((pc - rc) - (pr - rr)))
                   for pc, pr, rc, rr in zip(PC.tolist(), PR.tolist(), RC.tolist(), RR.tolist(), strict=True)) / 2
    assert weighted_dpo_loss(PC, PR, RC, RR, torch.ones(2), beta=0.5).item() == pytest.approx(standard, rel=1e-6)
    # Equal policy and reference: every pair at log 2, the loss DPO starts from.
    assert weighted_dpo_loss(RC, RR, RC, RR, torch.ones(2), beta=0.1).item() == pytest.approx(math.log(2))


def test_kto_hand_values_and_reference_point() -> None:
    policy, ref = torch.tensor([-10.0, -8.0]), torch.tensor([-11.0, -7.0])  # log-ratios +1, -1
    desirable = torch.tensor([True, False])
    # z_ref = 0.5: desirable 1 - sigmoid(0.1 * 0.5) = 0.487503; undesirable 1 - sigmoid(0.1 * 1.5) = 0.462570
    assert weighted_kto_loss(policy, ref, desirable, torch.tensor([2.0, 0.0]), 0.1, 0.5).item() == pytest.approx(
        2 * 0.4875026039 / 2, rel=1e-6)
    assert weighted_kto_loss(policy, ref, desirable, torch.tensor([0.0, 1.0]), 0.1, 0.5).item() == pytest.approx(
        0.4625701546 / 2, rel=1e-6)
    assert kto_reference_point(torch.tensor([0.0, 1.0]), torch.tensor([-2.0, 0.0])).item() == pytest.approx(1.5)
    assert kto_reference_point(policy, ref).item() == 0.0  # mean log-ratio 0
    assert kto_reference_point(torch.tensor([-3.0]), torch.tensor([-1.0])).item() == 0.0  # floored at 0


def test_kto_unit_weights_is_standard_kto() -> None:
    policy, ref = torch.tensor([-3.0, -4.0, -2.5]), torch.tensor([-3.5, -3.0, -2.0])
    desirable = torch.tensor([True, False, True])
    beta, z = 0.3, 0.2
    standard = sum(1 - (_sigmoid(beta * ((p - r) - z)) if d else _sigmoid(beta * (z - (p - r))))
                   for p, r, d in zip(policy.tolist(), ref.tolist(), desirable.tolist(), strict=True)) / 3
    assert weighted_kto_loss(policy, ref, desirable, torch.ones(3), beta, z).item() == pytest.approx(standard)


def test_reference_point_carries_no_gradient() -> None:
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-3.0, -3.0])
    loss = weighted_kto_loss(policy, ref, torch.tensor([True, True]), torch.ones(2), 1.0,
                             kto_reference_point(policy, ref))
    loss.backward()
    # d/dp of mean(1 - sigmoid(r_i - z)) with z held fixed: -sigmoid'(r_i - z) / 2, z = 1.5
    expected = [-_sigmoid(r - 1.5) * (1 - _sigmoid(r - 1.5)) / 2 for r in (2.0, 1.0)]
    assert policy.grad.tolist() == pytest.approx(expected, rel=1e-6)
