"""RoI heads (roi_heads.py, poolers.py, box_head.py, mask_head.py): proposal labelling and 1:3 sampling on
hand-built cases, mask targets against a plain-loop crop-and-resize, multi-level pooling against
torchvision's MultiScaleRoIAlign, inference against torchvision's postprocess_detections."""
import dataclasses
import math

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads as TVRoIHeads
from torchvision.ops import MultiScaleRoIAlign, roi_align as tv_roi_align, roi_pool as tv_roi_pool

from minimaskrcnn.config import RoIHeadsConfig
from minimaskrcnn.ops import roi_align, roi_warp
from minimaskrcnn.resnet import build_res5_head
from minimaskrcnn.config import BackboneConfig
from minimaskrcnn.poolers import pool_rois, roi_feature_strides
from minimaskrcnn.roi_heads import RoIHeads, detect_boxes, mask_probabilities, mask_targets, sample_rois

FPN_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def box(x, y, w, h):
    return [x, y, x + w, y + h]


def test_sample_rois_labels_appends_ground_truth_and_keeps_1_to_3():
    cfg = RoIHeadsConfig(batch_size_per_image=8, positive_fraction=0.25)
    gt = torch.tensor([box(0, 0, 20, 20), box(40, 40, 20, 20)], dtype=torch.float32)
    proposals = torch.tensor([box(0, 0, 20, 16),  # IoU 0.8 with gt 0: foreground, class 3
                              box(0, 0, 20, 10),  # IoU 0.5: foreground (>= 0.5)
                              box(0, 0, 20, 9)]  # IoU 0.45: background
                             + [box(100 + 3 * i, 100, 10, 10) for i in range(20)], dtype=torch.float32)
    targets = [{"boxes": gt, "labels": torch.tensor([3, 1])}]
    rois, labels, matched = sample_rois([proposals], targets, cfg)
    rois, labels, matched = rois[0], labels[0], matched[0]
    assert labels.numel() == 8 and (labels > 0).sum() == 2 and (labels == 0).sum() == 6  # at most 8 * 0.25
    for r, lb, m in zip(rois, labels, matched):
        if lb > 0:  # a positive is one of the two IoU >= 0.5 proposals or a ground-truth box, with its class
            assert lb == targets[0]["labels"][m]
        else:
            assert r[0] >= 100 or r.tolist() == box(0, 0, 20, 9)

    # with room for every positive: the three of gt 0 (two proposals + itself) and gt 1 itself
    rois, labels, matched = sample_rois([proposals], targets, dataclasses.replace(cfg, batch_size_per_image=100))
    pos = labels[0] > 0
    assert pos.sum() == 4 and labels[0].numel() == 25
    assert any(r.tolist() == box(40, 40, 20, 20) for r in rois[0][pos])  # the appended ground truth
    assert sorted(labels[0][pos].tolist()) == [1, 3, 3, 3]


def test_sample_rois_without_objects_is_all_background():
    cfg = RoIHeadsConfig(batch_size_per_image=16)
    proposals = torch.tensor([box(i, i, 10, 10) for i in range(30)], dtype=torch.float32)
    rois, labels, matched = sample_rois([proposals], [{"boxes": torch.zeros(0, 4),
                                                      "labels": torch.zeros(0, dtype=torch.long)}], cfg)
    assert labels[0].tolist() == [0] * 16 and rois[0].shape == (16, 4)


def plain_roi_align(image, roi, size):
    """RoIAlign (aligned=False, adaptive sampling) of a (H, W) map, written as loops: each output bin
    averages ceil(bin size) x ceil(bin size) bilinear samples at regularly spaced points."""
    H, W = image.shape
    x1, y1, x2, y2 = roi
    bw, bh = max(x2 - x1, 1.0) / size, max(y2 - y1, 1.0) / size
    nx, ny = math.ceil(bw), math.ceil(bh)

    def bilinear(y, x):
        if y < -1 or y > H or x < -1 or x > W:
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = min(int(y), H - 1), min(int(x), W - 1)
        y = y0 if y0 == H - 1 else y
        x = x0 if x0 == W - 1 else x
        y1_, x1_ = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * image[y0, x0] + (1 - ly) * lx * image[y0, x1_]
                + ly * (1 - lx) * image[y1_, x0] + ly * lx * image[y1_, x1_]).item()

    out = torch.zeros(size, size)
    for i in range(size):
        for j in range(size):
            total = sum(bilinear(y1 + (i + (a + 0.5) / ny) * bh, x1 + (j + (b + 0.5) / nx) * bw)
                        for a in range(ny) for b in range(nx))
            out[i, j] = total / (nx * ny)
    return out


