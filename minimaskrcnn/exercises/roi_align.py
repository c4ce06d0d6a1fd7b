"""Checks of roi_align: RoIAlign (Mask R-CNN, Sec. 3), no quantization anywhere.

The reference transcribes the definition one sampling point at a time, with torchvision's conventions:
1. the RoI in feature pixels is box * spatial_scale, minus 0.5 when aligned=True (pixel centres at x + 0.5);
   with aligned=False an RoI smaller than 1 x 1 is stretched to 1 x 1;
2. P x Q equal bins; bin b along an axis holds g points at start + (b + (i + 0.5) / g) * bin_size,
   g = sampling_ratio, or ceil(roi_size / P) when sampling_ratio <= 0 (adaptive);
3. a point's value is bilinearly interpolated from its 4 neighbouring pixels; a point beyond one pixel
   outside the map reads 0, one less than a pixel outside reads the border (its coordinate clamped);
4. a bin outputs the average of its g_y * g_x points (those outside count, as 0).

Shape glossary:
  N: images; C: channels; H, W: map size; K: RoIs; P, Q: output height, width; gy, gx: points per bin
"""
from __future__ import annotations

import math
from functools import partial

import torch

from .core import Component, input_gradient, mistake
from .roi_pool import each_roi_alone, rois_tensor


def bilinear(fmap, y, x, *, read="bilinear", outside="border"):
    """fmap (C, H, W) at the real point (y, x) -> (C,). The keywords switch on known mistakes."""
    C, H, W = fmap.shape
    if outside != "clamp" and (y < -1.0 or y > H or x < -1.0 or x > W):
        return fmap.new_zeros(C)  # beyond one pixel outside the map
    if outside == "zeros":  # zero padding: a neighbour outside the map reads 0
        y0, x0 = math.floor(y), math.floor(x)
        ly, lx = y - y0, x - x0

        def pixel(i, j):
            return fmap[:, i, j] if 0 <= i < H and 0 <= j < W else fmap.new_zeros(C)
        return ((1 - ly) * (1 - lx) * pixel(y0, x0) + (1 - ly) * lx * pixel(y0, x0 + 1)
                + ly * (1 - lx) * pixel(y0 + 1, x0) + ly * lx * pixel(y0 + 1, x0 + 1))
    y, x = min(max(y, 0.0), H - 1.0), min(max(x, 0.0), W - 1.0)  # just outside: the border
    if read == "floor":
        return fmap[:, math.floor(y), math.floor(x)]
    y0, x0 = min(math.floor(y), H - 2) if H > 1 else 0, min(math.floor(x), W - 2) if W > 1 else 0
    y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
    ly, lx = y - y0, x - x0  # how far past the low neighbour, 0..1
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def align_loops(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *, offset=0.5,
                shift=0.5, shift_first=False, stretch=True, grid="ceil", read="bilinear", outside="border",
                count="all"):
    """input (N, C, H, W), boxes (K, 5) (batch_index, x1, y1, x2, y2) -> (K, C, P, Q), one point at a time.
    The keywords switch on known mistakes. Built from input's elements, so autograd gives RoIAlign's gradient too."""
    P, Q = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    out = []
    for n, *corners in boxes.tolist():
        s = shift if aligned else 0.0
        x1, y1, x2, y2 = ((v - s) * spatial_scale if shift_first else v * spatial_scale - s for v in corners)
        w, h = x2 - x1, y2 - y1
        if stretch and not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        if sampling_ratio > 0:
            gy = gx = sampling_ratio
        else:  # adaptive: about one point per feature pixel
            units = 1 / spatial_scale if grid == "image" else 1.0  # "image": sizes counted in image pixels
            rounding = (lambda v: max(math.floor(v), 1)) if grid == "floor" else math.ceil
            gy, gx = rounding(h * units / P), rounding(w * units / Q)
        bins = []
        for p in range(P):
            for q in range(Q):
                ys = [y1 + (p + (i + offset) / gy) * h / P for i in range(gy)]
                xs = [x1 + (q + (j + offset) / gx) * w / Q for j in range(gx)]
                points = [(y, x) for y in ys for x in xs]
                if count == "inside":
                    points = [(y, x) for y, x in points if -1 <= y <= H and -1 <= x <= W]
                values = [bilinear(input[int(n)], y, x, read=read, outside=outside) for y, x in points]
                bins.append(torch.stack(values).mean(0) if values else input.new_zeros(C))  # 0 points: 0
        out.append(torch.stack(bins, dim=1).reshape(C, P, Q))
    return torch.stack(out) if out else input.new_zeros(0, C, P, Q)


