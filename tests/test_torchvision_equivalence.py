"""The strongest check of the whole model: torchvision's maskrcnn_resnet50_fpn, with random weights,
converted into ours (strict), gives the same RPN outputs, proposals, detections and masks.

torchvision is the independent reference; its intermediates are read with forward hooks. The images
are small and both models are set to the same small sizes and counts so that this runs in seconds:
transform min/max size, post-NMS proposals and detections per image (the mask FCN on 100 RoIs of 256
channels would dominate the run time on a CPU).

Rows (proposals, detections) come sorted by decreasing score. Rows whose scores tie may come in any
order: torchvision sorts them with an unstable sort (batched_nms on the CPU with more than 1000 boxes runs
one nms per group, then `sort(descending=True)`), and ties are real here, e.g. anchors in the zero padding
see the same features. `tied_order` pairs our rows with torchvision's within each run of tied scores, and
nowhere else; every value is then compared at 1e-4.
"""
import contextlib
import dataclasses

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozenBN

from minimaskrcnn import rpn as rpn_module
from minimaskrcnn.config import r50_fpn
from minimaskrcnn.convert import convert_torchvision_maskrcnn, load_state_dict_strict
from minimaskrcnn.model import MaskRCNN

TOL = dict(rtol=1e-4, atol=1e-4)
MIN_SIZE, MAX_SIZE, POST_NMS, DETECTIONS = 192, 320, 300, 10


def randomize(tv: nn.Module, lifted: int = 6) -> nn.Module:
    """Non-trivial BN statistics (fresh BN is the identity in eval mode, which would hide a wrong
    conversion), a wide spread of RPN objectness (no near-ties at the top-k cut) and classifier
    biases that lift classes 1..`lifted` above the 0.05 score threshold."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, (nn.BatchNorm2d, TVFrozenBN)):  # plain BN (weights=None) or frozen (COCO_V1)
                c = m.running_mean.shape[0]
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
        tv.rpn.head.cls_logits.weight.normal_(0, 0.5, generator=g)
        bias = tv.roi_heads.box_predictor.cls_score.bias
        bias.zero_()
        bias[1:1 + lifted] = torch.linspace(3.0, 4.0, lifted)
    return tv


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, min_size=MIN_SIZE, max_size=MAX_SIZE,
        rpn_post_nms_top_n_test=POST_NMS, box_detections_per_img=DETECTIONS)
    tv = randomize(tv).eval()
    cfg = r50_fpn(num_classes=91)
    cfg.transform = dataclasses.replace(cfg.transform, min_size=MIN_SIZE, max_size=MAX_SIZE)
    cfg.rpn = dataclasses.replace(cfg.rpn, post_nms_top_n_test=POST_NMS)
    cfg.roi_heads = dataclasses.replace(cfg.roi_heads, detections_per_img=DETECTIONS)
    ours = MaskRCNN(cfg).eval()
    load_state_dict_strict(ours, convert_torchvision_maskrcnn(tv.state_dict()), "maskrcnn_resnet50_fpn")
    return tv, ours


@contextlib.contextmanager
def capture(owner, name: str, store: list):
    """Replace owner.<name> (a function or bound method) by a wrapper that appends its return values."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        store.append(out)
        return out

    setattr(owner, name, wrapper)
    try:
        yield store
    finally:
        setattr(owner, name, original)


def tied_order(boxes, scores, ref_boxes, ref_scores, tie=1e-6):
    """(R,) int64 permutation p with ref_boxes[p] row-aligned with boxes.

    Both lists are sorted by decreasing score. p is the identity except inside runs of tied scores
    (neighbours within `tie` in either list: float32 rounding may order near-equal scores either way),
    where each of our rows is paired with the closest reference row of the run. Asserts that the
    pairing is one-to-one; the values themselves are compared by the caller.
    """
    assert boxes.shape == ref_boxes.shape and scores.shape == ref_scores.shape
    torch.testing.assert_close(scores, ref_scores, **TOL)  # the same scores, in the same order
    gaps = torch.minimum(scores[:-1] - scores[1:], ref_scores[:-1] - ref_scores[1:])  # (R-1,)
    run = torch.cat([torch.zeros(1, dtype=torch.long), (gaps > tie).long().cumsum(0)])  # (R,) run id of each row
    order = torch.arange(len(scores))
    for r in run.unique():
        rows = torch.nonzero(run == r).squeeze(1)
        if len(rows) > 1:
            distance = (boxes[rows, None] - ref_boxes[None, rows]).abs().amax(dim=2)  # (n, n)
            pair = distance.argmin(dim=1)
            assert pair.unique().numel() == len(rows), f"tied rows {rows.tolist()} do not pair one to one"
            order[rows] = rows[pair]
    return order


