"""Box geometry: areas, IoU, clipping and the Faster R-CNN box parameterization (Sec. 3; Faster R-CNN, Eq. 2).

Boxes are always (x1, y1, x2, y2) in pixels, as in torchvision, so each function here can be compared with
torchvision.ops line by line. A box's width is x2 - x1 (no "+ 1": coordinates are continuous).

Shape glossary:
  N, M: boxes; K: classes (deltas of K classes side by side, (N, 4K))
"""
from __future__ import annotations

import math

import torch

# Faster R-CNN clamps the predicted log-scale change so that exp() cannot overflow: a box may grow at
# most 1000/16 = 62.5 times (an anchor of 16 pixels becoming 1000).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must be (N, 4) (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """boxes: (N, 4) -> (N,) areas in square pixels (0 for degenerate boxes)."""
    _check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_intersection(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection areas: (N, 4), (M, 4) -> (N, M), 0 where boxes do not overlap."""
    # One coordinate at a time, each a contiguous vector: the broadcast (N, M) operations below then run
    # several times faster than on (N, M, 2) blocks or on strided columns.
    x1, y1, x2, y2 = boxes1.t().contiguous()  # (N,) each
    X1, Y1, X2, Y2 = boxes2.t().contiguous()  # (M,) each
    w = (torch.min(x2[:, None], X2[None, :]) - torch.max(x1[:, None], X1[None, :])).clamp_(min=0)  # (N, M)
    h = (torch.min(y2[:, None], Y2[None, :]) - torch.max(y1[:, None], Y1[None, :])).clamp_(min=0)  # (N, M)
    return w.mul_(h)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union: (N, 4), (M, 4) -> (N, M) in [0, 1].

    Two boxes of zero area have IoU 0, not NaN (torchvision divides 0 by 0 there): the intersection is
    never larger than the union, so it is 0 whenever the union is, and 0 / tiny = 0.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    inter = box_intersection(boxes1, boxes2)  # (N, M)
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter  # (N, M)
    return inter.div_(union.clamp_(min=torch.finfo(union.dtype).tiny))


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clip (..., 4) boxes to an image of size (height, width): x to [0, width], y to [0, height]."""
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (..., 4) (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices (int64, increasing) of the boxes whose width and height are both >= min_size pixels."""
    _check_boxes(boxes, "boxes")
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.nonzero((w >= min_size) & (h >= min_size)).squeeze(1)


def _centers_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode_boxes(gt_boxes: torch.Tensor, proposals: torch.Tensor,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """The regression targets that move each proposal onto its ground-truth box (Faster R-CNN, Eq. 2).

        dx = wx * (gx - px) / pw      dw = ww * log(gw / pw)
        dy = wy * (gy - py) / ph      dh = wh * log(gh / ph)

    with (px, py, pw, ph) a proposal's center and size, (gx, gy, gw, gh) its box's. The weights scale
    the targets to roughly unit variance: (1, 1, 1, 1) in the RPN, (10, 10, 5, 5) in the box head.
    gt_boxes, proposals: (N, 4) pixels, row i matched to row i -> (N, 4) deltas (dx, dy, dw, dh).
    """
    _check_boxes(gt_boxes, "gt_boxes")
    _check_boxes(proposals, "proposals")
    if gt_boxes.shape[0] != proposals.shape[0]:
        raise ValueError(f"gt_boxes ({gt_boxes.shape[0]}) and proposals ({proposals.shape[0]}) must pair up")
    wx, wy, ww, wh = weights
    px, py, pw, ph = _centers_and_sizes(proposals)
    gx, gy, gw, gh = _centers_and_sizes(gt_boxes)
    return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                        ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=1)


def decode_boxes(deltas: torch.Tensor, proposals: torch.Tensor,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """The inverse of encode_boxes: apply deltas to proposals.

    deltas: (N, 4K) (dx, dy, dw, dh) for each of K classes side by side; proposals: (N, 4) pixels.
    Returns (N, 4K) boxes (x1, y1, x2, y2), class k in columns 4k..4k+3. dw and dh are clamped at
    log(1000 / 16) before exp().
    """
    _check_boxes(proposals, "proposals")
    if deltas.dim() != 2 or deltas.shape[1] % 4 != 0 or deltas.shape[0] != proposals.shape[0]:
        raise ValueError(f"deltas must be (N, 4K) with N = {proposals.shape[0]} proposals, "
                         f"got shape {tuple(deltas.shape)}")
    wx, wy, ww, wh = weights
    px, py, pw, ph = (t[:, None] for t in _centers_and_sizes(proposals.to(deltas.dtype)))  # (N, 1) each
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy  # (N, K)
    dw = (deltas[:, 2::4] / ww).clamp(max=BBOX_XFORM_CLIP)
    dh = (deltas[:, 3::4] / wh).clamp(max=BBOX_XFORM_CLIP)
    cx, cy = dx * pw + px, dy * ph + py  # (N, K) new centers
    half_w, half_h = 0.5 * torch.exp(dw) * pw, 0.5 * torch.exp(dh) * ph
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2)  # (N, K, 4)
    return boxes.reshape(deltas.shape)  # (N, 4K)
