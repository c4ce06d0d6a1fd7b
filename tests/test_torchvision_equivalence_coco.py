"""The model torchvision runs its COCO-trained weights with, at full scale, against ours on real photos.

torchvision's `maskrcnn_resnet50_fpn(weights=COCO_V1)` is not the model of tests/test_torchvision_equivalence.py:
it builds the ResNet with FrozenBatchNorm2d and then overwrites every frozen BN's eps with 0.0 (`overwrite_eps`),
the convention the Detectron weights were trained with. Here that construction, with random weights (the real
checkpoint is 170 MB and not available offline), is converted into `convert.coco_config()`, whose frozen BN has
eps 0 too, and both models run at the paper's scale: images resized to 800 pixels (at most 1333), 1000 proposals
per image after NMS, 100 detections, on two real photos of the shipped COCO sample.

Ties. Rows come sorted by decreasing score, and rows whose scores tie may come in any order: anchors over the
zero padding of the batch see the same features (`tied_order` of tests/test_torchvision_equivalence.py pairs such
rows, and only them). One place could need more than a permutation: the cut to the top 1000 proposals after NMS.
If the 1000th and the 1001st proposal tied, torchvision would keep whichever its unstable descending sort puts
first (`batched_nms` sorts with `sort(descending=True)`), and we the lower index (a stable sort), so the two
lists could end in different boxes of the same objectness. That cannot change what the model detects beyond
which of two equally scored proposals is refined, so the proposals are compared up to the last run of tied
scores (`common_prefix`): on these two photos that run is the single last proposal, and all others agree. The
detections, computed from all 1000 proposals, are then compared in full.
"""
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.mask_rcnn import MaskRCNN as TorchvisionMaskRCNN
from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozenBN

from minimaskrcnn.convert import coco_config, convert_torchvision_maskrcnn, load_state_dict_strict
from minimaskrcnn.data import CocoDataset
from minimaskrcnn.model import MaskRCNN
from minimaskrcnn.resnet import FrozenBatchNorm2d
from test_torchvision_equivalence import TOL, randomize, run_both, tied_order

pytestmark = pytest.mark.slow
PHOTOS = (1, 2)  # two val2017 photos of the sample, one landscape, one portrait: the batch is padded


def torchvision_coco_model() -> nn.Module:
    """maskrcnn_resnet50_fpn as torchvision builds it for weights=COCO_V1, without downloading them."""
    resnet = torchvision.models.resnet50(weights=None, norm_layer=TVFrozenBN)
    model = TorchvisionMaskRCNN(_resnet_fpn_extractor(resnet, 3), num_classes=91)
    overwrite_eps(model, 0.0)
    return randomize(model).eval()  # non-trivial statistics: a wrong conversion or eps would show


@pytest.fixture(scope="module")
def runs(coco_root):
    torch.manual_seed(0)
    tv = torchvision_coco_model()
    assert {m.eps for m in tv.modules() if isinstance(m, TVFrozenBN)} == {0.0}
    ours = MaskRCNN(coco_config()).eval()
    assert {m.eps for m in ours.modules() if isinstance(m, FrozenBatchNorm2d)} == {0.0}
    load_state_dict_strict(ours, convert_torchvision_maskrcnn(tv.state_dict()), "maskrcnn_resnet50_fpn COCO_V1")
    photos = CocoDataset(coco_root, "val2017")
    images = [photos[i][0] for i in PHOTOS]
    both = run_both(tv, ours, images)
    return dict(images=images, tv=both["tv"], ours=both["out"].detections, seen=both["seen"], mine=both["mine"],
                tv_proposals=both["tv_selected"], proposals=both["selected"])


def common_prefix(scores, ref_scores, tie=1e-6) -> int:
    """How many leading rows two lists of decreasing scores must share: all but the last run of tied scores
    (within `tie`), the run that may cross the top-n cut."""
    tail = (scores <= scores[-1] + tie) | (ref_scores <= ref_scores[-1] + tie)
    return int(torch.nonzero(tail)[0])


def test_full_scale_settings(runs):
    for image, det in zip(runs["images"], runs["ours"]):
        assert max(image.shape[1:]) == 640  # real photos at COCO's size, resized to 800 by both models
        assert det["masks"].shape[1:] == image.shape[1:]
    for b in runs["proposals"][0]:
        assert b.shape == (1000, 4)
    assert [len(d["boxes"]) for d in runs["ours"]] == [100, 100]


def test_rpn_head_agrees(runs):
    for a, b in zip(runs["mine"]["rpn_head"][0] + runs["mine"]["rpn_head"][1],
                    runs["seen"]["rpn_head"][0] + runs["seen"]["rpn_head"][1]):
        torch.testing.assert_close(a, b, **TOL)


def test_proposals_agree_up_to_ties_at_the_cut(runs):
    (tv_boxes, tv_scores), (boxes, scores) = runs["tv_proposals"], runs["proposals"]
    for b, s, rb, rs in zip(boxes, scores, tv_boxes, tv_scores):
        torch.testing.assert_close(s, rs, **TOL)  # the same scores, also in the tied tail
        k = common_prefix(s, rs)
        assert k >= 900, k  # only a short tail of equal scores may differ
        order = tied_order(b[:k], s[:k], rb[:k], rs[:k])
        torch.testing.assert_close(b[:k], rb[:k][order], **TOL)


def test_detections_and_masks_agree(runs):
    for ours, ref, final, tv_final, image in zip(runs["mine"]["roi_heads"], runs["seen"]["roi_heads"],
                                                 runs["ours"], runs["tv"], runs["images"]):
        order = tied_order(ours["boxes"], ours["scores"], ref["boxes"], ref["scores"])
        torch.testing.assert_close(ours["boxes"], ref["boxes"][order], **TOL)
        assert torch.equal(ours["labels"], ref["labels"][order])
        torch.testing.assert_close(ours["masks"], ref["masks"][order, 0], **TOL)
        torch.testing.assert_close(final["boxes"], tv_final["boxes"][order], **TOL)
        ious = []
        for a, b in zip(final["masks"] >= 0.5, tv_final["masks"][order, 0] >= 0.5):
            union = (a | b).sum().item()
            ious.append(1.0 if union == 0 else (a & b).sum().item() / union)
        assert min(ious) >= 0.98, min(ious)
        assert final["masks"].shape[1:] == image.shape[1:]
