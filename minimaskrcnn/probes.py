"""Geometry probes of the RoI ops (notebooks 03 and 08): where RoIAlign reads its samples, which cells
RoIPool's bins cover, and how far each bin's features come from the bin.

The "physical" frame of a feature map of stride s: feature cell i covers image pixels [i*s, (i+1)*s), so its
centre is at image coordinate (i + 0.5) * s. This is the frame `viz.draw_feature_grid` draws, and the one in
which RoIAlign with aligned=True samples exactly where the RoI is (Detectron2's argument). Each probe uses the
op's own sampling or rounding rule, never a copy of it.

Glossary: K RoIs; P, Q output height and width (bins); Gy, Gx sampling points per bin.
"""
from __future__ import annotations

import torch


def roialign_sample_points(box, output_size: int, spatial_scale: float, sampling_ratio: int = 2,
                           aligned: bool = True) -> torch.Tensor:
    """Where ops.roi_align reads its bilinear samples for one RoI, in image pixels of the physical frame.

    box: (4,) (x1, y1, x2, y2) image pixels; spatial_scale: 1 / stride. Follows roi_align's own
    conventions (RoIs at least 1x1 cell when not aligned, adaptive grid for sampling_ratio <= 0), then
    maps feature coordinate c to image coordinate (c + 0.5) / spatial_scale: with aligned=True the points
    sit inside the RoI where they should, with aligned=False half a cell further right and down.
    Returns (P * Gy * Q * Gx, 2) float32 (x, y), P = Q = output_size.
    """
    from .ops.roi_align import sample_points  # the op's own sampling rule, not a copy of it

    b = torch.as_tensor(box, dtype=torch.float32).reshape(4) * spatial_scale - (0.5 if aligned else 0.0)
    width, height = b[2] - b[0], b[3] - b[1]
    if not aligned:
        width, height = width.clamp(min=1.0), height.clamp(min=1.0)
    if sampling_ratio > 0:
        gy = gx = sampling_ratio
    else:
        gy, gx = int(torch.ceil(height / output_size)), int(torch.ceil(width / output_size))
    ys, _ = sample_points(b[1:2], height[None], output_size, torch.tensor([gy]), gy)  # (1, P, Gy)
    xs, _ = sample_points(b[0:1], width[None], output_size, torch.tensor([gx]), gx)  # (1, Q, Gx)
    yy, xx = torch.meshgrid(ys.reshape(-1), xs.reshape(-1), indexing="ij")  # (P*Gy, Q*Gx)
    return (torch.stack([xx, yy], dim=-1).reshape(-1, 2) + 0.5) / spatial_scale


def roipool_bins(box, output_size: int, spatial_scale: float, map_size: tuple[int, int]) -> torch.Tensor:
    """RoIPool's two quantizations of one RoI, as image-pixel rectangles in the physical frame.

    box: (4,) (x1, y1, x2, y2) image pixels; map_size: (H, W) of the feature map. The corners are rounded
    to cells, the rounded RoI is cut into output_size^2 bins whose edges are rounded outward (the
    op's own `bin_edges`), and a bin covering cells lo..hi-1 is drawn as pixels [lo * s, hi * s).
    Returns (P, Q, 4) float32 (x1, y1, x2, y2); P = Q = output_size.
    """
    from .ops.roi_pool import bin_edges
    from .ops.rois import round_half_away

    q = round_half_away(torch.as_tensor(box, dtype=torch.float32).reshape(1, 4) * spatial_scale)  # (1, 4) cells
    y_lo, y_hi = bin_edges(q[:, 1], q[:, 3], output_size, map_size[0])  # (1, P)
    x_lo, x_hi = bin_edges(q[:, 0], q[:, 2], output_size, map_size[1])  # (1, Q)
    P = Q = output_size
    bins = torch.stack([x_lo[0][None, :].expand(P, Q), y_lo[0][:, None].expand(P, Q),
                        x_hi[0][None, :].expand(P, Q), y_hi[0][:, None].expand(P, Q)], dim=-1)  # (P, Q, 4)
    return bins.float() / spatial_scale


def coordinate_features(height: int, width: int, stride: float) -> torch.Tensor:
    """A (1, 4, height, width) feature map whose values are positions: channels x, -x, y, -y of each
    cell's centre in image pixels, ((j + 0.5) * stride, (i + 0.5) * stride) for cell (i, j).

    Pooled with an RoI op, it tells which image positions a bin read: for an average (RoIAlign, RoIWarp)
    channel 0 is the mean x read; for a max (RoIPool) channels 0 and 1 give the largest and smallest x.
    """
    x = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    y = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(y, x, indexing="ij")  # (H, W)
    return torch.stack([xx, -xx, yy, -yy])[None]  # (1, 4, H, W)


def bin_centre_offsets(pooled: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """How far each bin's features come from where the bin is, in image pixels.

    pooled: (K, 4, P, Q), an RoI op applied to `coordinate_features`; boxes: (K, 4) the RoIs in image
    pixels. The position read by a bin is ((ch0 - ch1) / 2, (ch2 - ch3) / 2): the mean position for an
    average, the midpoint of the pixels' centres for a max. Returns (K, P, Q, 2) (dx, dy) = read position
    minus the bin's true centre.
    """
    K, _, P, Q = pooled.shape
    read = torch.stack([(pooled[:, 0] - pooled[:, 1]) / 2, (pooled[:, 2] - pooled[:, 3]) / 2], dim=-1)  # (K, P, Q, 2)
    boxes = torch.as_tensor(boxes, dtype=pooled.dtype).reshape(K, 4)
    fy = (torch.arange(P, dtype=pooled.dtype) + 0.5) / P  # (P,) bin centres as fractions of the RoI
    fx = (torch.arange(Q, dtype=pooled.dtype) + 0.5) / Q
    cx = boxes[:, 0, None] + fx[None] * (boxes[:, 2] - boxes[:, 0])[:, None]  # (K, Q)
    cy = boxes[:, 1, None] + fy[None] * (boxes[:, 3] - boxes[:, 1])[:, None]  # (K, P)
    true = torch.stack([cx[:, None, :].expand(K, P, Q), cy[:, :, None].expand(K, P, Q)], dim=-1)  # (K, P, Q, 2)
    return read - true
