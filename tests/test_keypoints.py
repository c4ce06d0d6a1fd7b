"""The keypoint branch (keypoint_head.py, losses.keypoint_loss, the RoI heads and model with it): targets, loss and
inference against torchvision's keypoints_to_heatmap, keypointrcnn_loss and heatmaps_to_keypoints, hand-computed
cells and keypoints, the head against torchvision's predictor, the branch on and off in the RoI heads and the
model, keypoints through the model's resizing, and a short run on the keypoint shapes in which the loss falls."""
import dataclasses
import math
import time

import pytest
import torch
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_keypoints

from minimaskrcnn.config import RoIHeadsConfig, TransformConfig, cpu_small, cpu_small_keypoints, keypoint_r50_fpn
from minimaskrcnn.data import ShapesDataset, collate
from minimaskrcnn.keypoint_head import KeypointPredictor, heatmaps_to_keypoints, keypoint_targets
from minimaskrcnn.losses import keypoint_loss
from minimaskrcnn.model import LOSS_NAMES, MaskRCNN, loss_names
from minimaskrcnn.roi_heads import RoIHeads
from minimaskrcnn.transform import ImageTransform

FPN_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def random_case(P=40, K=5, seed=0):
    """Random RoIs and keypoints around them: some inside, some outside, some exactly on the right or bottom
    edge, some not labelled (v = 0)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(P, 2, generator=g) * 50
    rois = torch.cat([xy, xy + 5 + torch.rand(P, 2, generator=g) * 40], dim=1)  # (P, 4)
    keypoints = torch.zeros(P, K, 3)
    keypoints[..., :2] = rois[:, None, :2] - 10 + torch.rand(P, K, 2, generator=g) * (rois[:, None, 2:] - rois[:, None, :2] + 20)
    keypoints[:, 0, 0] = rois[:, 2]  # on the right edge
    keypoints[:, 1, 1] = rois[:, 3]  # on the bottom edge
    keypoints[..., 2] = torch.randint(0, 3, (P, K), generator=g).float()
    return keypoints, rois


def test_keypoint_targets_equal_torchvision():
    keypoints, rois = random_case()
    cells, valid = keypoint_targets(keypoints, rois, 56)
    ref_cells, ref_valid = tv_roi_heads.keypoints_to_heatmap(keypoints, rois, 56)
    assert torch.equal(valid, ref_valid.bool()) and torch.equal(cells, ref_cells)
    inside = ((keypoints[..., :2] >= rois[:, None, :2]) & (keypoints[..., :2] <= rois[:, None, 2:])).all(dim=2)
    assert torch.equal(valid, inside & (keypoints[..., 2] > 0))  # visible and inside the RoI, edges included
    assert 0 < valid.sum() < valid.numel() and cells[~valid].eq(0).all()


def test_keypoint_targets_by_hand():
    rois = torch.tensor([[10.0, 20.0, 38.0, 48.0]])  # 28 x 28 pixels: 2 grid cells of 14 pixels
    keypoints = torch.tensor([[[10.0, 20.0, 2], [24.0, 47.9, 1], [38.0, 48.0, 2], [9.9, 30.0, 2], [30.0, 30.0, 0]]])
    cells, valid = keypoint_targets(keypoints, rois, 2)
    assert valid.tolist() == [[True, True, True, False, False]]
    assert cells.tolist() == [[0, 1 * 2 + 1, 1 * 2 + 1, 0, 0]]  # (x, y) cells (0, 0), (1, 1), the edge in (1, 1)


def test_keypoint_loss_equals_torchvision_and_the_written_out_softmax():
    g = torch.Generator().manual_seed(1)
    keypoints, rois = random_case(P=12, K=4, seed=1)
    heatmaps = torch.randn(12, 4, 8, 8, generator=g)
    cells, valid = keypoint_targets(keypoints, rois, 8)
    loss = keypoint_loss(heatmaps, cells, valid)
    ref = tv_roi_heads.keypointrcnn_loss(heatmaps, [rois[:5], rois[5:]], [keypoints[:5], keypoints[5:]],
                                         [torch.arange(5), torch.arange(7)])
    torch.testing.assert_close(loss, ref)
    terms = [-heatmaps[p, k].reshape(-1).log_softmax(0)[cells[p, k]] for p, k in valid.nonzero().tolist()]
    torch.testing.assert_close(loss, torch.stack(terms).mean())  # a mean over the valid keypoints


def test_keypoint_loss_without_a_valid_keypoint_is_zero_and_connected():
    heatmaps = torch.randn(3, 2, 4, 4, requires_grad=True)
    loss = keypoint_loss(heatmaps, torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0 and heatmaps.grad is not None and heatmaps.grad.eq(0).all()


def test_heatmaps_to_keypoints_equal_torchvision():
    g = torch.Generator().manual_seed(2)
    heatmaps = torch.randn(9, 5, 14, 14, generator=g)
    xy = torch.rand(9, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.tensor([0.4, 0.3]) + torch.rand(9, 2, generator=g) * 60], dim=1)
    boxes[0, 2:] = boxes[0, :2] + 0.5  # under a pixel: resized to 1 x 1
    keypoints, scores = heatmaps_to_keypoints(heatmaps, boxes)
    ref, ref_scores = tv_roi_heads.heatmaps_to_keypoints(heatmaps, boxes)
    torch.testing.assert_close(keypoints, ref)
    torch.testing.assert_close(scores, ref_scores)
    assert keypoints.shape == (9, 5, 3) and keypoints[..., 2].eq(1).all()


def test_heatmaps_to_keypoints_by_hand():
    """A box of 56 x 56 pixels and a 56 x 56 heatmap: the resize is the identity, so the keypoint is the centre of
    the peak cell in the box, and its score the peak logit."""
    heatmaps = torch.zeros(1, 2, 56, 56)
    heatmaps[0, 0, 7, 5] = 3.0  # row 7, column 5
    heatmaps[0, 1, 50, 40] = 2.0
    keypoints, scores = heatmaps_to_keypoints(heatmaps, torch.tensor([[10.0, 20.0, 66.0, 76.0]]))
    assert keypoints[0].tolist() == [[15.5, 27.5, 1.0], [50.5, 70.5, 1.0]]
    assert scores[0].tolist() == [3.0, 2.0]


def test_predictor_is_torchvision_s_and_makes_56x56_heatmaps():
    torch.manual_seed(0)
    ours, ref = KeypointPredictor(16, 17), KeypointRCNNPredictor(16, 17)
    ours.load_state_dict(ref.state_dict())  # the same names
    x = torch.randn(3, 16, 14, 14)
    assert ours(x).shape == (3, 17, 56, 56)
    torch.testing.assert_close(ours(x), ref(x))


def make_heads(**kw):
    cfg = RoIHeadsConfig(batch_size_per_image=32, box_head_dim=32, mask_head_channels=8, detections_per_img=5,
                         num_keypoints=3, keypoint_head_channels=8, keypoint_head_convs=2, **kw)
    return RoIHeads(cfg, num_classes=3, in_channels=4, strides=FPN_STRIDES)


def heads_inputs():
    g = torch.Generator().manual_seed(3)
    feats = {name: torch.randn(2, 4, 64 // s, 64 // s, generator=g) for name, s in FPN_STRIDES.items()}
    proposals = [torch.tensor([[4.0 * i, 2.0 * i, 4.0 * i + 20, 2.0 * i + 24] for i in range(10)])] * 2
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 8:28] = 1
    keypoints = torch.tensor([[[10.0, 12.0, 2], [20.0, 25.0, 1], [0.0, 0.0, 0]]])
    targets = [{"boxes": torch.tensor([[8.0, 10.0, 28.0, 30.0]]), "labels": torch.tensor([2]), "masks": masks,
                "keypoints": keypoints},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                "masks": torch.zeros(0, 64, 64, dtype=torch.uint8), "keypoints": torch.zeros(0, 3, 3)}]
    return feats, proposals, [(64, 64), (60, 64)], targets


@pytest.mark.parametrize("mask_branch", [True, False])
def test_heads_with_keypoints_train_and_detect(mask_branch):
    torch.manual_seed(0)
    heads = make_heads(mask_branch=mask_branch)
    assert (heads.mask_head is None) == (not mask_branch)
    feats, proposals, sizes, targets = heads_inputs()
    if not mask_branch:
        targets = [{k: v for k, v in t.items() if k != "masks"} for t in targets]  # not needed
    _, losses = heads(feats, proposals, sizes, targets)
    assert list(losses) == ["loss_classifier", "loss_box"] + ["loss_mask"] * mask_branch + ["loss_keypoint"]
    assert losses["loss_keypoint"].item() > 0.5 * math.log(14 * 14 * 4 * 4)  # untrained: about log(56^2)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in heads.parameters())
    heads.eval()
    with torch.no_grad():
        heads.box_predictor.cls_score.bias[1:] = 5.0  # every RoI a confident detection
        detections, _ = heads(feats, proposals, sizes)
    for d in detections:
        assert d["keypoints"].shape == (5, 3, 3) and d["keypoint_scores"].shape == (5, 3)
        assert ("masks" in d) == mask_branch
        inside = (d["keypoints"][..., :2] >= d["boxes"][:, None, :2]) & (d["keypoints"][..., :2] <= d["boxes"][:, None, 2:])
        assert inside.all()  # each keypoint lies in its own box


def test_model_targets_and_loss_names():
    torch.manual_seed(0)
    cfg = cpu_small_keypoints()
    model = MaskRCNN(cfg)
    images, targets = collate([ShapesDataset(2, 64, seed=1, keypoints=True)[i] for i in range(2)])
    assert loss_names(cfg) == LOSS_NAMES + ("loss_keypoint",) and loss_names(cpu_small()) == LOSS_NAMES
    assert loss_names(keypoint_r50_fpn()) == LOSS_NAMES[:4] + ("loss_keypoint",)
    assert tuple(model(images, targets).losses) == loss_names(cfg)
    with pytest.raises(ValueError, match=r'targets\[0\] needs "keypoints" \(G, 11, 3\) .*; got none'):
        model(images, [{k: v for k, v in t.items() if k != "keypoints"} for t in targets])
    with pytest.raises(ValueError, match=r"model's 11 keypoint types; got shape \(\d+, 4, 3\)"):
        model(images, [dict(t, keypoints=t["keypoints"][:, :4]) for t in targets])
    with pytest.raises(ValueError, match=r'targets\[1\]\["keypoints"\] must be \(\d+, Kp, 3\) float'):
        model(images, [targets[0], dict(targets[1], keypoints=targets[1]["keypoints"].repeat(2, 1, 1))])
    no_masks = dataclasses.replace(cfg, roi_heads=dataclasses.replace(cfg.roi_heads, mask_branch=False))
    losses = MaskRCNN(no_masks)(images, [{k: v for k, v in t.items() if k != "masks"} for t in targets]).losses
    assert tuple(losses) == loss_names(no_masks)


def test_cpu_autocast_bf16_gives_float32_keypoint_loss_and_keypoints():
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small_keypoints())
    images, targets = collate([ShapesDataset(2, 64, seed=1, keypoints=True)[i] for i in range(2)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(images, targets).losses["loss_keypoint"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.roi_heads.box_predictor.cls_score.bias[1:] = 3.0  # detections from a random model
        (d, _) = model(images).detections
    assert d["keypoints"].shape[0] > 0 and d["keypoints"].dtype == d["keypoint_scores"].dtype == torch.float32
    assert ((d["keypoints"][..., :2] >= 0) & (d["keypoints"][..., :2] <= 64)).all()  # in the original image


def test_keypoints_are_resized_in_and_out_like_torchvision():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 150, 200, generator=g), torch.rand(3, 170, 130, generator=g)]
    keypoints = [torch.rand(2, 4, 3, generator=g) * torch.tensor([200.0, 150, 2]),
                 torch.rand(1, 4, 3, generator=g) * torch.tensor([130.0, 170, 2])]
    targets = [{"boxes": torch.tensor([[1.0, 2, 50, 60]] * len(k)), "labels": torch.ones(len(k), dtype=torch.long),
                "keypoints": k} for k in keypoints]
    ours = ImageTransform(TransformConfig(min_size=96, max_size=160))
    batch, resized = ours(images, targets)
    tv = GeneralizedRCNNTransform(96, 160, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).train()
    _, tv_targets = tv(images, [dict(t) for t in targets])
    for a, b in zip(resized, tv_targets):
        torch.testing.assert_close(a["keypoints"], b["keypoints"])
    detections = [{"boxes": t["boxes"], "keypoints": t["keypoints"]} for t in resized]
    back = ours.postprocess(detections, batch)
    for b, k, size, original in zip(back, keypoints, batch.image_sizes, batch.original_sizes):
        torch.testing.assert_close(b["keypoints"], resize_keypoints(resize_keypoints(k, original, size), size, original))
        torch.testing.assert_close(b["keypoints"], k, rtol=1e-5, atol=1e-4)  # there and back again


def ground_truth_keypoint_loss(model, images, targets) -> float:
    """The keypoint loss of the model in eval mode with the ground-truth boxes as the RoIs: no sampling, so the
    same number for the same weights."""
    model.eval()
    with torch.no_grad():
        batch, resized = model.transform(images, targets)
        boxes = [t["boxes"] for t in resized]
        heatmaps = model.roi_heads.keypoint_branch(model.backbone(batch.tensors), boxes)
        cells, valid = keypoint_targets(torch.cat([t["keypoints"] for t in resized]), torch.cat(boxes), 56)
    model.train()
    return keypoint_loss(heatmaps, cells, valid).item()


@pytest.mark.slow
def test_a_keypoint_model_learns_the_shapes_keypoints():
    """40 AdamW steps on two keypoint-shapes images (the keypoint branch alone, one thread, about 10 s). The
    keypoint loss on the ground-truth boxes starts near log(56^2) = 8.0, a heatmap that knows nothing, and ends
    under 1.5 (0.6 measured); the training loss, on every positive RoI, under 60% of where it started (it
    also holds loosely fitting RoIs, which clip or shift the shapes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        cfg = cpu_small_keypoints()
        cfg = dataclasses.replace(cfg, roi_heads=dataclasses.replace(cfg.roi_heads, mask_branch=False))
        model = MaskRCNN(cfg)
        images, targets = collate([ShapesDataset(2, keypoints=True, seed=7)[i] for i in range(2)])
        before = ground_truth_keypoint_loss(model, images, targets)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        start, curve = time.process_time(), []  # CPU time: what a busy machine does not stretch
        for _ in range(40):
            losses = model(images, targets).losses
            curve.append(losses["loss_keypoint"].item())
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        elapsed = time.process_time() - start
        after = ground_truth_keypoint_loss(model, images, targets)
    finally:
        torch.set_num_threads(threads)
    assert before > 0.8 * math.log(56 * 56) and after < 1.5, (before, after)
    assert sum(curve[-10:]) / 10 < 0.6 * curve[0], [round(v, 2) for v in curve]
    assert elapsed < 60
