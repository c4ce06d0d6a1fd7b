"""Checks of roi_pool: Fast R-CNN's RoIPool (Sec. 2.1 there), the quantized baseline of Mask R-CNN Table 2c.

The reference loops over RoIs and bins with Python numbers, following torchvision's conventions:
1. the RoI's corners, times spatial_scale, are rounded to whole feature pixels, half away from zero;
2. the rounded RoI covers pixels x1..x2 inclusive (at least 1 pixel), cut into P x Q bins of real size;
3. bin b along an axis covers pixels floor(b * size / P) .. ceil((b + 1) * size / P) - 1 (edges rounded
   outward, so that neighbouring bins may share a pixel), clipped to the map;
4. a bin outputs the max of its pixels, per channel; a bin with no pixel (outside the map) outputs 0.
Bin edges are computed with whole numbers (size and P are integers), so no float rounding enters them.

Shape glossary:
  N: images; C: channels; H, W: map size; K: RoIs; P, Q: output height, width
"""
from __future__ import annotations

import math
from functools import partial

import torch

from .core import Component, input_gradient, mistake

ROUND = {"half_away": lambda v: math.copysign(math.floor(abs(v) + 0.5), v), "truncate": math.trunc,
         "half_even": round}


def pool_loops(input, boxes, output_size, spatial_scale=1.0, *, rounding="half_away", inclusive=True,
               bins="outward", empty=0.0):
    """input (N, C, H, W), boxes (K, 5) (batch_index, x1, y1, x2, y2) -> (K, C, P, Q).
    The keywords switch on known mistakes.
    Built from input's elements by indexing and amax, so autograd gives RoIPool's gradient too."""
    P, Q = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    out = []
    for n, *corners in boxes.tolist():
        x1, y1, x2, y2 = (int(ROUND[rounding](v * spatial_scale)) for v in corners)
        one = 1 if inclusive else 0
        height, width = max(y2 - y1 + one, 1), max(x2 - x1 + one, 1)
        rows = [_edges(p, height, P, y1, H, bins) for p in range(P)]
        cols = [_edges(q, width, Q, x1, W, bins) for q in range(Q)]
        bins_out = []
        for y_lo, y_hi in rows:
            for x_lo, x_hi in cols:
                region = input[int(n), :, y_lo:y_hi, x_lo:x_hi]  # (C, h, w)
                bins_out.append(region.amax(dim=(1, 2)) if region.numel() else input.new_full((C,), empty))
        out.append(torch.stack(bins_out, dim=1).reshape(C, P, Q))
    return torch.stack(out) if out else input.new_zeros(0, C, P, Q)