def run_both(tv, ours, images) -> dict:
    """Both models on the same images, intermediates read by hooks during one whole forward each: the RPN head's
    outputs ("rpn_head"), the RPN's proposals ("rpn", torchvision only), the RoI heads' detections before
    resizing ("roi_heads"), in `seen` (torchvision) and `mine`; the proposals each selected, with their scores."""
    seen, mine = {}, {}

    def keep(store, name):  # copies the detection dicts, which torchvision's postprocess rewrites in place
        return lambda module, inputs, out: store.__setitem__(name, [dict(d) for d in out[0]]
                                                             if name == "roi_heads" else out)

    hooks = [mod.register_forward_hook(keep(store, name)) for store, name, mod in [
        (seen, "rpn_head", tv.rpn.head), (seen, "rpn", tv.rpn), (seen, "roi_heads", tv.roi_heads),
        (mine, "rpn_head", ours.rpn.head), (mine, "roi_heads", ours.roi_heads)]]
    with torch.no_grad(), capture(tv.rpn, "filter_proposals", []) as tv_selected, \
            capture(rpn_module, "select_proposals", []) as selected:
        tv_out = tv(images)
        out = ours(images)
    for h in hooks:
        h.remove()
    return dict(tv=tv_out, out=out, seen=seen, mine=mine, tv_selected=tv_selected[0], selected=selected[0])


@pytest.fixture(scope="module")
def runs(models):
    """Both models on the same two images (`run_both`), rows paired within runs of tied scores."""
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 200, 300, generator=g), torch.rand(3, 230, 170, generator=g)]
    both = run_both(*models, images)
    seen, mine, out = both["seen"], both["mine"], both["out"]
    (tv_boxes, tv_scores), (proposals, scores) = both["tv_selected"], both["selected"]
    proposal_order = [tied_order(*args) for args in zip(proposals, scores, tv_boxes, tv_scores)]
    detections, tv_dets = mine["roi_heads"], seen["roi_heads"]
    detection_order = [tied_order(d["boxes"], d["scores"], r["boxes"], r["scores"])
                       for d, r in zip(detections, tv_dets)]
    return dict(tv=both["tv"], seen=seen, head=mine["rpn_head"], proposals=proposals, tv_proposals=tv_boxes,
                proposal_order=proposal_order, detections=detections, detection_order=detection_order,
                final=out.detections, losses=out.losses)


def test_tied_order_pairs_only_tied_rows():
    boxes = torch.tensor([[0.0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7], [3, 3, 8, 8]])
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1])
    assert tied_order(boxes, scores, boxes[[0, 2, 1, 3]], scores).tolist() == [0, 2, 1, 3]
    with pytest.raises(AssertionError):  # a swap across different scores is a real difference
        tied_order(boxes, scores, boxes[[1, 0, 2, 3]], scores[[1, 0, 2, 3]])
    with pytest.raises(AssertionError):  # a box moved in from outside the tied run (rows 1, 2)
        order = tied_order(boxes, scores, boxes[[0, 1, 3, 2]], scores)
        torch.testing.assert_close(boxes, boxes[[0, 1, 3, 2]][order])


def test_conversion_is_strict_and_complete(models):
    tv, ours = models
    converted = convert_torchvision_maskrcnn(tv.state_dict())
    # BatchNorm2d's step counter is kept by the converter and ignored by our frozen BN
    assert {k for k in converted if not k.endswith("num_batches_tracked")} == set(ours.state_dict())


def test_rpn_objectness_and_deltas(runs):
    tv_logits, tv_deltas = runs["seen"]["rpn_head"]
    logits, deltas = runs["head"]
    assert len(logits) == len(tv_logits) == 5
    for a, b in zip(logits + deltas, tv_logits + tv_deltas):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL)


def test_same_proposals(runs):
    tv_boxes, _ = runs["seen"]["rpn"]
    for ours, ref, selected, order in zip(runs["proposals"], tv_boxes, runs["tv_proposals"], runs["proposal_order"]):
        assert torch.equal(ref, selected)  # the RPN's output is filter_proposals' (whose scores we read)
        assert ours.shape == ref.shape and ours.shape[0] == POST_NMS
        torch.testing.assert_close(ours, ref[order], **TOL)


def test_same_detections_before_and_after_resizing(runs):
    tv_dets = runs["seen"]["roi_heads"]
    for ours, ref, final, tv_final, order in zip(runs["detections"], tv_dets, runs["final"], runs["tv"],
                                                 runs["detection_order"]):
        assert ours["boxes"].shape[0] == ref["boxes"].shape[0] == DETECTIONS
        torch.testing.assert_close(ours["boxes"], ref["boxes"][order], **TOL)
        torch.testing.assert_close(ours["scores"], ref["scores"][order], **TOL)
        assert torch.equal(ours["labels"], ref["labels"][order])
        torch.testing.assert_close(final["boxes"], tv_final["boxes"][order], **TOL)
        assert final["boxes"].dtype == torch.float32 and final["labels"].dtype == torch.int64


def test_mask_probabilities_before_pasting(runs):
    tv_dets = runs["seen"]["roi_heads"]
    for ours, ref, order in zip(runs["detections"], tv_dets, runs["detection_order"]):
        assert ours["masks"].shape == (DETECTIONS, 28, 28)
        torch.testing.assert_close(ours["masks"], ref["masks"][order, 0], **TOL)


def test_pasted_masks_agree(runs):
    checked = 0
    for final, ref, size, order in zip(runs["final"], runs["tv"], [(200, 300), (230, 170)], runs["detection_order"]):
        assert final["masks"].shape == (DETECTIONS, *size) and final["masks"].dtype == torch.float32
        for a, b in zip(final["masks"] >= 0.5, ref["masks"][order, 0] >= 0.5):
            union = (a | b).sum().item()
            assert union == 0 or (a & b).sum().item() / union >= 0.98
            checked += union > 0
    assert checked >= DETECTIONS  # most masks are not empty, so the IoU is really tested


def test_no_losses_without_targets(runs):
    assert runs["losses"] == {}
