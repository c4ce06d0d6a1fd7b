"""Anchors (Faster R-CNN, Sec. 3.1).

At every position of a feature map of stride s, the RPN scores A = (#sizes x #ratios) reference boxes,
"anchors", centered on the position's top-left image pixel (x * s, y * s). An anchor of size `size`
and aspect ratio a = h / w has the area of a size x size square:

    w * h = size^2,  h / w = a   =>   w = size / sqrt(a),  h = size * sqrt(a)

Conventions follow torchvision's AnchorGenerator, so that its trained RPN weights mean the same thing
here: base anchors are rounded to whole pixels (round half to even), ordered ratio-major
(for each ratio, each size), and anchors are listed position by position, row-major.

Shape glossary:
  H, W: feature map size; A: anchors per position
"""
from __future__ import annotations

import torch


def base_anchors(sizes, aspect_ratios) -> torch.Tensor:
    """(A, 4) anchors centered at (0, 0), A = len(aspect_ratios) * len(sizes), ratio-major, float32."""
    sizes = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    if sizes.numel() == 0 or ratios.numel() == 0 or (sizes <= 0).any() or (ratios <= 0).any():
        raise ValueError(f"anchor sizes and aspect_ratios must be non-empty and positive, "
                         f"got {sizes.tolist()} and {ratios.tolist()}")
    h_ratio = torch.sqrt(ratios)  # h = size * sqrt(a)
    w_ratio = 1 / h_ratio  # w = size / sqrt(a)
    ws = (w_ratio[:, None] * sizes[None, :]).reshape(-1)  # (A,) ratio-major
    hs = (h_ratio[:, None] * sizes[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # (A, 4)


def grid_anchors(sizes, aspect_ratios, feature_size: tuple[int, int], stride) -> torch.Tensor:
    """All anchors of one feature level: (H*W*A, 4) float32 (x1, y1, x2, y2) image pixels.

    sizes: anchor sizes in pixels, e.g. (32,); aspect_ratios: h / w, e.g. (0.5, 1.0, 2.0);
    feature_size: (H, W); stride: image pixels per feature pixel, an int or (stride_y, stride_x).
    Row (y * W + x) * A + a is anchor a at position (y, x).
    """
    H, W = feature_size
    stride_y, stride_x = (stride, stride) if isinstance(stride, (int, float)) else stride
    if H < 0 or W < 0 or stride_y <= 0 or stride_x <= 0:
        raise ValueError(f"feature_size must be >= 0 and stride > 0, got {feature_size} and {stride}")
    base = base_anchors(sizes, aspect_ratios)  # (A, 4)
    shift_y, shift_x = torch.meshgrid(torch.arange(H, dtype=torch.float32) * stride_y,
                                      torch.arange(W, dtype=torch.float32) * stride_x, indexing="ij")  # (H, W)
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)  # (H*W, A, 4) -> (H*W*A, 4)


def num_anchors(sizes, aspect_ratios) -> int:
    """A: anchors per feature-map position."""
    return len(sizes) * len(aspect_ratios)


__all__ = ["base_anchors", "grid_anchors", "num_anchors"]
