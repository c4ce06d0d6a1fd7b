"""Checks of grid_anchors: all anchors of one feature level (Faster R-CNN, Sec. 3.1; FPN).

The reference loops over positions, aspect ratios and sizes, in the order of the output's rows.
An anchor of size s and aspect ratio a = h / w has the area of an s x s square:
w * h = s^2 and h / w = a give w = s / sqrt(a), h = s * sqrt(a). Its corners, centred at (0, 0), are
rounded to whole pixels (half to even, as torch.round and Python's round), then moved to the
position's top-left image pixel (x * stride_x, y * stride_y).

Shape glossary:
  H, W: feature map size; A: anchors per position = len(aspect_ratios) * len(sizes)
"""
from __future__ import annotations

import math
from functools import partial

import torch

from .core import Component, mistake


ROUND = {"half_even": round,  # Python's round(), as torch.round: 2.5 -> 2
         "half_away": lambda v: math.copysign(math.floor(abs(v) + 0.5), v), "none": lambda v: v}


def anchors_loops(sizes, aspect_ratios, feature_size, stride, *, ratio="h/w", order="ratio", rounding="half_even",
                  centre=0.0, rows="y", strides="yx"):
    """-> (H*W*A, 4) float32; row (y * W + x) * A + a is anchor a at position (y, x).
    The keyword arguments switch on the known mistakes (GRID_ANCHORS' list)."""
    H, W = feature_size
    sy, sx = (stride, stride) if isinstance(stride, (int, float)) else tuple(stride)
    if strides == "xy":
        sy, sx = sx, sy
    pairs = [(r, s) for r in aspect_ratios for s in sizes] if order == "ratio" else \
        [(r, s) for s in sizes for r in aspect_ratios]
    r = ROUND[rounding]
    base = []  # the A anchors centred at (0, 0)
    for a, s in pairs:
        a = a if ratio == "h/w" else 1 / a
        half_w, half_h = s / math.sqrt(a) / 2, s * math.sqrt(a) / 2
        base.append((r(-half_w), r(-half_h), r(half_w), r(half_h)))
    positions = [(y, x) for y in range(H) for x in range(W)] if rows == "y" else \
        [(y, x) for x in range(W) for y in range(H)]
    out = [(x1 + (x + centre) * sx, y1 + (y + centre) * sy, x2 + (x + centre) * sx, y2 + (y + centre) * sy)
           for y, x in positions for x1, y1, x2, y2 in base]
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)


GRID_ANCHORS = Component("grid_anchors", "the anchors of one feature level (Faster R-CNN Sec. 3.1, FPN)",
                         {"grid_anchors": anchors_loops}, [
    mistake("your anchors are wide where they should be tall: the aspect ratio is h / w (a = 2 is twice as tall "
            "as wide), so w = size / sqrt(a) and h = size * sqrt(a)",
            grid_anchors=partial(anchors_loops, ratio="w/h")),
    mistake("your anchors are in size-major order; the order is ratio-major: for each aspect ratio, each size",
            grid_anchors=partial(anchors_loops, order="size")),
    mistake("your corners are not rounded: round the corners of the anchors centred at (0, 0) to whole pixels",
            grid_anchors=partial(anchors_loops, rounding="none")),
    mistake("your corners are rounded half away from zero (2.5 -> 3); round half to even, as torch.round and "
            "Python's round() do (2.5 -> 2)", grid_anchors=partial(anchors_loops, rounding="half_away")),
    mistake("your anchors are centred on (x + 0.5) * stride; they are centred on the position's top-left pixel, "
            "(x * stride, y * stride)", grid_anchors=partial(anchors_loops, centre=0.5)),
    mistake("your positions are in column-major order; rows come position by position, row-major: "
            "row (y * W + x) * A + a", grid_anchors=partial(anchors_loops, rows="x")),
    mistake("your strides are swapped: a tuple stride is (stride_y, stride_x)",
            grid_anchors=partial(anchors_loops, strides="xy")),
])


def layout(functions, inputs):
    """A measure that keeps what the idea fixes and drops the conventions: every anchor relative to the mean
    centre of all of them (so where a position's centre sits does not matter), rows sorted (any order)."""
    a = functions.grid_anchors(*inputs.values()).double()
    centre = a.reshape(-1, 2, 2).mean(dim=1).mean(dim=0)  # (2,) x, y: the mean anchor centre
    rows = (a - centre.repeat(2)).tolist()
    return torch.tensor(sorted(rows), dtype=torch.float64).reshape(-1, 4)