RAMP = torch.arange(25.0, dtype=torch.float64).reshape(1, 1, 5, 5)  # f(y, x) = 5y + x: bilinear is exact on it

ROI_ALIGN = Component("roi_align", "RoIAlign, no quantization anywhere (Mask R-CNN, Sec. 3)",
                      {"roi_align": align_loops}, [
    mistake("your outputs equal RoIAlign with the sample points at i / g instead of (i + 0.5) / g: "
            "the +0.5 is missing", roi_align=partial(align_loops, offset=0.0)),
    mistake("your RoIAlign ignores aligned=True: subtract 0.5 from the RoI's corners after scaling them "
            "(box * spatial_scale - 0.5)", roi_align=partial(align_loops, shift=0.0)),
    mistake("your aligned=True shifts the RoI by +0.5; it is -0.5 (box * spatial_scale - 0.5)",
            roi_align=partial(align_loops, shift=-0.5)),
    mistake("your aligned=True subtracts 0.5 before scaling; subtract half a feature pixel after it: "
            "box * spatial_scale - 0.5", roi_align=partial(align_loops, shift_first=True)),
    mistake("with aligned=False, an RoI smaller than 1 x 1 feature pixel is stretched to 1 x 1: "
            "width = max(x2 - x1, 1), height alike", roi_align=partial(align_loops, stretch=False)),
    mistake("your adaptive grid counts the RoI's size in image pixels; it is ceil(roi_height / P) x "
            "ceil(roi_width / Q) in feature pixels (after spatial_scale)",
            roi_align=partial(align_loops, grid="image")),
    mistake("your adaptive grid rounds down; it is ceil(roi_height / P) x ceil(roi_width / Q) points per bin",
            roi_align=partial(align_loops, grid="floor")),
    mistake("your RoIAlign reads the pixel at (floor(y), floor(x)); interpolate bilinearly between the 4 pixels "
            "around the point", roi_align=partial(align_loops, read="floor")),
    mistake("your points less than a pixel outside the map read 0 from the missing neighbours (zero padding); "
            "clamp such a point's coordinate to the map and read the border", roi_align=partial(align_loops,
                                                                                            outside="zeros")),
    mistake("your points beyond one pixel outside the map read the border; they read 0 "
            "(only points within one pixel outside are clamped)", roi_align=partial(align_loops, outside="clamp")),
    mistake("your bins average only the points inside the map; divide by all g_y * g_x points (those outside "
            "count as 0)", roi_align=partial(align_loops, count="inside")),
    mistake("boxes[:, 0] is the batch index: pool RoI k from input[int(boxes[k, 0])], not always from image 0",
            roi_align=lambda x, b, *a: align_loops(x, torch.cat([torch.zeros_like(b[:, :1]), b[:, 1:]], 1), *a)),
])


def _case(boxes, output_size, sampling_ratio, aligned=False, spatial_scale=1.0, input=RAMP):
    return {"input": input, "boxes": rois_tensor(boxes, torch.float64), "output_size": output_size,
            "spatial_scale": spatial_scale, "sampling_ratio": sampling_ratio, "aligned": aligned}


@ROI_ALIGN.core("each bin averages its sampling points at (b + (i + 0.5) / g) * bin_size (hand-computed on "
                    "f(y, x) = 5y + x)")
