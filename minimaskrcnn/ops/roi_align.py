"""RoIAlign (Sec. 3, "RoIAlign"): features of a region, with no quantization anywhere.

Fast R-CNN's RoIPool rounds the RoI to the feature grid and rounds its bins again, which misaligns the
pooled features with the object by up to a stride. RoIAlign keeps every coordinate as a real number:
the RoI is cut into P x Q equal bins, each bin holds a regular gy x gx grid of sampling points, the
feature value at each point is bilinearly interpolated from its 4 neighbouring pixels, and a bin's
output is the average (or the max, the paper's "RoIAlign (max)" row) of its points.

How we compute it: a bilinear sample is a weighted sum of 4 pixels, so a bin's average is a weighted
sum of 4 * gy * gx pixels. We list, for every bin, which pixels and with which weights, and let
F.embedding_bag do "weighted sum of rows of a table" over the (N*H*W, C) table of feature vectors. That
is one vectorized call for all RoIs and bins (no Python loop), and autograd gives the backward pass:
each pixel receives the output gradient times its bilinear weight.

Conventions follow torchvision.ops.roi_align exactly, so the two can be compared value by value:
- aligned=False: pixel (y, x) is at coordinate (y, x), and RoIs are at least 1 x 1 feature pixels;
- aligned=True: shift the RoI by -0.5 pixel, so that pixel centers sit at y + 0.5 (Detectron2's fix);
- sampling_ratio <= 0: adaptive, gy = ceil(roi height / P) points per bin (and gx alike);
- a point beyond one pixel outside the map counts as 0; one just outside reads the border.

Shape glossary:
  N: images; C: channels; H, W: feature map size; K: RoIs; P, Q: output height, width;
  Gy, Gx: sampling points per bin (the largest over the RoIs; smaller grids are padded with weight 0)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .rois import as_rois, divide, feature_table, no_rois_output
from .triton import kernels, use_triton

MODES = ("avg", "max")


def bilinear_taps(coords: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis of length `size`: the 2 pixels each coordinate interpolates from and their weights.

    coords: (...,) real coordinates -> indices (..., 2) int64 and weights (..., 2), (low, high). The
    weights are 0 for a coordinate beyond one pixel outside [0, size - 1]; the product of the two axes'
    weights is the bilinear weight of each of the 4 pixels around a point.
    """
    inside = (coords >= -1.0) & (coords <= size)
    c = coords.clamp(min=0)
    low = c.floor().long()
    at_edge = low >= size - 1  # at or past the last pixel: read it alone
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(c), c - low.to(c.dtype))  # distance past `low`
    weights = torch.stack([1 - frac, frac], dim=-1) * inside[..., None]
    return torch.stack([low, high], dim=-1), weights


def sample_points(start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int):
    """Sampling coordinates along one axis: bin b's point i sits at start + (b + (i + 0.5) / g) * length / bins.

    start, length: (K,) RoI start and size in feature pixels; grid: (K,) points per bin g (g <= max_grid).
    Returns coords (K, bins, max_grid) and valid (K, bins, max_grid), False for padding (i >= g).
    """
    i = torch.arange(max_grid, device=start.device, dtype=start.dtype)  # (G,)
    b = torch.arange(bins, device=start.device, dtype=start.dtype)  # (bins,)
    bin_size = divide(length, bins)[:, None, None]  # (K, 1, 1)
    g = grid.clamp(min=1).to(start.dtype)[:, None, None]
    coords = start[:, None, None] + b[None, :, None] * bin_size + (i[None, None, :] + 0.5) * bin_size / g
    valid = (i[None, None, :] < grid[:, None, None]).expand_as(coords)
    return coords, valid  # (K, bins, G) each


def feature_box(rois: torch.Tensor, spatial_scale: float, aligned: bool) -> torch.Tensor:
    """The RoIs in feature-map coordinates, unquantized: rois (K, 5) in image pixels -> (K, 4) (x1, y1, x2, y2)
    in feature pixels, shifted by -0.5 when aligned (pixel centers at x + 0.5). The Triton kernel uses it too."""
    return rois[:, 1:] * spatial_scale - (0.5 if aligned else 0.0)


def sample_grid(rois: torch.Tensor, spatial_scale: float, output_size: tuple[int, int], sampling_ratio: int,
                aligned: bool):
    """Where RoIAlign samples each RoI, along each axis, in feature pixels. rois: (K, 5).
    Returns (ys, valid_y), (xs, valid_x): (K, P, Gy) and (K, Q, Gx) each, valid False for padding points."""
    (P, Q), K = output_size, rois.shape[0]
    box = feature_box(rois, spatial_scale, aligned)  # (K, 4)
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]  # (K,)
    if not aligned:  # the original RoIAlign forces malformed RoIs to be 1 x 1
        width, height = width.clamp(min=1.0), height.clamp(min=1.0)
    if sampling_ratio > 0:
        gy = gx = torch.full((K,), sampling_ratio, dtype=torch.long, device=rois.device)
        Gy = Gx = sampling_ratio  # known without asking the device (a GPU synchronization)
    else:  # adaptive: about one point per feature pixel in each direction
        gy, gx = torch.ceil(divide(height, P)).long(), torch.ceil(divide(width, Q)).long()  # (K,)
        Gy, Gx = max(int(gy.max()), 1), max(int(gx.max()), 1)
    return sample_points(box[:, 1], height, P, gy, Gy), sample_points(box[:, 0], width, Q, gx, Gx)


