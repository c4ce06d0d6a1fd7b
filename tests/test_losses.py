"""Loss values (losses.py) on hand-made logits, against formulas written out here and hand values."""
import math

import pytest
import torch

from minimaskrcnn.losses import fast_rcnn_loss, mask_loss, rpn_box_loss, rpn_objectness_loss


def smooth_l1(x, beta=1.0 / 9):
    x = x.abs()
    return torch.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta)


def bce(logit, y):
    p = 1 / (1 + torch.exp(-logit))
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def test_rpn_objectness_loss_hand_value():
    # logit 0 -> p = 1/2 -> log 2 for either label; logit log 3 -> p = 3/4 -> -log(3/4) for a positive
    logits = torch.tensor([0.0, 0.0, math.log(3.0)])
    labels = torch.tensor([1.0, 0.0, 1.0])
    expected = (math.log(2) + math.log(2) - math.log(0.75)) / 3
    assert rpn_objectness_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_rpn_box_loss_divides_by_sampled_count():
    deltas = torch.tensor([[0.05, -0.5, 0.0, 2.0]])
    targets = torch.zeros(1, 4)
    # smooth-L1 with beta 1/9: 0.05 -> 0.5 * 0.0025 * 9 = 0.01125; 0.5 -> 0.5 - 1/18; 2 -> 2 - 1/18
    total = 0.01125 + (0.5 - 1 / 18) + 0.0 + (2.0 - 1 / 18)
    assert rpn_box_loss(deltas, targets, num_sampled=4).item() == pytest.approx(total / 4, rel=1e-6)
    assert rpn_box_loss(deltas[:0], targets[:0], num_sampled=0).item() == 0


def test_fast_rcnn_loss_against_written_out_formula():
    g = torch.Generator().manual_seed(0)
    R, K = 6, 4
    logits = torch.randn(R, K, generator=g)
    deltas = torch.randn(R, 4 * K, generator=g)
    labels = torch.tensor([0, 2, 3, 0, 1, 0])
    targets = torch.randn(R, 4, generator=g)
    loss_cls, loss_box = fast_rcnn_loss(logits, deltas, labels, targets)

    ce = [-(logits[i, labels[i]] - torch.logsumexp(logits[i], 0)) for i in range(R)]
    assert loss_cls.item() == pytest.approx(sum(ce).item() / R, rel=1e-5)
    box = sum(smooth_l1(deltas[i, 4 * labels[i]: 4 * labels[i] + 4] - targets[i]).sum()
              for i in range(R) if labels[i] > 0)
    assert loss_box.item() == pytest.approx(box.item() / R, rel=1e-5)


def test_fast_rcnn_box_loss_ignores_other_classes_and_background():
    logits, labels, targets = torch.zeros(2, 3), torch.tensor([0, 2]), torch.zeros(2, 4)
    deltas = torch.zeros(2, 12)
    deltas[0] = 5.0  # background RoI: no box loss whatever its deltas
    deltas[1, :8] = 7.0  # classes 0 and 1 of a class-2 RoI: no loss either
    assert fast_rcnn_loss(logits, deltas, labels, targets)[1].item() == 0
    deltas[1, 8] = 1.0  # class 2's dx: 1 - 1/18, over 2 sampled RoIs
    assert fast_rcnn_loss(logits, deltas, labels, targets)[1].item() == pytest.approx((1 - 1 / 18) / 2)


def test_sigmoid_mask_loss_uses_the_gt_class_channel_only():
    g = torch.Generator().manual_seed(1)
    P, K, M = 3, 5, 4
    logits = torch.randn(P, K, M, M, generator=g)
    labels = torch.tensor([1, 4, 2])
    targets = (torch.rand(P, M, M, generator=g) > 0.5).float()
    loss = mask_loss(logits, labels, targets, "sigmoid")
    expected = torch.stack([bce(logits[i, labels[i]], targets[i]).mean() for i in range(P)]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    other = logits.clone()
    for i in range(P):  # change every channel except the ground-truth class's
        keep = other[i, labels[i]].clone()
        other[i] = 100.0
        other[i, labels[i]] = keep
    assert mask_loss(other, labels, targets, "sigmoid").item() == pytest.approx(loss.item(), rel=1e-6)


def test_class_agnostic_mask_loss_uses_channel_zero():
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # (1, 1, 1, 2)
    targets = torch.tensor([[[1.0, 0.0]]])
    # pixel 1: p = 1/2 -> log 2; pixel 2: p = 3/4 with target 0 -> -log(1/4)
    expected = (math.log(2) + math.log(4)) / 2
    assert mask_loss(logits, torch.tensor([3]), targets).item() == pytest.approx(expected, rel=1e-6)


def test_softmax_mask_loss_is_per_pixel_cross_entropy_with_background_channel():
    g = torch.Generator().manual_seed(2)
    P, K, M = 2, 3, 3
    logits = torch.randn(P, K, M, M, generator=g)
    labels = torch.tensor([2, 1])
    targets = torch.rand(P, M, M, generator=g)
    loss = mask_loss(logits, labels, targets, "softmax")
    total = 0.0
    for i in range(P):
        for y in range(M):
            for x in range(M):
                c = labels[i].item() if targets[i, y, x] >= 0.5 else 0
                total += -(logits[i, c, y, x] - torch.logsumexp(logits[i, :, y, x], 0)).item()
    assert loss.item() == pytest.approx(total / (P * M * M), rel=1e-5)


def test_softmax_mask_loss_rejects_class_agnostic_masks():
    with pytest.raises(ValueError, match="class-agnostic"):
        mask_loss(torch.zeros(1, 1, 2, 2), torch.tensor([1]), torch.zeros(1, 2, 2), "softmax")


def test_mask_loss_unknown_kind():
    with pytest.raises(ValueError, match="mask loss kind"):
        mask_loss(torch.zeros(1, 2, 2, 2), torch.tensor([1]), torch.zeros(1, 2, 2), "dice")


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_mask_loss_without_positives_is_zero_and_connected(kind):
    weight = torch.randn(3, 4, requires_grad=True)
    logits = torch.zeros(0, 4) @ weight.t()  # stands for a head run on zero RoIs
    loss = mask_loss(logits.reshape(0, 3, 1, 1), torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, 1), kind)
    assert loss.item() == 0
    loss.backward()
    assert weight.grad is not None and weight.grad.eq(0).all()
