"""Checks of paste_masks: an M x M mask probability map back into the image at its box (Mask R-CNN Sec. 3.1).

"The m x m floating-number mask output is then resized to the RoI size, and binarized at a threshold
of 0.5" (Sec. 3.1, Inference). That is the core: the mask lands on its box, resized, as probabilities.
Image pixel (y, x) covers [x, x + 1) x [y, y + 1): a box from x1 to x2 covers the pixels whose
extent lies in [x1, x2], and the core checks only pixels at least 1 pixel inside or outside a box
edge, where every sensible pasting agrees.

The conventions are torchvision's paste_masks_in_image, which the package follows to the pixel:
1. the mask is padded with one pixel of zeros, (M + 2)^2, and its box grown about its centre by
   (M + 2) / M, so that the padded mask covers the grown box and fades out at the box's edge;
2. the grown box's corners are truncated to whole pixels (towards zero), and it covers pixels
   x1..x2 inclusive, x2 - x1 + 1 of them;
3. the padded mask is resized bilinearly to those pixels with half-pixel centres (F.interpolate,
   align_corners=False: source x = (u + 0.5) * S / n - 0.5, clamped at 0).
The reference does all three with loops over pixels.

Shape glossary:
  D: masks (detections); M: mask size; S = M + 2: padded size; H, W: image size; n: pixels of a box side
"""
from __future__ import annotations

import math
from functools import partial

import torch

from .core import Component, Unusable, mistake


def _source(u: int, n: int, S: int, align_corners: bool):
    """Bilinear resizing of S samples to n pixels: pixel u reads samples i0, i1 with weight frac on i1."""
    if align_corners:
        x = u * (S - 1) / (n - 1) if n > 1 else 0.0
    else:
        x = max((u + 0.5) * S / n - 0.5, 0.0)
    i0 = min(int(x), S - 1)
    return i0, min(i0 + 1, S - 1), x - i0


def paste_loops(masks, boxes, image_size, *, pad=1, rounding="trunc", inclusive=True, align_corners=False,
                threshold=False, transpose=False):
    """(D, M, M) masks, (D, 4) boxes, (H, W) -> (D, H, W) float32, pixel by pixel. The keywords switch on
    known mistakes (pad=0, inclusive=False: the textbook paste, resize to the box and write it there)."""
    D, M = masks.shape[0], masks.shape[-1]
    H, W = image_size
    S = M + 2 * pad
    out = torch.zeros(D, H, W, dtype=torch.float32)
    for d in range(D):
        m = masks[d].double()
        m = (m > 0.5).double() if threshold else m
        m = m.t() if transpose else m
        padded = [[0.0] * S for _ in range(S)]
        for i, row in enumerate(m.tolist()):
            padded[i + pad][pad:pad + M] = row
        x1, y1, x2, y2 = boxes[d].tolist()
        cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * S / M, (y2 - y1) / 2 * S / M
        r = math.trunc if rounding == "trunc" else round
        x1, y1, x2, y2 = (int(r(v)) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
        w, h = max(x2 - x1 + inclusive, 1), max(y2 - y1 + inclusive, 1)
        for y in range(max(y1, 0), min(y1 + h, H)):
            a0, a1, fy = _source(y - y1, h, S, align_corners)
            for x in range(max(x1, 0), min(x1 + w, W)):
                b0, b1, fx = _source(x - x1, w, S, align_corners)
                out[d, y, x] = ((1 - fy) * ((1 - fx) * padded[a0][b0] + fx * padded[a0][b1])
                                + fy * ((1 - fx) * padded[a1][b0] + fx * padded[a1][b1]))
    return out


PASTE_MASKS = Component("paste_masks", "the M x M masks resized into the image at their boxes (Mask R-CNN Sec. 3.1, "
                        "Inference)", {"paste_masks": paste_loops}, [
    mistake("your paste is transposed: mask[d, y, x] holds row y and column x, and so does the image",
            paste_masks=partial(paste_loops, transpose=True)),
    mistake("paste the probabilities, resized; Sec. 3.1 binarizes at 0.5 after resizing, not before",
            paste_masks=partial(paste_loops, threshold=True)),
    mistake("your mask is resized to the box and cut at its edge; torchvision pads it with one pixel of zeros and "
            "grows the box by (M + 2) / M about its centre, so that the mask fades out at the box's edge",
            paste_masks=partial(paste_loops, pad=0, inclusive=False)),
    mistake("the grown box's truncated corners x1, x2 are both covered: x2 - x1 + 1 pixels, x1..x2 inclusive",
            paste_masks=partial(paste_loops, inclusive=False)),
    mistake("the grown box's corners are truncated towards zero (int(), .trunc()), not rounded to the nearest",
            paste_masks=partial(paste_loops, rounding="round")),
    mistake("your resize uses align_corners=True; torchvision resizes with half-pixel centres (F.interpolate, "
            "mode='bilinear', align_corners=False)", paste_masks=partial(paste_loops, align_corners=True)),
])


def care(boxes, image_size, on, outside=0.0):
    """(D, H, W) float: on[d] (a value, or a function of (y, x) from the box's corner) at pixels at least 1
    pixel inside box d, `outside` at pixels at least 1 pixel outside it, NaN (not checked) in the band along
    its edges."""
    H, W = image_size
    out = torch.full((len(boxes), H, W), math.nan)
    for d, (x1, y1, x2, y2) in enumerate(boxes):
        for y in range(H):
            for x in range(W):
                if x + 1 <= x1 - 1 or x >= x2 + 1 or y + 1 <= y1 - 1 or y >= y2 + 1:
                    out[d, y, x] = outside
                elif x >= x1 + 1 and x + 1 <= x2 - 1 and y >= y1 + 1 and y + 1 <= y2 - 1:
                    out[d, y, x] = on[d](y - y1, x - x1) if callable(on[d]) else on[d]
    return out


def at_care(expected, threshold=True):
    """A measure: the pasted masks (thresholded at 0.5, or as probabilities) where `expected` is not NaN."""
    def measure(functions, x):
        out = functions.paste_masks(*x.values())
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(expected.shape):
            raise Unusable(f"a result of shape {tuple(getattr(out, 'shape', ()))}, expected (D, H, W) = "
                           f"{tuple(expected.shape)}")
        values = (out > 0.5).float() if threshold else out.float()
        return torch.where(expected.isnan(), math.nan, values)
    return measure


def _case(masks, boxes, image_size):
    return {"masks": torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in masks]) if masks else
            torch.zeros(0, 4, 4), "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "image_size": image_size}


