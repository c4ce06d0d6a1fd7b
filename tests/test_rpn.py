"""RPN (rpn.py): anchor labelling and sampling on hand-built cases, matching against torchvision's Matcher,
head output order against torchvision's concat_box_prediction_layers, proposal selection against
torchvision's RegionProposalNetwork.filter_proposals, and the losses against formulas written here."""
import math

import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers

from minimaskrcnn.config import AnchorConfig, RPNConfig
from minimaskrcnn.matching import BACKGROUND, IGNORED, match_boxes, sample_labels
from minimaskrcnn.rpn import (RPN, RPNHead, flatten_predictions, label_anchors, make_anchors, rpn_losses,
                              select_proposals)
from minimaskrcnn.transform import ImageBatch


def box(x, y, w, h):
    return [x, y, x + w, y + h]


def test_labelling_hand_case_thresholds_best_anchor_ties_and_neutral():
    gt = torch.tensor([box(0, 0, 10, 10), box(50, 50, 10, 10)], dtype=torch.float32)
    anchors = torch.tensor([
        box(0, 0, 10, 10),  # IoU 1 with gt 0: positive
        box(0, 0, 10, 7.5),  # IoU 0.75: positive
        box(0, 0, 10, 5),  # IoU 0.5: between 0.3 and 0.7, ignored
        box(0, 0, 10, 2),  # IoU 0.2: negative
        box(50, 50, 10, 4),  # IoU 0.4 with gt 1, its best (tied): positive by the best-anchor rule
        box(50, 56, 10, 4),  # IoU 0.4 too, the tie: positive as well
        box(100, 100, 5, 5),  # overlaps nothing: negative
    ], dtype=torch.float32)
    labels, matched = label_anchors(anchors, gt, RPNConfig())
    assert labels.tolist() == [1, 1, -1, 0, 1, 1, 0]
    assert matched[[0, 1, 4, 5]].tolist() == [0, 0, 1, 1]


def test_labelling_without_objects_is_all_negative():
    labels, matched = label_anchors(torch.tensor([box(0, 0, 5, 5), box(3, 3, 9, 9)], dtype=torch.float32),
                                    torch.zeros(0, 4), RPNConfig())
    assert labels.tolist() == [0, 0] and matched.tolist() == [0, 0]


def test_a_ground_truth_overlapping_nothing_makes_no_positive():
    # torchvision would mark every anchor with IoU 0 (its "best") as positive; we do not
    gt = torch.tensor([box(0, 0, 4, 4), box(200, 200, 4, 4)], dtype=torch.float32)
    anchors = torch.tensor([box(0, 0, 4, 4), box(50, 50, 4, 4)], dtype=torch.float32)
    assert label_anchors(anchors, gt, RPNConfig())[0].tolist() == [1, 0]


@pytest.mark.parametrize("allow_low_quality", [True, False])
def test_match_boxes_equals_torchvision_matcher(allow_low_quality):
    g = torch.Generator().manual_seed(0)
    iou = torch.rand(7, 300, generator=g) * 0.9 + 0.01
    iou[2, 17] = iou[2, 90] = iou[2].max()  # a tie for gt 2's best
    ours = match_boxes(iou, 0.7, 0.3, allow_low_quality)
    ref = Matcher(0.7, 0.3, allow_low_quality_matches=allow_low_quality)(iou.clone())
    assert torch.equal(ours, ref)
    assert (BACKGROUND, IGNORED) == (-1, -2)  # the same codes as torchvision's


@pytest.mark.parametrize("num_pos, num_neg, expected", [
    (10, 1000, (10, 246)),  # few positives: negatives fill the batch
    (500, 1000, (128, 128)),  # many: at most half positive
    (5, 20, (5, 20)),  # fewer than the batch altogether: take all
    (0, 1000, (0, 256)),  # no objects
])
def test_sample_labels_counts_and_validity(num_pos, num_neg, expected):
    labels = torch.cat([torch.ones(num_pos), torch.zeros(num_neg), -torch.ones(50)]).long()
    labels = labels[torch.randperm(labels.numel())]
    pos, neg = sample_labels(labels, 256, 0.5)
    assert (pos.numel(), neg.numel()) == expected
    assert labels[pos].eq(1).all() and labels[neg].eq(0).all()  # ignored (-1) never sampled
    assert pos.unique().numel() == pos.numel() and neg.unique().numel() == neg.numel()


def test_sample_labels_is_random():
    labels = torch.zeros(1000, dtype=torch.long)
    a, b = sample_labels(labels, 16, 0.5)[1], sample_labels(labels, 16, 0.5)[1]
    assert not torch.equal(a.sort().values, b.sort().values)


def test_head_outputs_flatten_in_torchvision_order():
    torch.manual_seed(0)
    feats = [torch.randn(2, 8, 6, 5), torch.randn(2, 8, 3, 3)]
    head = RPNHead(8, 8, 3)
    logits, deltas = head(feats)
    assert [x.shape for x in logits] == [(2, 3, 6, 5), (2, 3, 3, 3)]
    assert [x.shape for x in deltas] == [(2, 12, 6, 5), (2, 12, 3, 3)]
    flat_logits, flat_deltas = flatten_predictions(logits, deltas)
    ref_logits, ref_deltas = concat_box_prediction_layers(logits, deltas)
    assert torch.equal(flat_logits.reshape(-1), ref_logits.reshape(-1))
    assert torch.equal(flat_deltas.reshape(-1, 4), ref_deltas)


