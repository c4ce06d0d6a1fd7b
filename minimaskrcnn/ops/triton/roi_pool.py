"""RoIPool as Triton kernels (Fast R-CNN, Sec. 2.1): the GPU twin of ops/roi_pool.py.

How the op maps onto GPU programs:
- forward: one program per output bin (k, p, q) and block of channels. The program rounds its bin's
  edges to whole pixels and walks the bin's pixels row by row, keeping, per channel, the largest value
  and the pixel that held it (a strictly larger value replaces it, so ties go to the first pixel in
  row-major order, as in torchvision). The features are read as (N, H, W, C), so each pixel is one
  contiguous load of the block's channels (coalesced); the output and the argmax are (K, P, Q, C).
- backward: the same programs send each bin's gradient to its argmax pixel with an atomic add, since
  bins overlap (rounded outward, neighbouring bins share a row or column) and RoIs overlap.

Conventions are the reference's: the RoI's corners rounded half away from zero (computed with PyTorch
before the launch, as the reference does), a quantized RoI covers pixels start..end inclusive (at
least 1), bin edges floor(b * size) and ceil((b + 1) * size) clipped to the map, an empty bin is 0.

Shape glossary:
  N: images; C: channels; H, W: feature map size; K: RoIs; P, Q: output height, width
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..rois import round_half_away
from .common import block_and_warps, divide_rn


@triton.jit
def _bin_edges(start, end, b, bins, size):
    """Along one axis: bin b of the RoI covering pixels start..end is the pixel range [lo, hi)
    (the reference's bin_edges)."""
    bin_size = divide_rn(tl.maximum(end - start + 1, 1.0), bins)  # real: bins may share a pixel
    lo = tl.minimum(tl.maximum(tl.math.floor(b * bin_size) + start, 0.0), size)
    hi = tl.minimum(tl.maximum(tl.math.ceil((b + 1) * bin_size) + start, 0.0), size)
    return lo.to(tl.int64), hi.to(tl.int64)


@triton.jit
def roi_pool_forward_kernel(x_ptr, rois_ptr, box_ptr, out_ptr, argmax_ptr, H, W, C,
                            P: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """x: (N, H, W, C); rois: (K, 5), column 0 the image; box: (K, 4) the rounded RoIs in feature
    pixels; out: (K, P, Q, C); argmax: (K, P, Q, C) int32, the pixel y * W + x of each max, -1 if empty."""
    bin_ = tl.program_id(0)
    k, p, q = bin_ // (P * Q), (bin_ // Q) % P, bin_ % Q
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    n = tl.load(rois_ptr + k * 5).to(tl.int64)
    x1, y1 = tl.load(box_ptr + k * 4 + 0), tl.load(box_ptr + k * 4 + 1)
    x2, y2 = tl.load(box_ptr + k * 4 + 2), tl.load(box_ptr + k * 4 + 3)
    y_lo, y_hi = _bin_edges(y1, y2, p, P, H)
    x_lo, x_hi = _bin_edges(x1, x2, q, Q, W)
    best = tl.full([BLOCK_C], float("-inf"), x_ptr.dtype.element_ty)
    argmax = tl.full([BLOCK_C], -1, tl.int32)
    for y in range(y_lo, y_hi):
        for x in range(x_lo, x_hi):
            v = tl.load(x_ptr + ((n * H + y) * W + x) * C + c, mask=c_ok, other=0.0)
            larger = v > best  # strictly: the first pixel keeps a tie
            best = tl.where(larger, v, best)
            argmax = tl.where(larger, (y * W + x).to(tl.int32), argmax)
    empty = (y_hi <= y_lo) | (x_hi <= x_lo)
    tl.store(out_ptr + bin_.to(tl.int64) * C + c, tl.where(empty, 0.0, best), mask=c_ok)
    tl.store(argmax_ptr + bin_.to(tl.int64) * C + c, argmax, mask=c_ok)


@triton.jit
def roi_pool_backward_kernel(grad_out_ptr, rois_ptr, argmax_ptr, grad_ptr, H, W, C,
                             P: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """grad_out, argmax: (K, P, Q, C); grad: (N, H, W, C), zeros on entry."""
    bin_ = tl.program_id(0)
    k = bin_ // (P * Q)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    n = tl.load(rois_ptr + k * 5).to(tl.int64)
    g = tl.load(grad_out_ptr + bin_.to(tl.int64) * C + c, mask=c_ok, other=0.0)
    pixel = tl.load(argmax_ptr + bin_.to(tl.int64) * C + c, mask=c_ok, other=-1)
    tl.atomic_add(grad_ptr + (n * H * W + pixel) * C + c, g, mask=c_ok & (pixel >= 0), sem="relaxed")


class RoIPoolFunction(torch.autograd.Function):
    """RoIPool's forward and backward kernels as one differentiable op (input only)."""

    @staticmethod
    def forward(ctx, input, rois, box, output_size):
        """input: (N, C, H, W) float32/64; rois: (K, 5); box: (K, 4) rounded RoIs in feature pixels.
        Returns (K, C, P, Q), a view of a (K, P, Q, C) tensor."""
        N, C, H, W = input.shape
        (P, Q), K = output_size, rois.shape[0]
        x = input.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)
        out = x.new_empty(K, P, Q, C)
        argmax = torch.empty(K, P, Q, C, dtype=torch.int32, device=x.device)
        block, warps = block_and_warps(C)
        grid = (K * P * Q, triton.cdiv(C, block))
        roi_pool_forward_kernel[grid](x, rois, box, out, argmax, H, W, C, P=P, Q=Q, BLOCK_C=block, num_warps=warps)
        ctx.save_for_backward(rois, argmax)
        ctx.shape = (N, C, H, W)
        return out.permute(0, 3, 1, 2)  # (K, C, P, Q)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        rois, argmax = ctx.saved_tensors
        N, C, H, W = ctx.shape
        K, _, P, Q = grad_out.shape
        g = grad_out.permute(0, 2, 3, 1).contiguous()  # (K, P, Q, C)
        grad = g.new_zeros(N, H, W, C)
        block, warps = block_and_warps(C)
        grid = (K * P * Q, triton.cdiv(C, block))
        roi_pool_backward_kernel[grid](g, rois, argmax, grad, H, W, C, P=P, Q=Q, BLOCK_C=block, num_warps=warps)
        return grad.permute(0, 3, 1, 2), None, None, None  # (N, C, H, W)


def roi_pool(input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int],
             spatial_scale: float) -> torch.Tensor:
    """ops.roi_pool's Triton path, for checked arguments: input (N, C, H, W); rois (K > 0, 5) in input's
    dtype, image pixels. Returns (K, C, P, Q) in input's dtype (float16 and bfloat16 computed in float32)."""
    dtype = input.dtype
    if dtype not in (torch.float32, torch.float64):
        input, rois = input.float(), rois.float()
    box = round_half_away(rois[:, 1:] * spatial_scale)  # (K, 4) first quantization, as the reference's
    return RoIPoolFunction.apply(input, rois.contiguous(), box, output_size).to(dtype)
