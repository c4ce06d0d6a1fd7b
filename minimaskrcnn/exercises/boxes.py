"""Checks of box_iou and of the box coder, encode_boxes / decode_boxes (Faster R-CNN, Eq. 2; Mask R-CNN Sec. 3).

The references are loops over boxes with Python floats, written from the definitions: boxes are
(x1, y1, x2, y2) in pixels and continuous, so a box's width is x2 - x1 (no "+ 1").

Shape glossary:
  N, M: boxes; K: classes (decode_boxes takes the deltas of K classes side by side, (N, 4K))
"""
from __future__ import annotations

import math
from functools import partial

import torch

from .core import Component, call, mistake

CLIP = math.log(1000.0 / 16)  # decode_boxes clamps dw, dh here before exp(): a box grows at most 62.5 times


def iou_loops(boxes1, boxes2, *, plus_one=False, subtract_overlap=True, clamp=True, nan_if_empty=False):
    """(N, 4), (M, 4) -> (N, M) IoU, one pair at a time. The keywords switch on known mistakes."""
    one = 1.0 if plus_one else 0.0
    out = torch.zeros(len(boxes1), len(boxes2), dtype=torch.float64)
    for i, (ax1, ay1, ax2, ay2) in enumerate(boxes1.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(boxes2.tolist()):
            w = min(ax2, bx2) - max(ax1, bx1) + one  # the overlap's width: negative if apart in x
            h = min(ay2, by2) - max(ay1, by1) + one
            overlap = max(w, 0.0) * max(h, 0.0) if clamp else w * h
            area_a = max(ax2 - ax1 + one, 0.0) * max(ay2 - ay1 + one, 0.0)
            area_b = max(bx2 - bx1 + one, 0.0) * max(by2 - by1 + one, 0.0)
            union = area_a + area_b - (overlap if subtract_overlap else 0.0)
            # two boxes of zero area: the overlap is 0 too; the package says 0, torchvision 0 / 0 = NaN
            out[i, j] = overlap / union if union > 0 else (math.nan if nan_if_empty else 0.0)
    return out.to(boxes1.dtype)


def _centre_size(box, centres=True):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (x1 + w / 2, y1 + h / 2, w, h) if centres else (x1, y1, w, h)


def encode_loops(gt_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0), *, use_weights=True, centres=True, log=True):
    """(N, 4) ground truth, (N, 4) proposals -> (N, 4) deltas (dx, dy, dw, dh), row by row (Eq. 2)."""
    wx, wy, ww, wh = weights if use_weights else (1.0, 1.0, 1.0, 1.0)
    out = torch.zeros(len(gt_boxes), 4, dtype=torch.float64)
    for i, (g, p) in enumerate(zip(gt_boxes.tolist(), proposals.tolist())):
        gx, gy, gw, gh = _centre_size(g, centres)
        px, py, pw, ph = _centre_size(p, centres)
        size = math.log if log else (lambda ratio: ratio)
        out[i] = torch.tensor([wx * (gx - px) / pw, wy * (gy - py) / ph, ww * size(gw / pw), wh * size(gh / ph)])
    return out.to(gt_boxes.dtype)


def decode_loops(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0), *, use_weights=True, clamp=True, half=True):
    """(N, 4K) deltas, (N, 4) proposals -> (N, 4K) boxes, class k in columns 4k..4k+3."""
    wx, wy, ww, wh = weights if use_weights else (1.0, 1.0, 1.0, 1.0)
    out = torch.zeros(deltas.shape, dtype=torch.float64)
    for i, p in enumerate(proposals.tolist()):
        px, py, pw, ph = _centre_size(p)
        row = deltas[i].tolist()
        for k in range(0, len(row), 4):
            dx, dy, dw, dh = row[k] / wx, row[k + 1] / wy, row[k + 2] / ww, row[k + 3] / wh
            if clamp:
                dw, dh = min(dw, CLIP), min(dh, CLIP)
            cx, cy, w, h = px + dx * pw, py + dy * ph, pw * math.exp(dw), ph * math.exp(dh)
            f = 0.5 if half else 1.0  # the corners are half a width from the centre
            out[i, k:k + 4] = torch.tensor([cx - f * w, cy - f * h, cx + f * w, cy + f * h])
    return out.to(deltas.dtype)


