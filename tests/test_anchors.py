"""Anchors and FPN level assignment (anchors.py) against torchvision's AnchorGenerator and LevelMapper, and
hand-computed cases (the anchor algebra w * h = size^2, h / w = ratio; Eq. 1 of the FPN paper)."""
import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.poolers import LevelMapper

from minimaskrcnn.anchors import base_anchors, grid_anchors, num_anchors
from minimaskrcnn.poolers import assign_fpn_levels

FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))
RATIOS = (0.5, 1.0, 2.0)


@pytest.mark.parametrize("image_size", [(800, 1216), (800, 1333), (37, 50)])
def test_grid_anchors_match_torchvision_anchor_generator_on_every_fpn_level(image_size):
    """P2-P6 for the padded image; torchvision's stride is image size // feature size, per axis."""
    H, W = image_size
    feature_sizes = [(math.ceil(H / s), math.ceil(W / s)) for s in (4, 8, 16, 32, 64)]
    generator = AnchorGenerator(FPN_SIZES, (RATIOS,) * 5)
    images = ImageList(torch.zeros(1, 3, H, W), [(H, W)])
    theirs = generator(images, [torch.zeros(1, 1, h, w) for h, w in feature_sizes])[0]
    ours = [grid_anchors(sizes, RATIOS, (h, w), (H // h, W // w)) for sizes, (h, w) in zip(FPN_SIZES, feature_sizes)]
    assert [len(a) for a in ours] == [h * w * 3 for h, w in feature_sizes]
    assert ours[0].dtype == torch.float32
    assert torch.equal(torch.cat(ours), theirs)


def test_base_anchors_match_torchvision_for_several_sizes_per_level():
    sizes, ratios = (16, 45, 128), (0.25, 0.5, 1.0, 3.0)
    theirs = AnchorGenerator().generate_anchors(list(sizes), list(ratios))
    assert torch.equal(base_anchors(sizes, ratios), theirs)
    assert num_anchors(sizes, ratios) == 12


def test_anchors_by_hand():
    # size 32, ratio 0.5 (h / w): w = 32 / sqrt(0.5) = 45.25, h = 32 * sqrt(0.5) = 22.63; halves rounded to 23, 11.
    # Ratio-major order: (r 0.5, s 32), (r 0.5, s 64), (r 1, s 32), (r 1, s 64).
    expected_base = [[-23, -11, 23, 11], [-45, -23, 45, 23], [-16, -16, 16, 16], [-32, -32, 32, 32]]
    assert base_anchors((32, 64), (0.5, 1.0)).tolist() == expected_base
    # a 2x3 map of stride (10, 20): position (y, x) shifts by (20 x, 10 y); rows are position-major
    anchors = grid_anchors((32,), (1.0,), (2, 3), (10, 20))
    assert anchors.tolist() == [[-16 + 20 * x, -16 + 10 * y, 16 + 20 * x, 16 + 10 * y]
                                for y in range(2) for x in range(3)]
    anchors = grid_anchors((32, 64), (0.5, 1.0), (2, 2), 16).view(2, 2, 4, 4)  # (H, W, A, 4)
    assert anchors[1, 0].tolist() == [[a[0], a[1] + 16, a[2], a[3] + 16] for a in expected_base]
    assert grid_anchors((32,), RATIOS, (0, 5), 4).shape == (0, 4)


def test_grid_anchors_bad_arguments():
    for kwargs in [dict(stride=0), dict(stride=(4, -1)), dict(feature_size=(-1, 2))]:
        with pytest.raises(ValueError, match="stride|feature_size"):
            grid_anchors((32,), RATIOS, **{"feature_size": (2, 2), "stride": 4, **kwargs})
    with pytest.raises(ValueError, match="sizes"):
        grid_anchors((), RATIOS, (2, 2), 4)
    with pytest.raises(ValueError, match="aspect_ratios"):
        grid_anchors((32,), (0.0,), (2, 2), 4)


# --- FPN level assignment ---

def square(side):
    return [10.0, 20.0, 10.0 + side, 20.0 + side]


def test_assign_fpn_levels_by_hand():
    boxes = torch.tensor([square(224), square(112), square(448), square(223), square(111), square(56),
                          square(10), square(2000), [0, 0, 112, 448.0], square(0)])
    # k = floor(4 + log2(side / 224)) clamped to [2, 5], returned as k - 2:
    # 224 -> P4; 112 -> P3; 448 -> P5; 223 -> P3 (just under); 111 -> P2; 56 -> P2; 10 -> P2 (clamped);
    # 2000 -> P7, clamped to P5; 112 x 448 has sqrt(wh) = 224 -> P4; an empty box -> the finest level
    assert assign_fpn_levels(boxes, 2, 5).tolist() == [2, 1, 3, 1, 0, 0, 0, 3, 2, 0]
    assert assign_fpn_levels(boxes[:3], 3, 4).tolist() == [1, 0, 1]  # only P3, P4 present
    assert assign_fpn_levels(boxes[:0], 2, 5).dtype == torch.int64


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_assign_fpn_levels_matches_torchvision_level_mapper(seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    side = torch.exp(torch.empty(500, 2).uniform_(0, math.log(1200), generator=gen))  # log-uniform 1..1200
    xy = torch.rand(500, 2, generator=gen) * 800
    boxes = torch.cat([xy, xy + side], dim=1).to(dtype)
    boxes[:6] = torch.tensor([square(s) for s in (56, 112, 224, 448, 896, 1792)], dtype=dtype)  # boundaries
    ours = assign_fpn_levels(boxes, 2, 5)
    assert torch.equal(ours, LevelMapper(2, 5)([boxes]))
    assert set(ours.tolist()) == {0, 1, 2, 3}


def test_assign_fpn_levels_bad_arguments():
    with pytest.raises(ValueError, match="boxes"):
        assign_fpn_levels(torch.zeros(3, 5), 2, 5)
    with pytest.raises(ValueError, match="k_min"):
        assign_fpn_levels(torch.zeros(3, 4), 5, 2)