def _edges(b, size, bins, start, limit, rule):
    """Bin b of `bins` over `size` whole pixels from `start`: its pixel range [lo, hi), clipped to [0, limit]."""
    lo = (b * size) // bins  # floor(b * size / bins), exactly
    hi = -((-(b + 1) * size) // bins) if rule == "outward" else ((b + 1) * size) // bins  # ceil, or floor
    return min(max(lo + start, 0), limit), min(max(hi + start, 0), limit)


RAMP = torch.arange(16.0).reshape(1, 1, 4, 4)  # pixel (y, x) holds 4y + x: a bin's max is its bottom-right pixel

ROI_POOL = Component("roi_pool", "RoIPool, the quantized baseline (Fast R-CNN; Mask R-CNN Table 2c)",
                     {"roi_pool": pool_loops}, [
    mistake("your rounded RoI leaves out pixel x2: it covers pixels x1..x2 inclusive, width x2 - x1 + 1",
            roi_pool=partial(pool_loops, inclusive=False)),
    mistake("your RoIPool rounds the RoI's corners half to even (Python's round(), torch.round: 2.5 -> 2); "
            "RoIPool rounds half away from zero (2.5 -> 3): floor(x + 0.5) for x >= 0",
            roi_pool=partial(pool_loops, rounding="half_even")),
    mistake("your RoIPool rounds the RoI with floor/truncation (int(), math.floor) instead of "
            "round-half-away-from-zero (0.6 -> 1, 2.5 -> 3)", roi_pool=partial(pool_loops, rounding="truncate")),
    mistake("your bins' ends are rounded down; round each bin's start down and its end up, "
            "floor(b * size / P) .. ceil((b + 1) * size / P), so that neighbouring bins may share a pixel",
            roi_pool=partial(pool_loops, bins="floor")),
    mistake("a bin with no pixel inside the map must output 0, not -inf",
            roi_pool=partial(pool_loops, empty=-math.inf)),
    mistake("boxes[:, 0] is the batch index: pool RoI k from input[int(boxes[k, 0])], not always from image 0",
            roi_pool=lambda x, b, *a: pool_loops(x, torch.cat([torch.zeros_like(b[:, :1]), b[:, 1:]], 1), *a)),
])


def rois_tensor(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype).reshape(-1, 5)


# 5 x 5, zero but for four peaks that lie inside the same bin whatever the RoI's end pixel convention
PEAKS = torch.zeros(1, 1, 5, 5)
PEAKS[0, 0, 1, 1], PEAKS[0, 0, 1, 3], PEAKS[0, 0, 3, 1], PEAKS[0, 0, 3, 3] = 5.0, 6.0, 7.0, 8.0


@ROI_POOL.core("each bin outputs the max of the feature pixels it covers, per channel (an RoI on whole pixels)")
def _(t):
    t.expect("5 x 5 map, zero but for peaks 5, 6, 7, 8 at (1, 1), (1, 3), (3, 1), (3, 3); RoI (0, 0, 4, 4), 2 x 2 bins",
             {"input": PEAKS, "boxes": rois_tensor([[0, 0, 0, 4, 4]]), "output_size": 2}, [[[[5.0, 6], [7, 8]]]])
    t.expect("the same map, one bin: the largest peak", {"input": PEAKS, "boxes": rois_tensor([[0, 0, 0, 4, 4]]),
                                                         "output_size": 1}, [[[[8.0]]]])


@ROI_POOL.core("spatial_scale maps image pixels to feature pixels: box * spatial_scale")
def _(t):
    t.expect("the peaks map as a stride-2 level: the image RoI (0, 0, 8, 8) is (0, 0, 4, 4) on the map",
             {"input": PEAKS, "boxes": rois_tensor([[0, 0, 0, 8, 8]]), "output_size": 2, "spatial_scale": 0.5},
             [[[[5.0, 6], [7, 8]]]])


@ROI_POOL.core("boxes[:, 0] picks the image that RoI k is pooled from")
def _(t):
    two = torch.cat([torch.zeros(1, 1, 5, 5), PEAKS])  # image 0 all zeros, image 1 the peaks
    t.expect("image 0 all zeros, image 1 the peaks map; the RoI (0, 0, 4, 4) on image 1",
             {"input": two, "boxes": rois_tensor([[1, 0, 0, 4, 4]]), "output_size": 2}, [[[[5.0, 6], [7, 8]]]])


@ROI_POOL.core("the gradient of output.sum() reaches each bin's max pixel (1 per bin it is the max of)")
def _(t):
    noise = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t.expect("the peaks map plus noise in [0, 1), the RoI (0, 0, 4, 4) twice, 2 x 2 bins: 2 at each peak",
             {"input": PEAKS.double() + noise, "boxes": rois_tensor([[0, 0, 0, 4, 4], [0, 0, 0, 4, 4]],
                                                                    torch.float64), "output_size": 2},
             measure=input_gradient("roi_pool"))


@ROI_POOL.core("no RoIs: a (0, C, P, Q) result")
def _(t):
    t.expect("(0, 5) boxes on a 2 x 3 x 4 x 4 map, output_size (2, 3)",
             {"input": torch.zeros(2, 3, 4, 4), "boxes": rois_tensor([]), "output_size": (2, 3)},
             torch.zeros(0, 3, 2, 3))


@ROI_POOL.convention("the RoI's corners are rounded to whole feature pixels, half away from zero (0.6 -> 1, 2.5 -> 3)")
def _(t):
    reverse = 15 - RAMP  # its max at the top left, so that the max shows where x1 and y1 were rounded to
    for x1, x2 in ((0.6, 3.4), (0.5, 2.5)):
        t.expect(f"4 x 4 map holding 15 - (4y + x); ({x1}, {x1}, {x2}, {x2}) rounds to pixels 1..3, one bin: its max "
                 "is pixel (1, 1)", {"input": reverse, "boxes": rois_tensor([[0, x1, x1, x2, x2]]), "output_size": 1},
                 [[[[10.0]]]])
    t.expect("4 x 4 map holding 4y + x, its max at the bottom right; (0.5, 0.5, 2.5, 2.5) rounds to pixels 1..3: "
             "the max is pixel (3, 3)", {"input": RAMP, "boxes": rois_tensor([[0, 0.5, 0.5, 2.5, 2.5]]),
                                         "output_size": 1}, [[[[15.0]]]])


@ROI_POOL.convention("the rounded RoI covers pixels x1..x2 inclusive; bin edges are rounded outward, "
                     "floor(b * size / P) "
                   ".. ceil((b + 1) * size / P)")
def _(t):
    t.expect("4 x 4 map holding 4y + x; (0, 0, 3, 3): 4 pixels into 2 bins of 2",
             {"input": RAMP, "boxes": rois_tensor([[0, 0, 0, 3, 3]]), "output_size": 2}, [[[[5.0, 7], [13, 15]]]])
    t.expect("the same map; (0, 0, 2, 2): 3 pixels into 2 bins of 1.5, pixels 0..1 and 1..2 (they share pixel 1)",
             {"input": RAMP, "boxes": rois_tensor([[0, 0, 0, 2, 2]]), "output_size": 2}, [[[[5.0, 6], [9, 10]]]])


@ROI_POOL.convention("a bin with no pixel inside the map outputs 0 (not -inf)")
def _(t):
    t.expect("4 x 4 map holding 4y + x + 1; (2, 2, 6, 6) has its right and bottom bins outside; (6, 6, 9, 9) is "
             "wholly outside",
             {"input": RAMP + 1, "boxes": rois_tensor([[0, 2, 2, 6, 6], [0, 6, 6, 9, 9]]), "output_size": 2},
             [[[[16.0, 0], [0, 0]]], [[[0, 0], [0, 0]]]])


def each_roi_alone(x):
    """Shrink a random case: each RoI alone, on its own image's first channel."""
    for k, (n, *corners) in enumerate(x["boxes"].tolist()):
        image = x["input"][int(n):int(n) + 1, :1]  # (1, 1, H, W)
        alone = {**x, "input": image, "boxes": rois_tensor([[0, *corners]], x["boxes"].dtype)}
        yield f"RoI {k} of a random case, alone on its image's first channel", alone


@ROI_POOL.convention("random RoIs (some partly or wholly outside the map) against a loop transcription of RoIPool")
def _(t):
    gen = torch.Generator().manual_seed(0)
    for scale, size in ((0.5, (2, 3)), (0.25, 3)):
        x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
        xy = torch.rand(5, 2, generator=gen, dtype=torch.float64) * 8 / scale - 1 / scale
        wh = torch.rand(5, 2, generator=gen, dtype=torch.float64) * 4 / scale
        boxes = torch.cat([torch.randint(2, (5, 1), generator=gen).double(), xy, xy + wh], dim=1)
        t.expect(f"2 random 2 x 5 x 6 maps, 5 RoIs, spatial_scale {scale}, output_size {size}",
                 {"input": x, "boxes": boxes, "output_size": size, "spatial_scale": scale}, shrink=each_roi_alone)


@ROI_POOL.convention("the output has input's dtype: float32 in, float32 out; float64 in, float64 out")
def _(t):
    for dtype in (torch.float32, torch.float64):
        t.expect_dtype(f"a {dtype} map", {"input": RAMP.to(dtype), "boxes": rois_tensor([[0, 0, 0, 3, 3]], dtype),
                                          "output_size": 2}, dtype)