def _t(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype).reshape(-1, 4) if rows else torch.zeros(0, 4, dtype=dtype)


# --- box_iou -------------------------------------------------------------------------------------

BOX_IOU = Component("box_iou", "intersection over union (how anchors, RoIs and detections are matched)",
                    {"box_iou": iou_loops}, [
    mistake("your IoU equals the +1 (inclusive pixel) convention, width = x2 - x1 + 1; here coordinates are "
            "continuous, width = x2 - x1", box_iou=partial(iou_loops, plus_one=True)),
    mistake("your IoU equals intersection / (area1 + area2): the union counts the shared area once, "
            "union = area1 + area2 - intersection", box_iou=partial(iou_loops, subtract_overlap=False)),
    mistake("your IoU equals one whose overlap width and height are not clamped at 0: for boxes apart in both x "
            "and y, two negative sides multiply to a positive 'intersection'. Clamp each side at 0 first",
            box_iou=partial(iou_loops, clamp=False)),
    mistake("your result is the (M, N) transpose: entry [i, j] pairs boxes1[i] with boxes2[j], an (N, M) matrix",
            box_iou=lambda a, b: iou_loops(b, a)),
])


@BOX_IOU.core("IoU = intersection / (area1 + area2 - intersection), with width = x2 - x1 (hand-computed)")
def _(t):
    t.expect("two 2 x 2 squares sharing a 1 x 1 corner: 1 / (4 + 4 - 1)",
             {"boxes1": _t([[0, 0, 2, 2]]), "boxes2": _t([[1, 1, 3, 3]])}, [[1 / 7]])
    t.expect("a 4 x 4 square against itself (1), its top-left quarter (4 / 16) and a copy moved 2 right (8 / 24)",
             {"boxes1": _t([[0, 0, 4, 4]]), "boxes2": _t([[0, 0, 4, 4], [0, 0, 2, 2], [2, 0, 6, 4]])},
             [[1.0, 0.25, 1 / 3]])


@BOX_IOU.core("pairwise: entry [i, j] is the IoU of boxes1[i] and boxes2[j], an (N, M) matrix (random boxes)")
def _(t):
    gen = torch.Generator().manual_seed(0)
    for n, m in ((3, 2), (1, 4)):
        xy = torch.randint(0, 6, (n + m, 2), generator=gen)
        boxes = torch.cat([xy, xy + torch.randint(1, 5, (n + m, 2), generator=gen)], dim=1).float()
        t.expect(f"{n} and {m} random boxes with whole-pixel corners", {"boxes1": boxes[:n], "boxes2": boxes[n:]})


@BOX_IOU.core("boxes apart (in x, in y or both) or only touching have IoU 0: the overlap's sides clamp at 0")
def _(t):
    t.expect("a unit square against one apart in x and y, one apart in x only, one touching its right side",
             {"boxes1": _t([[0, 0, 1, 1]]), "boxes2": _t([[2, 2, 3, 3], [3, 0, 4, 1], [1, 0, 2, 1]])},
             [[0.0, 0.0, 0.0]])


@BOX_IOU.core("a box of zero width or height has IoU 0 with every box of nonzero area (with another box of zero "
              "area: 0, as the package says, or 0 / 0 = NaN, as torchvision says; both are accepted)")
def _(t):
    t.expect("a zero-width box against itself and against a 2 x 2 square that contains it",
             {"boxes1": _t([[1, 1, 1, 3]]), "boxes2": _t([[1, 1, 1, 3], [0, 0, 2, 4]])}, [[0.0, 0.0]],
             also=[{"box_iou": partial(iou_loops, nan_if_empty=True)}])