def test_mask_targets_equal_plain_crop_and_resize():
    masks = torch.zeros(2, 40, 50, dtype=torch.uint8)
    masks[0, 5:25, 10:30] = 1  # a square
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(50), indexing="ij")
    masks[1] = ((yy - 22) ** 2 + (xx - 30) ** 2 <= 100).to(torch.uint8)  # a disc
    rois = torch.tensor([[8.0, 3.0, 33.0, 27.5], [17.3, 11.1, 44.2, 35.0], [10.0, 5.0, 30.0, 25.0]])
    matched = torch.tensor([0, 1, 0])
    out = mask_targets(masks, rois, matched, 7)
    assert out.shape == (3, 7, 7) and out.dtype == torch.float32
    for o, r, m in zip(out, rois, matched):
        torch.testing.assert_close(o, plain_roi_align(masks[m].float(), r.tolist(), 7), rtol=0, atol=1e-5)
    assert torch.allclose(out[2, 1:-1, 1:-1], torch.ones(()), atol=1e-6)  # a RoI on the square's box sees the square inside


def test_mask_targets_equal_torchvision_roi_align_on_random_rois():
    g = torch.Generator().manual_seed(4)
    masks = (torch.rand(3, 37, 53, generator=g) > 0.5).to(torch.uint8)
    xy = torch.rand(40, 2, generator=g) * torch.tensor([60.0, 45.0]) - 5  # some start outside the mask
    rois = torch.cat([xy, xy + torch.rand(40, 2, generator=g) * 70], 1)  # large, small, below 1 pixel
    matched = torch.randint(0, 3, (40,), generator=g)
    ref = tv_roi_align(masks[:, None].float(), torch.cat([matched[:, None].float(), rois], 1), 14, 1.0, -1)
    torch.testing.assert_close(mask_targets(masks, rois, matched, 14), ref[:, 0], rtol=0, atol=1e-5)
    assert mask_targets(masks, rois[:0], matched[:0], 14).shape == (0, 14, 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the targets stay float32
        torch.testing.assert_close(mask_targets(masks, rois, matched, 14), ref[:, 0], rtol=0, atol=1e-5)


def test_pool_rois_matches_torchvision_multiscale_roialign():
    g = torch.Generator().manual_seed(0)
    feats = {name: torch.randn(2, 4, 128 // s, 160 // s, generator=g) for name, s in FPN_STRIDES.items()}
    xy = torch.rand(2, 30, 2, generator=g) * 100
    boxes = [torch.cat([p, p + 4 + torch.rand(30, 2, generator=g) * 300], 1) for p in xy]  # every level
    strides = roi_feature_strides(FPN_STRIDES)
    assert list(strides) == ["p2", "p3", "p4", "p5"]
    ours = pool_rois(feats, boxes, 7, strides, RoIHeadsConfig())
    tv = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, sampling_ratio=2)
    ref = tv(feats, boxes, [(128, 160), (128, 160)])
    assert ours.shape == (60, 4, 7, 7)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_pool_levels_pool_every_roi_from_the_chosen_map():
    g = torch.Generator().manual_seed(5)
    feats = {name: torch.randn(1, 3, 128 // s, 128 // s, generator=g) for name, s in FPN_STRIDES.items()}
    boxes = [torch.tensor([[2.0, 3.0, 20.0, 18.0], [10.0, 5.0, 120.0, 100.0]])]  # would go to P2 and P4
    strides = roi_feature_strides(FPN_STRIDES, ("p4",))
    assert strides == {"p4": 16}
    ours = pool_rois(feats, boxes, 7, strides, RoIHeadsConfig(pool_levels=("p4",)))
    torch.testing.assert_close(ours, tv_roi_align(feats["p4"], boxes, 7, 1 / 16, 2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pool_levels"):
        roi_feature_strides(FPN_STRIDES, ("c4",))


def test_pool_rois_single_level_and_roipool_dispatch():
    g = torch.Generator().manual_seed(1)
    feats = {"c4": torch.randn(1, 3, 8, 10, generator=g)}
    boxes = [torch.tensor([[3.0, 5.0, 90.0, 70.0], [20.0, 10.0, 60.0, 100.0]])]
    out = pool_rois(feats, boxes, 5, {"c4": 16}, RoIHeadsConfig(pooler="pool"))
    rois = torch.cat([torch.zeros(2, 1), boxes[0]], 1)
    torch.testing.assert_close(out, tv_roi_pool(feats["c4"], rois, 5, 1 / 16))
    for pooler in ("align", "warp"):
        assert pool_rois(feats, boxes, 5, {"c4": 16}, RoIHeadsConfig(pooler=pooler)).shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="pooler"):
        pool_rois(feats, boxes, 5, {"c4": 16}, RoIHeadsConfig(pooler="crop"))


def test_detect_boxes_equals_torchvision_postprocess():
    g = torch.Generator().manual_seed(2)
    K = 5
    xy = torch.rand(2, 60, 2, generator=g) * 80
    proposals = [torch.cat([p, p + 5 + torch.rand(60, 2, generator=g) * 40], 1) for p in xy]
    logits = torch.randn(120, K, generator=g) * 2
    deltas = torch.randn(120, 4 * K, generator=g)
    sizes = [(100, 90), (70, 120)]
    cfg = RoIHeadsConfig(score_thresh=0.1, nms_thresh=0.5, detections_per_img=15)
    ours = detect_boxes(logits, deltas, proposals, sizes, cfg)
    tv = TVRoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.1, 0.5, 15)
    boxes, scores, labels = tv.postprocess_detections(logits, deltas, proposals, sizes)
    for d, b, s, lb in zip(ours, boxes, scores, labels):
        assert d["boxes"].shape[0] == 15
        torch.testing.assert_close(d["boxes"], b)
        torch.testing.assert_close(d["scores"], s)
        assert torch.equal(d["labels"], lb)
    # RoIHeadsConfig.min_box_size (torchvision's 1e-2) decides which boxes are too small to keep
    wide = dataclasses.replace(cfg, min_box_size=20.0)
    for d in detect_boxes(logits, deltas, proposals, sizes, wide):
        sides = torch.minimum(d["boxes"][:, 2] - d["boxes"][:, 0], d["boxes"][:, 3] - d["boxes"][:, 1])
        assert len(sides) and sides.min() >= 20.0
    assert any((torch.minimum(d["boxes"][:, 2] - d["boxes"][:, 0], d["boxes"][:, 3] - d["boxes"][:, 1]) < 20).any()
               for d in ours)


def test_mask_probabilities_take_the_predicted_class():
    logits = torch.randn(3, 4, 2, 2)
    labels = torch.tensor([2, 1, 3])
    out = mask_probabilities(logits, labels, "sigmoid")
    for i in range(3):
        torch.testing.assert_close(out[i], logits[i, labels[i]].sigmoid())
    torch.testing.assert_close(mask_probabilities(logits[:, :1], labels, "sigmoid"), logits[:, 0].sigmoid())
    soft = mask_probabilities(logits, labels, "softmax")
    torch.testing.assert_close(soft[1], logits[1].softmax(0)[1])


def make_heads(**kw):
    cfg = RoIHeadsConfig(batch_size_per_image=32, box_head_dim=32, mask_head_channels=8, detections_per_img=5, **kw)
    return RoIHeads(cfg, num_classes=3, in_channels=4, strides=FPN_STRIDES)


def heads_inputs(seed=3):
    g = torch.Generator().manual_seed(seed)
    feats = {name: torch.randn(2, 4, 64 // s, 64 // s, generator=g) for name, s in FPN_STRIDES.items()}
    proposals = [torch.tensor([box(4 * i, 2 * i, 20, 24) for i in range(10)], dtype=torch.float32)] * 2
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 8:28] = 1
    targets = [{"boxes": torch.tensor([box(8, 10, 20, 20)], dtype=torch.float32), "labels": torch.tensor([2]),
                "masks": masks},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}]
    return feats, proposals, [(64, 64), (60, 64)], targets


@pytest.mark.parametrize("kw", [{}, {"mask_head": "mlp"}, {"class_agnostic_masks": True}, {"mask_loss": "softmax"}])
def test_heads_train_and_eval_outputs(kw):
    torch.manual_seed(0)
    heads = make_heads(**kw)
    feats, proposals, sizes, targets = heads_inputs()
    detections, losses = heads(feats, proposals, sizes, targets)
    assert detections is None
    assert set(losses) == {"loss_classifier", "loss_box", "loss_mask"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert heads.mask_predictor.state_dict() and all(p.grad is not None for p in heads.parameters())

    heads.eval()
    with torch.no_grad():
        heads.box_predictor.cls_score.bias[1:] = 5.0  # make every RoI a confident detection
        detections, losses = heads(feats, proposals, sizes)
    assert losses == {} and len(detections) == 2
    for d in detections:
        D = d["boxes"].shape[0]
        assert D == 5 and d["scores"].shape == (D,) and d["labels"].dtype == torch.int64
        assert d["masks"].shape == (D, 28, 28) and d["masks"].dtype == torch.float32
        assert ((d["masks"] >= 0) & (d["masks"] <= 1)).all()


def test_c4_heads_shapes():
    torch.manual_seed(0)
    bb = BackboneConfig(depth=18, stem_channels=8, norm="bn", variant="c4")
    res5 = build_res5_head(bb)
    cfg = RoIHeadsConfig(box_pool_size=14, mask_pool_size=14, batch_size_per_image=16, mask_head_channels=8)
    heads = RoIHeads(cfg, num_classes=3, in_channels=32, strides={"c4": 16}, res5=res5)
    feats = {"c4": torch.randn(2, 32, 4, 4)}
    _, proposals, sizes, targets = heads_inputs()
    _, losses = heads(feats, proposals, sizes, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    heads.eval()
    with torch.no_grad():
        detections, _ = heads(feats, proposals, sizes)
    assert detections[0]["masks"].shape[1:] == (14, 14)  # C4: res5 7x7 -> deconv 14x14 (Fig. 4 left)


def test_bad_heads_config_names_the_field():
    with pytest.raises(ValueError, match="mask_loss"):
        make_heads(mask_loss="dice")
    with pytest.raises(ValueError, match="class_agnostic_masks"):
        make_heads(mask_loss="softmax", class_agnostic_masks=True)
    with pytest.raises(ValueError, match="mask_head"):
        make_heads(mask_head="unet")


# ---------------------------------------------------------------- the ablation switches reach the ops
# Each test fails if its RoIHeadsConfig switch were ignored: the pooled features (what the box head receives)
# and the mask loss are compared with the op or loss the switch names, and with what the other setting gives.

def pooled_features(heads, feats, boxes):
    """The RoI features the box head of `heads` receives for per-image `boxes` (a forward hook)."""
    seen = []
    handle = heads.box_head.register_forward_hook(lambda module, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        heads.box_branch(feats, boxes)
    handle.remove()
    return seen[0]


def one_level_heads(**kw):
    return make_heads(pool_levels=("p3",), **kw)  # every RoI from P3 (stride 8), as the stride studies do


def test_the_warp_switch_pools_with_roi_warp():
    feats, proposals, _, _ = heads_inputs()
    boxes = [proposals[0][:6] + 0.3, proposals[1][:4] + 0.7]  # corners off the stride-8 grid: warp rounds them
    warp = pooled_features(one_level_heads(pooler="warp"), feats, boxes)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    torch.testing.assert_close(warp, roi_warp(feats["p3"], rois, (7, 7), 1 / 8, 2))
    align = pooled_features(one_level_heads(pooler="align"), feats, boxes)
    assert (warp - align).abs().max() > 0.05  # the rounding of the RoI moves what is read


def test_the_max_switch_differs_from_avg_where_a_bin_is_not_constant():
    feats, _, _, _ = heads_inputs()
    feats = dict(feats)
    p3 = feats["p3"].clone()
    p3[:, :, :, :4] = 1.5  # the left half of P3 (image x < 32) is constant
    feats["p3"] = p3
    flat, busy = torch.tensor([[2.0, 4.0, 22.0, 50.0]]), torch.tensor([[36.0, 4.0, 62.0, 50.0]])
    for box, constant in ((flat, True), (busy, False)):
        avg = pooled_features(one_level_heads(pool_mode="avg"), feats, [box, torch.zeros(0, 4)])
        mx = pooled_features(one_level_heads(pool_mode="max"), feats, [box, torch.zeros(0, 4)])
        torch.testing.assert_close(mx, roi_align(feats["p3"], [box, torch.zeros(0, 4)], 7, 1 / 8, 2, mode="max"))
        if constant:
            torch.testing.assert_close(mx, avg)  # all samples equal: the max is the mean
        else:
            assert (mx >= avg - 1e-6).all() and (mx > avg + 1e-3).float().mean() > 0.9


def test_the_aligned_switch_shifts_the_samples_by_half_a_cell():
    # On a ramp f(y, x) = x bilinear sampling is exact, so each bin reads the mean x of its samples: aligned=True
    # samples half a feature cell to the left of aligned=False, so every output is exactly 0.5 smaller.
    feats, _, _, _ = heads_inputs()
    ramp = torch.arange(8.0).expand(2, 4, 8, 8).clone()  # P3 of a 64-pixel image: 8 x 8 cells, f = x
    feats = {**feats, "p3": ramp}
    boxes = [torch.tensor([[9.0, 11.0, 47.0, 45.0]]), torch.zeros(0, 4)]
    aligned = pooled_features(one_level_heads(aligned=True), feats, boxes)
    unaligned = pooled_features(one_level_heads(aligned=False), feats, boxes)
    torch.testing.assert_close(aligned, unaligned - 0.5)
    torch.testing.assert_close(aligned, roi_align(ramp, boxes, 7, 1 / 8, 2, aligned=True))


def test_the_softmax_switch_changes_the_mask_loss(monkeypatch):
    """Same weights, same sampling: only L_mask changes, and it is the multinomial cross-entropy of the mask
    logits over the classes (channel 0 the background) computed here by hand."""
    from minimaskrcnn import roi_heads as roi_heads_module

    feats, proposals, _, targets = heads_inputs()
    calls = []
    mask_loss = roi_heads_module.mask_loss
    monkeypatch.setattr(roi_heads_module, "mask_loss",
                        lambda *args: calls.append(args) or mask_loss(*args))
    losses = {}
    torch.manual_seed(0)
    sigmoid = make_heads(mask_loss="sigmoid")
    for kind in ("sigmoid", "softmax"):
        heads = make_heads(mask_loss=kind)
        heads.load_state_dict(sigmoid.state_dict())
        torch.manual_seed(1)  # the same RoIs sampled for both
        losses[kind] = heads.losses(feats, proposals, targets)
    assert losses["softmax"]["loss_classifier"] == losses["sigmoid"]["loss_classifier"]
    assert losses["softmax"]["loss_box"] == losses["sigmoid"]["loss_box"]
    assert abs(losses["softmax"]["loss_mask"] - losses["sigmoid"]["loss_mask"]) > 1e-3
    logits, labels, mask_targets_, kind = calls[-1]
    assert kind == "softmax"
    pixel_class = torch.where(mask_targets_ >= 0.5, labels[:, None, None], 0)  # (P, M, M)
    by_hand = -logits.log_softmax(dim=1).gather(1, pixel_class[:, None]).mean()
    torch.testing.assert_close(losses["softmax"]["loss_mask"], by_hand)
