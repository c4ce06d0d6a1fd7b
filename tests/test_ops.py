"""Box geometry, the box parameterization and NMS (ops/boxes.py, ops/nms.py) against torchvision.ops and
torchvision's BoxCoder on random boxes, plus hand-computed cases: degenerate IoUs, the delta clamp, tied
scores, identical boxes, an IoU exactly at the threshold; and bad arguments."""
import math

import pytest
import torch
import torchvision.ops
from torchvision.models.detection._utils import BoxCoder

from minimaskrcnn.ops import (batched_nms, box_area, box_iou, clip_boxes, decode_boxes, encode_boxes, nms,
                              remove_small_boxes)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
DTYPES = [torch.float32, torch.float64]


def random_boxes(gen, n, size=100.0, dtype=torch.float32, max_side=0.4, min_side=0.0):
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * size
    wh = min_side * size + torch.rand(n, 2, generator=gen, dtype=torch.float64) * (max_side - min_side) * size
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def clustered_boxes(gen, n, clusters=20, size=800.0, dtype=torch.float32):
    """RPN-like: boxes jittered around a few objects, so that NMS has real work to do."""
    centers = random_boxes(gen, clusters, size, torch.float64, max_side=0.3)
    pick = torch.randint(clusters, (n,), generator=gen)
    wh = (centers[pick, 2:] - centers[pick, :2]).repeat(1, 2)
    jitter = torch.randn(n, 4, generator=gen, dtype=torch.float64) * 0.1 * wh
    boxes = centers[pick] + jitter
    return torch.cat([torch.min(boxes[:, :2], boxes[:, 2:]), torch.max(boxes[:, :2], boxes[:, 2:])], 1).to(dtype)


# --- box geometry ---

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_box_geometry_matches_torchvision(device, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = random_boxes(gen, 30, dtype=dtype).to(device), random_boxes(gen, 20, dtype=dtype).to(device) - 10
    torch.testing.assert_close(box_area(a), torchvision.ops.box_area(a))
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b))
    torch.testing.assert_close(clip_boxes(b, (50, 70)), torchvision.ops.clip_boxes_to_image(b, (50, 70)))
    torch.testing.assert_close(clip_boxes(b.view(2, 10, 4), (50, 70)).view(20, 4), clip_boxes(b, (50, 70)))
    assert torch.equal(remove_small_boxes(a, 12.0), torchvision.ops.remove_small_boxes(a, 12.0))


def test_iou_by_hand_and_of_degenerate_boxes():
    a = torch.tensor([[0, 0, 10, 10], [5, 5, 5, 5], [3, 0, 3, 8.0]])  # a box, a point, a vertical line
    b = torch.tensor([[5, 0, 15, 10], [5, 5, 5, 5], [20, 20, 30, 30.0]])
    iou = box_iou(a, b)
    assert not iou.isnan().any()
    assert iou[0].tolist() == pytest.approx([50 / 150, 0.0, 0.0])  # half overlap: 50 / (100 + 100 - 50)
    assert iou[1:].abs().max() == 0  # no area, no overlap; torchvision gives NaN for point vs point
    assert box_area(torch.tensor([[0, 0, 4, 3.0], [2, 2, 1, 5]])).tolist() == [12.0, 0.0]  # inverted: 0


# --- box parameterization ---

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_match_torchvision_box_coder(device, dtype, weights):
    gen = torch.Generator().manual_seed(0)
    # sides 10 to 40 pixels: no size ratio reaches the clamp (62.5), so decoding inverts encoding
    gt, proposals = (random_boxes(gen, 40, dtype=dtype, min_side=0.1).to(device) for _ in range(2))
    coder = BoxCoder(weights)
    deltas = encode_boxes(gt, proposals, weights)
    torch.testing.assert_close(deltas, coder.encode_single(gt, proposals))
    many = torch.randn(40, 4 * 3, generator=gen, dtype=dtype).to(device)  # 3 classes, (N, 4K)
    many[0, 2], many[1, 7] = 20.0, 30.0  # far past the clamp
    decoded = decode_boxes(many, proposals, weights)
    assert decoded.shape == (40, 12)
    torch.testing.assert_close(decoded, coder.decode_single(many, proposals))
    # round trip: decoding the targets gives back the ground truth
    torch.testing.assert_close(decode_boxes(deltas, proposals, weights), gt, rtol=1e-5, atol=1e-4)