@BOX_IOU.core("no boxes: (0, 4) and (M, 4) give a (0, M) result, (N, 4) and (0, 4) an (N, 0) one")
def _(t):
    t.expect("no boxes1", {"boxes1": _t([]), "boxes2": _t([[0, 0, 1, 1], [0, 0, 2, 2]])}, torch.zeros(0, 2))
    t.expect("no boxes2", {"boxes1": _t([[0, 0, 1, 1]]), "boxes2": _t([])}, torch.zeros(1, 0))


@BOX_IOU.convention("the result has the boxes' dtype: float32 in, float32 out; float64 in, float64 out")
def _(t):
    for dtype in (torch.float32, torch.float64):
        t.expect_dtype(f"{dtype} boxes", {"boxes1": _t([[0, 0, 2, 2]], dtype), "boxes2": _t([[1, 1, 3, 3]], dtype)},
                       dtype)


# --- box_coder: encode_boxes and decode_boxes ---------------------------------------------------------

BOX_CODER = Component("box_coder", "the box regression targets and their inverse (Faster R-CNN, Eq. 2)",
                      {"encode_boxes": encode_loops, "decode_boxes": decode_loops}, [
    mistake("your encode_boxes ignores the weights: multiply (dx, dy, dw, dh) by (wx, wy, ww, wh)",
            encode_boxes=partial(encode_loops, use_weights=False)),
    mistake("your decode_boxes ignores the weights: divide the deltas by (wx, wy, ww, wh) before applying them",
            decode_boxes=partial(decode_loops, use_weights=False)),
    mistake("your deltas move the ground truth onto the proposal: encode_boxes(gt_boxes, proposals) measures gt "
            "relative to the proposal, dx = (gx - px) / pw",
            encode_boxes=lambda g, p, w=(1.0,) * 4: encode_loops(p, g, w)),
    mistake("your deltas use the boxes' top-left corners; Eq. 2 uses the centres, x1 + w / 2",
            encode_boxes=partial(encode_loops, centres=False)),
    mistake("your dw, dh are gw / pw and gh / ph; Eq. 2 takes their logarithm, dw = log(gw / pw)",
            encode_boxes=partial(encode_loops, log=False)),
    mistake("your decode_boxes does not clamp dw and dh: clamp them at log(1000 / 16) = 4.135 before exp()",
            decode_boxes=partial(decode_loops, clamp=False)),
    mistake("your boxes are twice too large: the corners are half a width from the centre, x1 = cx - w / 2",
            decode_boxes=partial(decode_loops, half=False)),
    mistake("your decode_boxes decodes only the first class: deltas (N, 4K) hold K classes side by side and the "
            "result is (N, 4K)", decode_boxes=lambda d, p, w=(1.0,) * 4: decode_loops(d[:, :4], p, w)),
])
ENCODE, DECODE = call("encode_boxes"), call("decode_boxes")
PROPOSAL, GT = [[100.0, 100, 200, 150], [0, 0, 10, 10]], [[120.0, 90, 260, 190], [0, 0, 10, 10]]
DELTAS = [[0.4, 0.3, math.log(1.4), math.log(2.0)], [0.0, 0.0, 0.0, 0.0]]  # GT relative to PROPOSAL, by hand
WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # the box head's


@BOX_CODER.core("encode: dx = (gx - px) / pw, dy = (gy - py) / ph, dw = log(gw / pw), dh = log(gh / ph), "
                    "with box centres (hand-computed)")
def _(t):
    t.expect("a 100 x 50 proposal centred at (150, 125) and a 140 x 100 box centred at (190, 140); a box on itself",
             {"gt_boxes": _t(GT, torch.float64), "proposals": _t(PROPOSAL, torch.float64)}, DELTAS, measure=ENCODE)


