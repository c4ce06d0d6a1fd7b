"""RoIPool (Fast R-CNN, Sec. 2.1): the quantized baseline that RoIAlign replaces.

Two roundings: the RoI's corners are rounded to feature pixels ([x * spatial_scale]), then the RoI,
cut into P x Q bins, has each bin's edges rounded outward to whole pixels. A bin's output is the max
over its pixels. The roundings misalign the pooled features with the RoI by up to a feature stride,
harmless for classification but costly for pixel-accurate masks (Mask R-CNN, Table 2c).

Conventions follow torchvision.ops.roi_pool: rounding half away from zero, a quantized RoI covers
pixels start..end inclusive (at least 1), and an empty bin (wholly outside the map) outputs 0.

How we compute it: every bin's pixels are listed as rows of the (N*H*W, C) table of feature vectors,
and torch.embedding_bag's max mode takes the max of each bin (a variable-size "bag" of rows) for all
RoIs at once, also telling which pixel held it. The backward pass (written out in MaxOverBins) sends
each bin's gradient to that pixel.

Shape glossary:
  N: images; C: channels; H, W: feature map size; K: RoIs; P, Q: output height, width;
  Mh, Mw: the most pixels any bin spans in y and x; B = K*P*Q: bins
"""
from __future__ import annotations

import torch

from .rois import as_rois, divide, feature_table, no_rois_output, round_half_away
from .triton import kernels, use_triton


def bin_edges(start: torch.Tensor, end: torch.Tensor, bins: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis: the quantized RoI covers pixels start..end (K,); return each bin's pixel range
    [lo, hi), (K, bins) int64, rounded outward and clipped to [0, size]."""
    length = (end - start + 1).clamp(min=1)  # (K,) whole pixels
    bin_size = divide(length, bins)  # (K,) real: bins may overlap by a pixel after rounding
    b = torch.arange(bins, device=start.device, dtype=start.dtype)
    lo = torch.floor(b[None, :] * bin_size[:, None]) + start[:, None]  # (K, bins)
    hi = torch.ceil((b[None, :] + 1) * bin_size[:, None]) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """RoIPool. input: (N, C, H, W); boxes: (K, 5) (batch_index, x1, y1, x2, y2) or a list of (Ki, 4),
    in image pixels; spatial_scale: 1 / stride; impl: "auto", "reference" or "triton" (as roi_align's).
    Returns (K, C, P, Q); differentiable with respect to input (the gradient goes to each bin's max pixel)."""
    rois, (P, Q) = as_rois(input, boxes, output_size, spatial_scale)
    use_kernel = use_triton(impl, input.device, "roi_pool")
    if rois.shape[0] == 0:
        return no_rois_output(input, (P, Q))
    if use_kernel:
        return kernels("roi_pool").roi_pool(input, rois, (P, Q), spatial_scale)
    N, C, H, W = input.shape
    K = rois.shape[0]

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

    # One variable-size bag of pixels per bin, in row-major order, so that ties go to the first pixel.
    sizes = inside.sum(dim=(3, 4)).reshape(-1)  # (K*P*Q,) pixels per bin
    offsets = torch.cumsum(sizes, 0) - sizes
    image_of_bin = rois[:, 0].long().repeat_interleave(P * Q)  # (K*P*Q,)
    out = MaxOverBins.apply(input, index[inside], offsets, image_of_bin, sizes == 0)  # (K*P*Q, C)
    return out.view(K, P, Q, C).permute(0, 3, 1, 2)  # (K, C, P, Q)


class MaxOverBins(torch.autograd.Function):
    """The max of each bin, per channel, and RoIPool's gradient: each bin's gradient goes to the pixel
    that held its max. (embedding_bag's max mode has a backward too, but it is several times slower
    than the one scatter-add below, which writes straight into input's (N, C, H, W) layout.)"""

    @staticmethod
    def forward(ctx, input, pixels, offsets, image_of_bin, empty):
        """input (N, C, H, W); pixels: the table rows n*H*W + y*W + x of all bins, bin after bin;
        offsets: where each bin starts in pixels; image_of_bin (B,) int64 n; empty (B,) bool.
        Returns (B, C); an empty bin gives 0."""
        # torch.embedding_bag is what F.embedding_bag calls; it also returns, for every bin and channel,
        # the table row of the max (the first one on ties, as torchvision). Mode 2 is "max".
        out, _, _, argmax = torch.embedding_bag(feature_table(input), pixels, offsets, False, 2)
        ctx.save_for_backward(argmax, image_of_bin, empty)
        ctx.input_shape = input.shape
        return out.masked_fill_(empty[:, None], 0.0) if empty.any() else out

    @staticmethod
    def backward(ctx, grad_out):
        argmax, n, empty = ctx.saved_tensors
        N, C, H, W = ctx.input_shape
        # Table row n*H*W + y*W + x, channel c, is element n*C*H*W + c*H*W + y*W + x of the input,
        # that is row + n*(C-1)*H*W + c*H*W.
        shift = (n * ((C - 1) * H * W))[:, None] + torch.arange(C, device=n.device) * (H * W)  # (B, C)
        flat = shift.add_(argmax).clamp_(min=0)  # an empty bin's row may be -1; its gradient is 0 anyway
        if empty.any():
            grad_out = grad_out.masked_fill(empty[:, None], 0.0)  # no pixel of an empty bin gets gradient
        grad_input = grad_out.new_zeros(N * C * H * W).scatter_add_(0, flat.view(-1), grad_out.reshape(-1))
        return grad_input.view(N, C, H, W), None, None, None, None