def test_anchors_follow_torchvision_and_padded_strides():
    cfg = AnchorConfig(sizes=((16,), (32,)), aspect_ratios=(0.5, 1.0, 2.0))
    feats = [torch.zeros(1, 4, 16, 24), torch.zeros(1, 4, 8, 12)]
    ours = make_anchors(cfg, feats, (64, 96))
    ref = AnchorGenerator(cfg.sizes, (cfg.aspect_ratios,) * 2)(ImageList(torch.zeros(1, 3, 64, 96), [(60, 90)]), feats)
    assert torch.equal(torch.cat(ours), ref[0])
    assert ours[0].shape == (16 * 24 * 3, 4) and ours[0].dtype == torch.float32
    with pytest.raises(ValueError, match="AnchorConfig.sizes"):
        make_anchors(cfg, feats[:1], (64, 96))


def test_select_proposals_equals_torchvision_filter_proposals():
    g = torch.Generator().manual_seed(1)
    cfg = RPNConfig(pre_nms_top_n_test=50, post_nms_top_n_test=40, nms_thresh=0.6, score_thresh=0.3)
    per_level = [400, 100, 25]
    N, T = 2, sum(per_level)
    xy = torch.rand(N, T, 2, generator=g) * 100 - 10
    boxes = torch.cat([xy, xy + torch.rand(N, T, 2, generator=g) * 40], dim=2)  # some outside the image
    boxes[0, 3, 2:] = boxes[0, 3, :2]  # an empty box
    logits = torch.randn(N, T, generator=g) * 3
    sizes = [(80, 90), (64, 100)]
    ours, scores = select_proposals(boxes, logits, per_level, sizes, cfg, training=False)
    tv = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, dict(training=1, testing=50),
                               dict(training=1, testing=40), 0.6, score_thresh=0.3).eval()
    ref, ref_scores = tv.filter_proposals(boxes, logits, sizes, per_level)
    for a, b, sa, sb in zip(ours, ref, scores, ref_scores):
        assert a.shape[0] > 5
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(sa, sb)


def test_rpn_losses_against_formulas_when_every_labelled_anchor_is_sampled():
    # batch larger than the anchors and positive_fraction 1: no randomness in the sample
    cfg = RPNConfig(batch_size_per_image=1000, positive_fraction=1.0)
    g = torch.Generator().manual_seed(2)
    anchors = torch.tensor([box(x, y, 16, 16) for y in range(0, 64, 8) for x in range(0, 64, 8)], dtype=torch.float32)
    targets = [{"boxes": torch.tensor([box(4, 4, 20, 18), box(40, 30, 16, 24)], dtype=torch.float32)},
               {"boxes": torch.zeros(0, 4)}]
    N, T = 2, anchors.shape[0]
    logits, deltas = torch.randn(N, T, generator=g), torch.randn(N, T, 4, generator=g) * 0.2
    losses = rpn_losses(logits, deltas, anchors, targets, cfg)

    bce, l1, count = 0.0, 0.0, 0
    for i, t in enumerate(targets):
        labels, matched = label_anchors(anchors, t["boxes"], cfg)
        for a in range(T):
            if labels[a] < 0:
                continue
            count += 1
            p = 1 / (1 + math.exp(-logits[i, a].item()))
            bce += -math.log(p) if labels[a] == 1 else -math.log(1 - p)
            if labels[a] == 1:
                gx1, gy1, gx2, gy2 = t["boxes"][matched[a]].tolist()
                ax1, ay1, ax2, ay2 = anchors[a].tolist()
                aw, ah, gw, gh = ax2 - ax1, ay2 - ay1, gx2 - gx1, gy2 - gy1
                target = [((gx1 + gx2) - (ax1 + ax2)) / 2 / aw, ((gy1 + gy2) - (ay1 + ay2)) / 2 / ah,
                          math.log(gw / aw), math.log(gh / ah)]
                for d, tt in zip(deltas[i, a].tolist(), target):
                    x = abs(d - tt)
                    l1 += 0.5 * x * x * 9 if x < 1 / 9 else x - 0.5 / 9
    assert losses["loss_objectness"].item() == pytest.approx(bce / count, rel=1e-5)
    assert losses["loss_rpn_box"].item() == pytest.approx(l1 / count, rel=1e-4)


def test_rpn_forward_shapes_train_and_eval():
    torch.manual_seed(0)
    cfg = RPNConfig(pre_nms_top_n_train=100, post_nms_top_n_train=60, pre_nms_top_n_test=50, post_nms_top_n_test=30)
    rpn = RPN(cfg, AnchorConfig(sizes=((16,), (32,))), in_channels=8)
    batch = ImageBatch(torch.zeros(2, 3, 64, 64), [(64, 60), (50, 64)], [(64, 60), (50, 64)])
    feats = {"p2": torch.randn(2, 8, 16, 16), "p3": torch.randn(2, 8, 8, 8)}
    targets = [{"boxes": torch.tensor([box(5, 5, 20, 30)], dtype=torch.float32)}, {"boxes": torch.zeros(0, 4)}]
    proposals, losses = rpn(batch, feats, targets)
    assert len(proposals) == 2 and all(p.shape[1] == 4 and 0 < p.shape[0] <= 60 for p in proposals)
    assert all(p.dtype == torch.float32 for p in proposals)
    assert proposals[1][:, 2].max() <= 64 and proposals[1][:, 3].max() <= 50  # clipped to the image
    assert set(losses) == {"loss_objectness", "loss_rpn_box"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert rpn.head.cls_logits.weight.grad is not None and rpn.head.bbox_pred.weight.grad.abs().sum() > 0
    rpn.eval()
    proposals, losses = rpn(batch, feats)
    assert losses == {} and all(p.shape[0] <= 30 for p in proposals)
    assert not proposals[0].requires_grad  # no gradient through the proposals


def test_rpn_rejects_levels_with_different_anchor_counts():
    with pytest.raises(ValueError, match="AnchorConfig.sizes"):
        RPN(RPNConfig(), AnchorConfig(sizes=((16,), (32, 64))), 8)