def roi_align(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False, mode: str = "avg", impl: str = "auto") -> torch.Tensor:
    """RoIAlign. input: (N, C, H, W); boxes: (K, 5) (batch_index, x1, y1, x2, y2) or a list of (Ki, 4),
    in image pixels; spatial_scale: feature pixels per image pixel (1 / stride).
    impl: "auto" (the Triton kernel for CUDA tensors, else this code), "reference" or "triton" (ops/triton).

    Returns (K, C, P, Q) in input's dtype; differentiable with respect to input.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rois, (P, Q) = as_rois(input, boxes, output_size, spatial_scale)
    use_kernel = use_triton(impl, input.device, "roi_align")
    if rois.shape[0] == 0:
        return no_rois_output(input, (P, Q))
    if use_kernel:
        return kernels("roi_align").roi_align(input, rois, (P, Q), spatial_scale, sampling_ratio, aligned, mode)
    N, C, H, W = input.shape
    K = rois.shape[0]

    (ys, valid_y), (xs, valid_x) = sample_grid(rois, spatial_scale, (P, Q), sampling_ratio, aligned)
    Gy, Gx = ys.shape[-1], xs.shape[-1]  # the most points of any bin, per axis
    yi, wy = bilinear_taps(ys, H)  # (K, P, Gy, 2)
    xi, wx = bilinear_taps(xs, W)  # (K, Q, Gx, 2)
    wy, wx = wy * valid_y[..., None], wx * valid_x[..., None]  # padding points weigh 0

    # Every (bin, point, neighbour) as a row of the (N*H*W, C) table and its weight.
    # Dimensions: (K, P, Q, Gy, Gx, 2, 2) = (RoI, bin row, bin col, point row, point col, y tap, x tap)
    image = rois[:, 0].long() * (H * W)
    index = (image[:, None, None, None, None, None, None]
             + yi[:, :, None, :, None, :, None] * W + xi[:, None, :, None, :, None, :])
    weight = wy[:, :, None, :, None, :, None] * wx[:, None, :, None, :, None, :]
    table = feature_table(input)  # (N*H*W, C)

    if mode == "avg":
        count = (valid_y[:, 0].sum(-1) * valid_x[:, 0].sum(-1)).clamp(min=1).to(input.dtype)  # (K,) points per bin
        weight = weight / count[:, None, None, None, None, None, None]
        bags = K * P * Q  # one bag per bin, of 4 * Gy * Gx weighted rows
        out = F.embedding_bag(index.reshape(bags, -1), table, per_sample_weights=weight.reshape(bags, -1),
                              mode="sum")  # (K*P*Q, C)
    else:
        bags = K * P * Q * Gy * Gx  # one bag per sampling point: its bilinear value
        values = F.embedding_bag(index.reshape(bags, -1), table, per_sample_weights=weight.reshape(bags, -1),
                                 mode="sum").view(K, P, Q, Gy * Gx, C)
        valid = (valid_y[:, :, None, :, None] & valid_x[:, None, :, None, :]).reshape(K, P, Q, Gy * Gx, 1)
        out = values.masked_fill(~valid, float("-inf")).amax(dim=3)  # (K, P, Q, C)
        out = out.masked_fill(~valid.any(dim=3), 0.0)  # a bin without points (zero-size RoI) is 0
    return out.view(K, P, Q, C).permute(0, 3, 1, 2)  # (K, C, P, Q)


def roi_align_matrix(start: torch.Tensor, length: torch.Tensor, bins: int, size: int) -> torch.Tensor:
    """RoIAlign along one axis as a matrix: (R,) RoI starts and lengths (pixels, length >= 1) ->
    (R, bins, size) float32, row b holding each pixel's weight in bin b's average of bilinear samples
    (aligned=False, adaptive sampling: ceil(length / bins) points per bin, the op's own sampling rule).

    Bilinear sampling is separable, so on a one-channel map RoIAlign is rows @ map @ cols^T with one such
    matrix per axis: dense products, far faster than the op's gather of single pixels. The RoI heads build
    their mask targets this way (`roi_heads.mask_targets`)."""
    points = torch.ceil(divide(length, bins)).long().clamp(min=1)  # (R,) points per bin
    coords, valid = sample_points(start, length, bins, points, int(points.max()))  # (R, bins, G)
    index, weight = bilinear_taps(coords, size)  # (R, bins, G, 2) pixel and weight of the 2 taps
    weight = weight * valid[..., None] / points[:, None, None, None]  # padding points weigh 0
    matrix = torch.zeros(start.shape[0], bins, size, device=start.device)
    return matrix.scatter_add_(2, index.flatten(2), weight.flatten(2).float())  # (R, bins, G*2) -> (R, bins, size)