def test_decode_by_hand_and_the_clamp():
    proposal = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # center (5, 10), 10 x 20
    deltas = torch.tensor([[0.1, -0.2, math.log(2.0), 0.0, 0.0, 0.0, 50.0, -50.0]])  # 2 classes
    boxes = decode_boxes(deltas, proposal)
    # class 0: center (5 + 0.1 * 10, 10 - 0.2 * 20) = (6, 6), size (20, 20)
    torch.testing.assert_close(boxes[0, :4], torch.tensor([-4.0, -4.0, 16.0, 16.0]))
    # class 1: dw clamped at log(1000 / 16): the width grows 62.5 times, not e^50; dh = -50 is not clamped
    torch.testing.assert_close(boxes[0, 4:], torch.tensor([5 - 312.5, 10.0, 5 + 312.5, 10.0]), atol=1e-3, rtol=0)
    weights = (10.0, 10.0, 5.0, 5.0)
    assert encode_boxes(torch.tensor([[-4.0, -4.0, 16.0, 16.0]]), proposal, weights)[0].tolist() == \
        pytest.approx([1.0, -2.0, 5 * math.log(2.0), 0.0])


# --- NMS ---

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed, threshold", [(0, 0.3), (1, 0.5), (2, 0.7)])
def test_nms_matches_torchvision(device, dtype, seed, threshold):
    gen = torch.Generator().manual_seed(seed)
    # 400 clustered boxes take nms two steps on the CPU (a block of 256, then the boxes still in play)
    for boxes in (random_boxes(gen, 150, dtype=dtype), clustered_boxes(gen, 400, dtype=dtype)):
        scores = torch.rand(len(boxes), generator=gen, dtype=dtype)
        boxes, scores = boxes.to(device), scores.to(device)
        keep = nms(boxes, scores, threshold)
        assert keep.dtype == torch.int64 and keep.device == boxes.device
        assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
        groups = torch.randint(4, (len(boxes),), generator=gen).to(device)
        assert torch.equal(batched_nms(boxes, scores, groups, threshold),
                           torchvision.ops.batched_nms(boxes, scores, groups, threshold))


def test_nms_by_hand_ties_identical_boxes_and_the_threshold():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10.0]])
    # all scores tied: the lower index wins; box 1 (IoU 0.82 with 0) and box 3 (identical to 0) go
    assert nms(boxes, torch.ones(4), 0.5).tolist() == [0, 2]
    # identical boxes: only the best-scoring one stays, whatever its index
    assert nms(boxes, torch.tensor([0.1, 0.2, 0.3, 0.9]), 0.5).tolist() == [3, 2]
    # an IoU exactly at the threshold does not suppress (IoU of these two: 50 / 100 = 0.5)
    half = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5.0]])
    assert nms(half, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(half, torch.tensor([0.9, 0.8]), 0.49).tolist() == [0]
    # groups never suppress each other; the result is in decreasing score order
    assert batched_nms(boxes, torch.tensor([0.1, 0.2, 0.3, 0.9]), torch.tensor([0, 1, 1, 1]), 0.5).tolist() == [3, 2, 0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).tolist() == []


def test_nms_long_chain_of_suppressions_across_blocks():
    """Boxes sliding by 2 pixels: IoU 8/12 with the next, 6/14 with the one after. At 0.5 each kept box
    suppresses only its successor, which then cannot suppress the next: every other box stays. The
    longest possible chain for the block-wise fixed point, over several blocks."""
    x = 2.0 * torch.arange(300.0)
    boxes = torch.stack([x, torch.zeros(300), x + 10, torch.full((300,), 10.0)], dim=1)
    scores = torch.linspace(1, 0, 300)
    assert nms(boxes, scores, 0.5).tolist() == list(range(0, 300, 2))
    for threshold in (0.2, 0.4, 0.7):
        assert torch.equal(nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))


# --- bad arguments ---

def test_bad_arguments_raise_value_errors_naming_the_argument():
    good, bad = torch.zeros(3, 4), torch.zeros(3, 5)
    for call, name in [
        (lambda: box_area(bad), "boxes"), (lambda: box_iou(bad, good), "boxes1"),
        (lambda: box_iou(good, bad), "boxes2"),
        (lambda: clip_boxes(bad, (5, 5)), "boxes"), (lambda: remove_small_boxes(bad, 1.0), "boxes"),
        (lambda: encode_boxes(good, good[:2]), "pair up"), (lambda: encode_boxes(bad, good), "gt_boxes"),
        (lambda: decode_boxes(torch.zeros(3, 6), good), "deltas"), (lambda: decode_boxes(good, bad), "proposals"),
        (lambda: nms(bad, torch.zeros(3), 0.5), "boxes"), (lambda: nms(good, torch.zeros(4), 0.5), "scores"),
        (lambda: nms(good, torch.zeros(3, device="meta"), 0.5), "scores on meta"),
        (lambda: batched_nms(good, torch.zeros(3), torch.zeros(2), 0.5), "idxs"),
    ]:
        with pytest.raises(ValueError, match=name):
            call()