@BOX_CODER.core("decode: the inverse of encode, centre + (dx * pw, dy * ph), size (pw * exp(dw), ph * exp(dh)) "
                "(hand-computed)")
def _(t):
    t.expect("the deltas of the first case, weights (1, 1, 1, 1)",
             {"deltas": _t(DELTAS, torch.float64), "proposals": _t(PROPOSAL, torch.float64)}, GT, measure=DECODE)


@BOX_CODER.convention("encode: the weights (wx, wy, ww, wh) multiply the deltas; decode divides by them first "
                      "(Detectron's (10, 10, 5, 5) in the box head)")
def _(t):
    t.expect("the first case with the box head's weights (10, 10, 5, 5)",
             {"gt_boxes": _t(GT, torch.float64), "proposals": _t(PROPOSAL, torch.float64), "weights": WEIGHTS},
             [[w * d for w, d in zip(WEIGHTS, row)] for row in DELTAS], measure=ENCODE)
    t.expect("decode: the deltas of the first case times the weights (10, 10, 5, 5)",
             {"deltas": torch.tensor(DELTAS, dtype=torch.float64) * torch.tensor(WEIGHTS, dtype=torch.float64),
              "proposals": _t(PROPOSAL, torch.float64), "weights": WEIGHTS}, GT, measure=DECODE)


@BOX_CODER.core("decode: (N, 4K) deltas of K classes give (N, 4K) boxes, class k in columns 4k..4k+3")
def _(t):
    t.expect("one 10 x 20 proposal, class 0 unchanged, class 1 moved right by half a width and twice as wide",
             {"deltas": torch.tensor([[0.0, 0, 0, 0, 0.5, 0, math.log(2.0), 0]], dtype=torch.float64),
              "proposals": _t([[0, 0, 10, 20]], torch.float64)}, [[0.0, 0, 10, 20, 0, 0, 20, 20]], measure=DECODE)


@BOX_CODER.convention("decode: dw and dh are clamped at log(1000 / 16) before exp(), so a box grows at most 62.5 times")
def _(t):
    t.expect("dw = 10 on a 100 x 50 proposal: width 62.5 * 100 = 6250, not exp(10) * 100",
             {"deltas": torch.tensor([[0.0, 0, 10, 0]], dtype=torch.float64),
              "proposals": _t([[0, 0, 100, 50]], torch.float64)}, [[-3075.0, 0, 3175, 50]], measure=DECODE)


@BOX_CODER.core("decode(encode(g, p), p) gives g back (random boxes)")
def _(t):
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(6, 2, generator=gen, dtype=torch.float64) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(6, 2, generator=gen, dtype=torch.float64) * 40], dim=1)
    def round_trip(f, x):
        return f.decode_boxes(f.encode_boxes(x["gt_boxes"], x["proposals"]), x["proposals"])
    t.expect("3 random boxes and 3 random proposals", {"gt_boxes": boxes[:3], "proposals": boxes[3:]}, boxes[:3],
             measure=round_trip)


@BOX_CODER.core("no boxes: encode and decode give (0, 4) results")
def _(t):
    t.expect("encode, no boxes", {"gt_boxes": _t([]), "proposals": _t([])}, torch.zeros(0, 4), measure=ENCODE)
    t.expect("decode, no boxes", {"deltas": _t([]), "proposals": _t([])}, torch.zeros(0, 4), measure=DECODE)


@BOX_CODER.convention("the results have the inputs' dtype: float32 in, float32 out; float64 in, float64 out")
def _(t):
    for dtype in (torch.float32, torch.float64):
        t.expect_dtype(f"encode, {dtype}", {"gt_boxes": _t(GT, dtype), "proposals": _t(PROPOSAL, dtype)}, dtype,
                       measure=ENCODE)
        t.expect_dtype(f"decode, {dtype}", {"deltas": _t(DELTAS, dtype), "proposals": _t(PROPOSAL, dtype)}, dtype,
                       measure=DECODE)
