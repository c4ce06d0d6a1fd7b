"""The keypoint model of Sec. 5 against torchvision's keypointrcnn_resnet50_fpn: random weights, converted into ours
(strict), give the same RPN outputs, proposals, detections, keypoint heatmaps and keypoints, at 1e-4.

As in tests/test_torchvision_equivalence.py (whose `run_both` reads both models' intermediates with hooks during one
whole forward each, and whose `tied_order` pairs rows only within runs of tied scores), at a small size: 192-pixel
images, 300 proposals and 10 detections per image, so that the eight 512-channel convs of the keypoint head run on
20 RoIs and the test takes seconds. The heatmaps are read at the keypoint predictors' outputs, in detection order.

A keypoint is an argmax over the pixels of a resized heatmap, so two heatmaps 1e-6 apart could in principle pick
two pixels whose values tie; on these images none does (the 340 keypoints agree), and the test asks for all of them.
"""
import dataclasses

import pytest
import torch
import torchvision

from minimaskrcnn.config import keypoint_r50_fpn
from minimaskrcnn.convert import convert_torchvision_maskrcnn, keypoint_coco_config, load_torchvision_keypointrcnn
from minimaskrcnn.model import MaskRCNN
from test_torchvision_equivalence import TOL, randomize, run_both, tied_order

MIN_SIZE, MAX_SIZE, POST_NMS, DETECTIONS, K = 192, 320, 300, 10, 17


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tv = torchvision.models.detection.keypointrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, num_keypoints=K, min_size=MIN_SIZE, max_size=MAX_SIZE,
        rpn_post_nms_top_n_test=POST_NMS, box_detections_per_img=DETECTIONS)
    tv = randomize(tv, lifted=1).eval()  # class 1, the person, above the score threshold
    cfg = keypoint_r50_fpn()
    cfg = dataclasses.replace(cfg, transform=dataclasses.replace(cfg.transform, min_size=MIN_SIZE, max_size=MAX_SIZE),
                              rpn=dataclasses.replace(cfg.rpn, post_nms_top_n_test=POST_NMS),
                              roi_heads=dataclasses.replace(cfg.roi_heads, detections_per_img=DETECTIONS))
    ours = MaskRCNN(cfg).eval()
    load_torchvision_keypointrcnn(ours, tv.state_dict())
    return tv, ours


@pytest.fixture(scope="module")
def runs(models):
    tv, ours = models
    heatmaps = {}
    hooks = [module.register_forward_hook(lambda m, i, out, name=name: heatmaps.__setitem__(name, out))
             for name, module in [("tv", tv.roi_heads.keypoint_predictor), ("ours", ours.roi_heads.keypoint_predictor)]]
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 200, 300, generator=g), torch.rand(3, 230, 170, generator=g)]
    try:
        both = run_both(tv, ours, images)
    finally:
        for h in hooks:
            h.remove()
    seen, mine = both["seen"], both["mine"]
    order = [tied_order(d["boxes"], d["scores"], r["boxes"], r["scores"])
             for d, r in zip(mine["roi_heads"], seen["roi_heads"])]
    return dict(both, order=order, heatmaps=heatmaps, sizes=[im.shape[1:] for im in images])


def test_conversion_is_strict_and_complete(models):
    tv, ours = models
    converted = convert_torchvision_maskrcnn(tv.state_dict())
    assert {k for k in converted if not k.endswith("num_batches_tracked")} == set(ours.state_dict())
    assert ours.roi_heads.mask_head is None and len(ours.roi_heads.keypoint_head.convs) == 8
    assert "roi_heads.keypoint_head.convs.7.weight" in converted  # torchvision's module 14


def test_the_coco_v1_config_and_a_wrong_number_of_keypoints(models):
    """keypoint_coco_config: keypoint_r50_fpn with torchvision's eps 0 of COCO_V1; 5 keypoints do not fit 17."""
    tv, _ = models
    cfg = keypoint_coco_config()
    assert cfg.backbone.frozen_bn_eps == 0.0
    assert dataclasses.replace(cfg, backbone=keypoint_r50_fpn().backbone) == keypoint_r50_fpn()
    load_torchvision_keypointrcnn(MaskRCNN(cfg), tv.state_dict())
    five = dataclasses.replace(cfg, roi_heads=dataclasses.replace(cfg.roi_heads, num_keypoints=5))
    with pytest.raises(ValueError, match=r"keypointrcnn_resnet50_fpn does not fit MaskRCNN:\n.*shape mismatches: "
                                         r"roi_heads.keypoint_predictor.kps_score_lowres.weight: got \(512, 17, 4, 4\)"):
        load_torchvision_keypointrcnn(MaskRCNN(five), tv.state_dict())


def test_rpn_and_proposals(runs):
    tv_logits, tv_deltas = runs["seen"]["rpn_head"]
    logits, deltas = runs["mine"]["rpn_head"]
    for a, b in zip(logits + deltas, tv_logits + tv_deltas):
        torch.testing.assert_close(a, b, **TOL)
    (tv_boxes, tv_scores), (proposals, scores) = runs["tv_selected"], runs["selected"]
    for ours, s, ref, ref_s in zip(proposals, scores, tv_boxes, tv_scores):
        assert ours.shape == (POST_NMS, 4)
        torch.testing.assert_close(ours, ref[tied_order(ours, s, ref, ref_s)], **TOL)


def test_detections(runs):
    for ours, ref, final, tv_final, order in zip(runs["mine"]["roi_heads"], runs["seen"]["roi_heads"],
                                                 runs["out"].detections, runs["tv"], runs["order"]):
        assert ours["boxes"].shape == (DETECTIONS, 4) and torch.equal(ours["labels"], torch.ones(DETECTIONS).long())
        torch.testing.assert_close(ours["boxes"], ref["boxes"][order], **TOL)
        torch.testing.assert_close(ours["scores"], ref["scores"][order], **TOL)
        torch.testing.assert_close(final["boxes"], tv_final["boxes"][order], **TOL)
        assert "masks" not in final and final["keypoints"].shape == (DETECTIONS, K, 3)


def test_keypoint_heatmaps(runs):
    ours, ref = runs["heatmaps"]["ours"], runs["heatmaps"]["tv"]
    assert ours.shape == ref.shape == (2 * DETECTIONS, K, 56, 56)
    order = torch.cat([o + i * DETECTIONS for i, o in enumerate(runs["order"])])  # rows: image 0, then image 1
    assert ref.std() > 1e-2  # random weights still give heatmaps that are not flat
    torch.testing.assert_close(ours, ref[order], **TOL)


def test_keypoints_agree(runs):
    """Before resizing (the RoI heads' output) and after (in original-image pixels): (x, y, 1) and scores."""
    for ours, ref, final, tv_final, order in zip(runs["mine"]["roi_heads"], runs["seen"]["roi_heads"],
                                                 runs["out"].detections, runs["tv"], runs["order"]):
        assert ours["keypoints"].shape == (DETECTIONS, K, 3) and ours["keypoint_scores"].shape == (DETECTIONS, K)
        torch.testing.assert_close(ours["keypoints"], ref["keypoints"][order], **TOL)
        torch.testing.assert_close(ours["keypoint_scores"], ref["keypoints_scores"][order], **TOL)
        torch.testing.assert_close(final["keypoints"], tv_final["keypoints"][order], **TOL)
        torch.testing.assert_close(final["keypoint_scores"], tv_final["keypoints_scores"][order], **TOL)
        assert final["keypoints"][..., 0].std() > 10  # keypoints all over the image, not one corner