def _(t):
    t.expect("RoI (1, 1, 3, 3), 2 x 2 bins of 1 x 1, 2 x 2 points at 0.25 and 0.75 of each bin, aligned=False",
             _case([[0, 1, 1, 3, 3]], 2, 2), [[[[9.0, 10], [14, 15]]]])
    t.expect("RoI (0, 0, 4, 2), 1 x 2 bins of 2 x 2, 2 x 2 points at 0.5 and 1.5 pixels into each bin",
             _case([[0, 0, 0, 4, 2]], (1, 2), 2), [[[[6.0, 8]]]])


@ROI_ALIGN.convention("aligned=True shifts the RoI by -0.5 feature pixel after scaling: box * spatial_scale - 0.5")
def _(t):
    t.expect("RoI (1, 1, 3, 3) becomes (0.5, 0.5, 2.5, 2.5): one point per bin, on pixels 1 and 2",
             _case([[0, 1, 1, 3, 3]], 2, 1, aligned=True), [[[[6.0, 7], [11, 12]]]])
    t.expect("stride 2: the image RoI (2, 2, 6, 6) is (1, 1, 3, 3) on the map, then (0.5, 0.5, 2.5, 2.5)",
             _case([[0, 2, 2, 6, 6]], 2, 1, aligned=True, spatial_scale=0.5), [[[[6.0, 7], [11, 12]]]])


@ROI_ALIGN.core("a point's value is interpolated bilinearly from the 4 pixels around it")
def _(t):
    squares = RAMP ** 2  # not linear, so that each neighbour's weight shows
    t.expect("f(y, x) = (5y + x)^2; RoI (0.75, 1, 1.75, 2): one point, at (y, x) = (1.5, 1.25): "
             "0.5 (0.75 * 36 + 0.25 * 49) + 0.5 (0.75 * 121 + 0.25 * 144)",
             _case([[0, 0.75, 1, 1.75, 2]], 1, 1, input=squares), [[[[83.0]]]])


@ROI_ALIGN.convention("sampling_ratio <= 0 is adaptive: ceil(roi_height / P) x ceil(roi_width / Q) points per bin, "
                    "sizes in feature pixels")
def _(t):
    t.expect("f(y, x) = (5y + x)^2, stride 2: the image RoI (0, 0, 8, 6) is 4 x 3 on the map, one bin of "
             "3 x 4 points",
             _case([[0, 0, 0, 8, 6]], 1, -1, spatial_scale=0.5, input=RAMP ** 2), None)
    t.expect("the same map, RoI (0, 0, 3, 2.5), 2 x 2 bins: 1.25 x 1.5 pixels each, 2 x 2 points",
             _case([[0, 0, 0, 3, 2.5]], 2, 0, input=RAMP ** 2), None)


@ROI_ALIGN.convention("with aligned=False an RoI smaller than 1 x 1 feature pixel is stretched to 1 x 1; aligned=True "
                    "keeps its size")
def _(t):
    t.expect("RoI (1, 1, 1.5, 1.5), aligned=False: 1 x 1 from (1, 1), one point at (1.5, 1.5)",
             _case([[0, 1, 1, 1.5, 1.5]], 1, 1), [[[[9.0]]]])
    t.expect("the same RoI, aligned=True, adaptive: (0.5, 0.5, 1, 1), one point at (0.75, 0.75)",
             _case([[0, 1, 1, 1.5, 1.5]], 1, -1, aligned=True), [[[[4.5]]]])


@ROI_ALIGN.convention("points beyond one pixel outside the map read 0, points within one pixel outside read the "
                    "border; every point counts in the average")
def _(t):
    t.expect("f(y, x) = 5y + x + 1, 1 bin, 2 x 2 points. RoI (-1, 0, 1, 2): x = -0.5 reads column 0 -> 5.25 + 1; "
             "(-4, -4, -2, -2) is wholly outside -> 0; (3, 3, 6, 6): 3 of its points at 5.25 are outside -> "
             "(5 * 3.75 + 3.75 + 1) / 4", _case([[0, -1, 0, 1, 2], [0, -4, -4, -2, -2], [0, 3, 3, 6, 6]], 1, 2,
                                                input=RAMP + 1), [[[[6.25]]], [[[0.0]]], [[[5.875]]]])