@GRID_ANCHORS.core("w * h = size^2 and h / w = a: w = size / sqrt(a), h = size * sqrt(a), centred on the position "
                   "(sizes whose corners are whole pixels, hand-computed)")
def _(t):
    t.expect("one position, stride 16, size 32, aspect ratios 1 and 4 (twice as tall as wide)",
             {"sizes": (32,), "aspect_ratios": (1.0, 4.0), "feature_size": (1, 1), "stride": 16},
             [[-16.0, -16, 16, 16], [-8, -32, 8, 32]])


@GRID_ANCHORS.core("one anchor per position, aspect ratio and size, positions stride apart; a tuple stride is "
                   "(stride_y, stride_x) (compared in any order, about their mean centre)")
def _(t):
    t.expect("a 2 x 3 map of stride (8, 4), sizes 4 and 8, aspect ratios 1 and 4",
             {"sizes": (4, 8), "aspect_ratios": (1.0, 4.0), "feature_size": (2, 3), "stride": (8, 4)}, measure=layout)


@GRID_ANCHORS.core("an empty map (H or W = 0) gives a (0, 4) result")
def _(t):
    t.expect("a 0 x 3 map", {"sizes": (32,), "aspect_ratios": (0.5, 1.0, 2.0), "feature_size": (0, 3), "stride": 16},
             torch.zeros(0, 4))


@GRID_ANCHORS.convention("the corners of the anchors centred at (0, 0) are rounded to whole pixels, half to even "
                         "(torch.round: a square of size 5 has corners -2 and 2)")
def _(t):
    # size 32: a = 0.5 gives 45.25 x 22.63, corners +-22.63 -> 23 and +-11.31 -> 11
    t.expect("one position, stride 16, size 32, aspect ratios 0.5, 1, 2",
             {"sizes": (32,), "aspect_ratios": (0.5, 1.0, 2.0), "feature_size": (1, 1), "stride": 16},
             [[-23.0, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    t.expect("one position, size 5, aspect ratio 1: corners +-2.5 round to +-2",
             {"sizes": (5,), "aspect_ratios": (1.0,), "feature_size": (1, 1), "stride": 8}, [[-2.0, -2, 2, 2]])


@GRID_ANCHORS.convention("the A anchors of a position are ratio-major: for each aspect ratio, each size")
def _(t):
    t.expect("one position, sizes 8 and 16, aspect ratios 1 and 4 (h = 2 size, w = size / 2)",
             {"sizes": (8, 16), "aspect_ratios": (1.0, 4.0), "feature_size": (1, 1), "stride": 4},
             [[-4.0, -4, 4, 4], [-8, -8, 8, 8], [-2, -8, 2, 8], [-4, -16, 4, 16]])


@GRID_ANCHORS.convention("anchor a at position (y, x) is row (y * W + x) * A + a, centred on the position's top-left "
                         "image pixel (x * stride, y * stride)")
def _(t):
    rows = [[x * 10 - 2, y * 10 - 2, x * 10 + 2, y * 10 + 2] for y in range(2) for x in range(3)]
    t.expect("a 2 x 3 map of stride 10, one 4 x 4 anchor per position", {"sizes": (4,), "aspect_ratios": (1.0,),
             "feature_size": (2, 3), "stride": 10}, rows)
    t.expect("a 2 x 2 map, stride (8, 4), one 2 x 2 anchor per position",
             {"sizes": (2,), "aspect_ratios": (1.0,), "feature_size": (2, 2), "stride": (8, 4)},
             [[-1.0, -1, 1, 1], [3, -1, 5, 1], [-1, 7, 1, 9], [3, 7, 5, 9]])


@GRID_ANCHORS.convention("random sizes, aspect ratios and map sizes against a loop over positions, ratios and sizes")
def _(t):
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        sizes = tuple(sorted({int(s) for s in torch.randint(2, 40, (2,), generator=gen)}))
        pick = torch.randperm(5, generator=gen)[:2]
        ratios = tuple(float(r) for r in torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0])[pick])
        H, W, stride = (int(v) for v in torch.randint(1, 4, (3,), generator=gen) * torch.tensor([1, 1, 4]))
        t.expect(f"sizes {sizes}, aspect ratios {ratios}, a {H} x {W} map of stride {stride}",
                 {"sizes": sizes, "aspect_ratios": ratios, "feature_size": (H, W), "stride": stride})


@GRID_ANCHORS.convention("the anchors are float32")
def _(t):
    t.expect_dtype("a 2 x 2 map", {"sizes": (32,), "aspect_ratios": (1.0,), "feature_size": (2, 2), "stride": 16},
                   torch.float32)
