"""RoIPool (Fast R-CNN, Sec. 2.1): the quantized baseline that RoIAlign replaces.

Two roundings: the RoI's corners are rounded to feature pixels ([x * spatial_scale]), then the RoI,
cut into P x Q bins, has each bin's edges rounded outward to whole pixels. A bin's output is the max
over its pixels. The roundings misalign the pooled features with the RoI by up to a feature stride,
harmless for classification but costly for pixel-accurate masks (Mask R-CNN, Table 2c).

Conventions follow torchvision.ops.roi_pool: rounding half away from zero, a quantized RoI covers
pixels start..end inclusive (at least 1), and an empty bin (wholly outside the map) outputs 0.

Shape glossary:
  N: images; C: channels; H, W: feature map size; K: RoIs; P, Q: output height, width;
  Mh, Mw: the most pixels any bin spans in y and x
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .rois import as_rois, feature_table, no_rois_output, round_half_away


def bin_edges(start: torch.Tensor, end: torch.Tensor, bins: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis: the quantized RoI covers pixels start..end (K,); return each bin's pixel range
    [lo, hi), (K, bins) int64, rounded outward and clipped to [0, size]."""
    length = (end - start + 1).clamp(min=1)  # (K,) whole pixels
    bin_size = length / bins  # (K,) real: bins may overlap by a pixel after rounding
    b = torch.arange(bins, device=start.device, dtype=start.dtype)
    lo = torch.floor(b[None, :] * bin_size[:, None]) + start[:, None]  # (K, bins)
    hi = torch.ceil((b[None, :] + 1) * bin_size[:, None]) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """RoIPool. input: (N, C, H, W); boxes: (K, 5) (batch_index, x1, y1, x2, y2) or a list of (Ki, 4),
    in image pixels; spatial_scale: 1 / stride. Returns (K, C, P, Q); differentiable with respect to input
    (the gradient goes to each bin's max pixel)."""
    rois, (P, Q) = as_rois(input, boxes, output_size, spatial_scale)
    N, C, H, W = input.shape
    K = rois.shape[0]
    if K == 0:
        return no_rois_output(input, (P, Q))

    box = round_half_away(rois[:, 1:] * spatial_scale)  # (K, 4) first quantization: whole pixels
    y_lo, y_hi = bin_edges(box[:, 1], box[:, 3], P, H)  # (K, P) second quantization: the bins
    x_lo, x_hi = bin_edges(box[:, 0], box[:, 2], Q, W)  # (K, Q)

    # Each bin's pixels, padded to the largest bin: (K, P, Q, Mh, Mw), then the real ones kept.
    Mh, Mw = max(int((y_hi - y_lo).max()), 1), max(int((x_hi - x_lo).max()), 1)
    ys = y_lo[..., None] + torch.arange(Mh, device=input.device)  # (K, P, Mh)
    xs = x_lo[..., None] + torch.arange(Mw, device=input.device)  # (K, Q, Mw)
    inside = ((ys < y_hi[..., None])[:, :, None, :, None]
              & (xs < x_hi[..., None])[:, None, :, None, :])  # (K, P, Q, Mh, Mw)
    image = rois[:, 0].long() * (H * W)
    index = image[:, None, None, None, None] + ys[:, :, None, :, None] * W + xs[:, None, :, None, :]

    # One variable-size bag of pixels per bin; embedding_bag's max returns 0 for an empty bag.
    sizes = inside.sum(dim=(3, 4)).reshape(-1)  # (K*P*Q,)
    offsets = torch.cumsum(sizes, 0) - sizes
    out = F.embedding_bag(index[inside], feature_table(input), offsets=offsets, mode="max")  # (K*P*Q, C)
    return out.view(K, P, Q, C).permute(0, 3, 1, 2)  # (K, C, P, Q)
