"""The mask round trip of notebook 03 (probes.mask_round_trip): a ground-truth mask averaged into a feature map of
stride s, pooled at its box by RoIPool or RoIAlign, pasted back and thresholded. Hand-made cases, and a plain loop
transcription of every step (torchvision's rules for the ops and the pasting) on a tiny image."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minimaskrcnn import probes
from minimaskrcnn.data import ShapesDataset


def box_mask(height, width, box):
    """(1, H, W) uint8 mask of the pixels [x1, x2) x [y1, y2), and its (1, 4) box."""
    x1, y1, x2, y2 = box
    m = torch.zeros(1, height, width, dtype=torch.uint8)
    m[0, y1:y2, x1:x2] = 1
    return m, torch.tensor([box], dtype=torch.float32)


def test_a_box_on_the_grid_comes_back_through_roialign_at_stride_4():
    masks, boxes = box_mask(128, 128, (32, 16, 96, 80))  # edges on multiples of 4 (and of 16)
    out = probes.mask_round_trip(masks, boxes, 4, "align")
    assert out.iou.item() > 0.99
    assert out.masks.shape == (1, 128, 128) and out.masks.dtype == torch.bool
    np.testing.assert_allclose(out.cells, [64 / 4])  # sqrt(64 * 64) / 4


def test_roipool_loses_more_of_an_off_grid_box_at_every_coarser_stride():
    masks, boxes = box_mask(256, 256, (13, 21, 113, 101))  # 100 x 80 pixels, no edge on the grid
    pool = [probes.mask_round_trip(masks, boxes, s, "pool").iou.item() for s in (4, 8, 16, 32)]
    align = [probes.mask_round_trip(masks, boxes, s, "align").iou.item() for s in (4, 8, 16, 32)]
    assert pool == sorted(pool, reverse=True) and len(set(pool)) == 4, pool  # strictly falls with the stride
    assert pool[-1] < 0.7 < pool[0]
    assert all(a > p for a, p in zip(align, pool)), (align, pool)
    assert align[0] > 0.99


def test_cells_are_the_square_root_of_the_box_area_over_the_stride():
    masks, boxes = box_mask(64, 64, (4, 8, 40, 17))  # 36 x 9 pixels: sqrt = 18
    np.testing.assert_allclose(probes.mask_round_trip(masks, boxes, 8).cells, [18 / 8])
    np.testing.assert_allclose(probes.box_sizes(torch.tensor([[0.0, 0, 4, 9], [2, 2, 1, 5]])), [6.0, 0.0])


def test_no_objects():
    out = probes.mask_round_trip(torch.zeros(0, 32, 32, dtype=torch.uint8), torch.zeros(0, 4), 4, "pool")
    assert out.iou.shape == (0,) and out.masks.shape == (0, 32, 32)


# ---- a loop transcription of each step, written from torchvision's C++ / Python, on a tiny case ----

def loop_features(mask, s):
    H, W = mask.shape
    h, w = math.ceil(H / s), math.ceil(W / s)
    f = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            f[i, j] = mask[i * s:(i + 1) * s, j * s:(j + 1) * s].double().sum() / (s * s)  # zero padding
    return f


def loop_bilinear(f, y, x):
    H, W = f.shape
    if y < -1 or y > H or x < -1 or x > W:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    yh, xh = yl + 1, xl + 1
    if yl >= H - 1:
        yl = yh = H - 1
        y = float(yl)
    if xl >= W - 1:
        xl = xh = W - 1
        x = float(xl)
    ly, lx = y - yl, x - xl
    return ((1 - ly) * (1 - lx) * f[yl, xl] + (1 - ly) * lx * f[yl, xh] + ly * (1 - lx) * f[yh, xl]
            + ly * lx * f[yh, xh]).item()


def loop_roi_align(f, box, M, scale, g=2):  # aligned=True, average of g x g points per bin
    x1, y1, x2, y2 = [v * scale - 0.5 for v in box]
    bw, bh = (x2 - x1) / M, (y2 - y1) / M
    out = torch.zeros(M, M, dtype=torch.float64)
    for p in range(M):
        for q in range(M):
            total = 0.0
            for iy in range(g):
                for ix in range(g):
                    total += loop_bilinear(f, y1 + p * bh + (iy + 0.5) * bh / g, x1 + q * bw + (ix + 0.5) * bw / g)
            out[p, q] = total / (g * g)
    return out


def c_round(v):  # C's round(): halves away from zero
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def loop_roi_pool(f, box, M, scale):
    H, W = f.shape
    x1, y1, x2, y2 = [c_round(v * scale) for v in box]
    bh, bw = max(y2 - y1 + 1, 1) / M, max(x2 - x1 + 1, 1) / M
    out = torch.zeros(M, M, dtype=torch.float64)
    for p in range(M):
        for q in range(M):
            hs, he = min(max(math.floor(p * bh) + y1, 0), H), min(max(math.ceil((p + 1) * bh) + y1, 0), H)
            ws, we = min(max(math.floor(q * bw) + x1, 0), W), min(max(math.ceil((q + 1) * bw) + x1, 0), W)
            out[p, q] = 0.0 if he <= hs or we <= ws else f[hs:he, ws:we].max()
    return out


def loop_paste(m, box, H, W):  # torchvision's expand_masks, expand_boxes, paste_mask_in_image
    M = m.shape[-1]
    padded = F.pad(m, (1, 1, 1, 1))
    scale = (M + 2) / M
    x1, y1, x2, y2 = box
    cx, cy, wh, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
    bx0, by0, bx1, by1 = [int(v) for v in (cx - wh, cy - hh, cx + wh, cy + hh)]  # .to(int64): truncation
    w, h = max(bx1 - bx0 + 1, 1), max(by1 - by0 + 1, 1)
    resized = F.interpolate(padded[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    image = torch.zeros(H, W)
    xa, xb, ya, yb = max(bx0, 0), min(bx1 + 1, W), max(by0, 0), min(by1 + 1, H)
    image[ya:yb, xa:xb] = resized[ya - by0:yb - by0, xa - bx0:xb - bx0]
    return image


@pytest.mark.parametrize("pooler", ["pool", "align"])
@pytest.mark.parametrize("stride", [4, 8])
def test_agrees_with_a_loop_transcription_on_a_tiny_image(pooler, stride):
    H, W, M = 30, 37, 5
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    disc = ((xx - 12.3) ** 2 + (yy - 14.1) ** 2 <= 8.2 ** 2)
    triangle = (yy >= 3.4) & (yy <= 26.6) & ((xx - 27.9).abs() <= (yy - 3.4) / 2.5)
    masks = torch.stack([disc, triangle]).to(torch.uint8)  # (2, H, W)
    boxes = torch.tensor([[4.1, 5.9, 20.5, 22.3], [18.6, 3.4, 37.0, 26.6]])  # not on any grid
    out = probes.mask_round_trip(masks, boxes, stride, pooler, output_size=M)
    for k in range(2):
        f = loop_features(masks[k], stride)
        pool = loop_roi_pool if pooler == "pool" else loop_roi_align
        pooled = pool(f, boxes[k].tolist(), M, 1 / stride)
        back = loop_paste(pooled.float(), boxes[k].tolist(), H, W) >= 0.5
        truth = masks[k] > 0
        iou = (back & truth).sum().item() / (back | truth).sum().item()
        assert torch.equal(out.masks[k], back), (pooler, stride, k)
        assert out.iou[k].item() == pytest.approx(iou)
        assert 0.2 < iou < 1.0


def test_round_trip_dataset_is_mask_round_trip_on_every_image_and_object_sizes_scale_with_the_image():
    ds = ShapesDataset(3, image_size=64, seed=5)
    out = probes.round_trip_dataset(ds, strides=(4, 16), poolers=("pool", "align"))
    n = [len(ds[i][1]["boxes"]) for i in range(3)]
    assert out["image"].tolist() == [i for i in range(3) for _ in range(n[i])]
    for p in ("pool", "align"):
        for s in (4, 16):
            expected = torch.cat([probes.mask_round_trip(ds[i][1]["masks"], ds[i][1]["boxes"], s, p).iou
                                  for i in range(3)])
            torch.testing.assert_close(out["iou"][p, s], expected)
    sizes = torch.cat([probes.box_sizes(ds[i][1]["boxes"]) for i in range(3)])
    torch.testing.assert_close(out["size"], sizes)
    torch.testing.assert_close(probes.object_sizes(ds), sizes)
    torch.testing.assert_close(probes.object_sizes(ds, min_size=128), 2 * sizes)  # 64 -> 128 pixels
    assert probes.scaled_to((480, 640), 800) == (800, 1066) and probes.scaled_to((480, 640), None) == (480, 640)
    doubled = probes.round_trip_dataset(ds, strides=(8,), poolers=("align",), min_size=128)
    torch.testing.assert_close(doubled["size"], 2 * sizes)  # masks and boxes resized with the image


def test_binned_median_by_hand():
    x = torch.tensor([1.0, 1.5, 1.9, 2.0, 3.0, 7.9, 0.5, 9.0])
    y = torch.tensor([0.1, 0.3, 0.2, 0.9, 0.7, 0.8, 5.0, 5.0])  # 0.5 and 9.0 fall outside the edges
    centres, medians = probes.binned_median(x, y, [1.0, 2.0, 8.0], min_count=3)
    np.testing.assert_allclose(centres, [math.sqrt(2), 4.0])
    np.testing.assert_allclose(medians, [0.2, 0.8])  # [1, 2): 0.1, 0.3, 0.2; [2, 8): 0.9, 0.7, 0.8
    centres, _ = probes.binned_median(x, y, [1.0, 2.0, 8.0], min_count=4)
    assert len(centres) == 0


def test_resize_sample_is_the_models_resizing():
    ds = ShapesDataset(1, image_size=64, seed=1)
    image, target = ds[0]
    same = probes.resize_sample(image, target, None)
    assert same[0] is image and same[1] is target["masks"] and same[2] is target["boxes"]
    big, masks, boxes = probes.resize_sample(image, target, 96)
    assert big.shape == (3, 96, 96) and masks.shape[-2:] == (96, 96) and masks.dtype == torch.uint8
    torch.testing.assert_close(boxes, target["boxes"] * 1.5)