@ROI_ALIGN.core("boxes[:, 0] picks the image that RoI k is pooled from")
def _(t):
    t.expect("image 0 all zeros, image 1 holding 5y + x; RoI (1, 1, 3, 3) on image 1", _case(
        [[1, 1, 1, 3, 3]], 2, 2, input=torch.cat([torch.zeros_like(RAMP), RAMP])), [[[[9.0, 10], [14, 15]]]])


@ROI_ALIGN.convention("random RoIs (some outside the map, some of zero width or height) against a loop transcription "
                    "of RoIAlign")
def _(t):
    gen = torch.Generator().manual_seed(0)
    for aligned, sampling_ratio in ((False, -1), (True, 2), (True, -1)):
        x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
        xy = torch.rand(5, 2, generator=gen, dtype=torch.float64) * 14 - 2  # image pixels, stride 2
        wh = torch.rand(5, 2, generator=gen, dtype=torch.float64) * 8
        wh[0, 0] = wh[1, 1] = 0.0  # zero width, zero height
        boxes = torch.cat([torch.randint(2, (5, 1), generator=gen).double(), xy, xy + wh], dim=1)
        t.expect(f"2 random 2 x 5 x 6 maps, 5 RoIs, stride 2, output_size (2, 3), sampling_ratio {sampling_ratio}, "
                 f"aligned={aligned}", {"input": x, "boxes": boxes, "output_size": (2, 3), "spatial_scale": 0.5,
                                        "sampling_ratio": sampling_ratio, "aligned": aligned}, shrink=each_roi_alone)


@ROI_ALIGN.core("random RoIs inside the map, at least 1 x 1 feature pixel, a fixed sampling_ratio, aligned=False, "
                "against a loop transcription of RoIAlign")
def _(t):
    gen = torch.Generator().manual_seed(2)
    for sampling_ratio, size in ((1, (2, 3)), (2, 2)):
        x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
        xy = torch.rand(4, 2, generator=gen, dtype=torch.float64) * 3  # image pixels; stride 2
        wh = 2 + torch.rand(4, 2, generator=gen, dtype=torch.float64) * 3  # >= 1 feature pixel, ends <= pixel 4
        boxes = torch.cat([torch.randint(2, (4, 1), generator=gen).double(), xy, xy + wh], dim=1)
        t.expect(f"2 random 2 x 5 x 6 maps, 4 RoIs, stride 2, output_size {size}, sampling_ratio {sampling_ratio}",
                 {"input": x, "boxes": boxes, "output_size": size, "spatial_scale": 0.5,
                  "sampling_ratio": sampling_ratio, "aligned": False}, shrink=each_roi_alone)


@ROI_ALIGN.core("the gradient of output.sum() reaches each pixel with its total bilinear weight")
def _(t):
    x = torch.randn(1, 1, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t.expect("a random 4 x 5 map, 2 RoIs, 2 x 2 bins of 2 x 2 points, aligned=False",
             _case([[0, 0.3, 0.6, 4.1, 3.2], [0, 1.2, 0.4, 3.7, 2.9]], 2, 2, False, input=x),
             measure=input_gradient("roi_align"))


@ROI_ALIGN.core("no RoIs: a (0, C, P, Q) result")
def _(t):
    t.expect("(0, 5) boxes on a 2 x 3 x 4 x 4 map, output_size (2, 3)",
             {**_case([], (2, 3), 2, input=torch.zeros(2, 3, 4, 4)), "boxes": rois_tensor([])},
             torch.zeros(0, 3, 2, 3))


@ROI_ALIGN.convention("the output has input's dtype: float32 in, float32 out; float64 in, float64 out")
def _(t):
    for dtype in (torch.float32, torch.float64):
        t.expect_dtype(f"a {dtype} map", {**_case([[0, 1, 1, 3, 3]], 2, 2, input=RAMP.to(dtype)),
                                          "boxes": rois_tensor([[0, 1, 1, 3, 3]], dtype)}, dtype)