ONES, TOP = torch.ones(4, 4), torch.tensor([[1.0] * 4] * 2 + [[0.0] * 4] * 2)  # all ones; the top half


def top_half(y, x):
    """Rows of an 8-pixel-tall box: the top half on, the bottom half off, the 2 rows at the middle not checked."""
    return 1.0 if y < 3 else 0.0 if y > 4 else math.nan


@PASTE_MASKS.core("a mask lands on its box: an all-ones mask is > 0.5 at pixels 1 pixel inside its box, 0 at pixels "
                  "1 pixel outside it (nan: the edge band, not checked)")
def _(t):
    boxes = [[3, 5, 12, 11]]
    t.expect("a 4 x 4 mask of ones, box (3, 5, 12, 11), a 16 x 16 image", _case([ONES], boxes, (16, 16)),
             care(boxes, (16, 16), [1.0]), measure=at_care(care(boxes, (16, 16), [1.0])))


@PASTE_MASKS.core("the mask is resized to its box, not cut or transposed: its top half lands on the box's top half")
def _(t):
    boxes, top = [[2, 4, 14, 12]], [top_half]
    expected = care(boxes, (16, 16), top)
    t.expect("a 4 x 4 mask whose top two rows are ones, box (2, 4, 14, 12): 12 wide, 8 tall",
             _case([TOP], boxes, (16, 16)), expected, measure=at_care(expected))


@PASTE_MASKS.core("the pasted values are the mask's probabilities, resized (not thresholded)")
def _(t):
    boxes = [[3, 5, 12, 11]]
    expected = care(boxes, (16, 16), [0.3], outside=math.nan)  # outside, the mask may fade out (convention)
    t.expect("a 4 x 4 mask of 0.3, box (3, 5, 12, 11): 0.3 inside the box (nan: not checked)",
             _case([ONES * 0.3], boxes, (16, 16)), expected,
             measure=at_care(expected, threshold=False))


@PASTE_MASKS.core("each mask goes to its own box; what falls outside the image is cut off")
def _(t):
    boxes = [[-5, -4, 5, 6], [8, 6, 14, 14]]
    expected = care(boxes, (16, 16), [1.0, top_half])
    t.expect("mask 0, ones, at (-5, -4, 5, 6), partly outside; mask 1, top half ones, at (8, 6, 14, 14)",
             _case([ONES, TOP], boxes, (16, 16)), expected, measure=at_care(expected))


@PASTE_MASKS.core("no masks: a (0, H, W) result")
def _(t):
    t.expect("(0, 4, 4) masks, (0, 4) boxes, a 5 x 6 image", _case([], [], (5, 6)), torch.zeros(0, 5, 6))


@PASTE_MASKS.convention("torchvision's paste: a one-pixel zero border, the box grown by (M + 2) / M, its corners "
                        "truncated and covered inclusively, a bilinear resize with half-pixel centres")
def _(t):
    t.expect("a 2 x 2 mask [[1, 0.5], [0.25, 0]], box (2.2, 3.1, 6.7, 8.4), a 12 x 10 image: the grown box "
             "(-0.05, 0.45, 8.95, 11.05) truncates to pixels 0..8 x 0..11",
             _case([[[1.0, 0.5], [0.25, 0.0]]], [[2.2, 3.1, 6.7, 8.4]], (12, 10)))
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 4, 4, generator=gen)
    xy = torch.rand(3, 2, generator=gen) * 14 - 3
    boxes = torch.cat([xy, xy + 1 + torch.rand(3, 2, generator=gen) * 9], dim=1)
    t.expect("3 random 4 x 4 masks at random boxes, a 14 x 15 image", _case(list(masks), boxes.tolist(), (14, 15)))


@PASTE_MASKS.convention("the result is float32 for float32 masks")
def _(t):
    t.expect_dtype("one mask", _case([ONES], [[3, 5, 12, 11]], (16, 16)), torch.float32)
