"""RoIAlign as Triton kernels (Sec. 3, "RoIAlign"): the GPU twin of ops/roi_align.py.

How the op maps onto GPU programs:
- forward: one program per output bin (k, p, q) and block of channels. The program finds its RoI's
  bin, walks the bin's gy x gx sampling points, interpolates each from its 4 neighbouring pixels and
  averages them (or takes their max). The features are read as (N, H, W, C), so each of the 4 pixel
  reads is one contiguous vector of the block's channels: the threads of a program read neighbouring
  addresses (coalesced loads), and the output is written as (K, P, Q, C) the same way.
- backward: the same programs walk the same points (one loop, `_walk_bin`, serves both kernels) and
  add each pixel's share of the bin's gradient (gradient * bilinear weight / points) into a (N, H, W, C)
  buffer with atomic adds, since bins of different RoIs read the same pixels. In max mode the gradient
  goes to the bin's largest point (split evenly among ties, as torch.amax does in the reference).
- the adaptive grid, gy = ceil(roi height / P), is computed inside each program, so unlike the
  reference nothing is read back to the host.

Conventions are the reference's (see bilinear_taps and sample_points there): aligned shifts the RoI by
-0.5 pixel; aligned=False stretches RoIs to at least 1 x 1; a point beyond one pixel outside the map
counts 0, one just outside reads the border; a bin without points is 0. The RoI's coordinates in
feature pixels are computed with PyTorch before the launch, by the reference's own `feature_box`.

Shape glossary:
  N: images; C: channels; H, W: feature map size; K: RoIs; P, Q: output height, width
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..roi_align import feature_box
from .common import block_and_warps, divide_rn


@triton.jit
def _sample(start, b, bin_size, i, g, size):
    """Point i of bin b along one axis, start + b * bin_size + (i + 0.5) * bin_size / g (the reference's
    sample_points), and the two pixels (low, high) it interpolates from with their weights (its
    bilinear_taps): both weights are 0 beyond one pixel outside the map."""
    c = start + b * bin_size
    if c.dtype == tl.float32:  # divide_rn written out: it runs per point, and under Triton's interpreter
        c += tl.div_rn((i + 0.5) * bin_size, g.to(tl.float32))  # (the tests) each helper call is slow
    else:
        c += (i + 0.5) * bin_size / g
    inside = (c >= -1.0) & (c <= size)
    c = tl.minimum(tl.maximum(c, 0.0), size - 1)  # past the last pixel: read it alone (frac = 0 there)
    low = c.to(tl.int64)  # floor, as c >= 0
    high = tl.where(low >= size - 1, low, low + 1)
    frac = c - low.to(c.dtype)
    return low, high, tl.where(inside, 1.0 - frac, 0.0), tl.where(inside, frac, 0.0)


@triton.jit
def _roi(rois_ptr, box_ptr, k, P, Q, sampling_ratio, ALIGNED: tl.constexpr):
    """RoI k: its image, corner (y1, x1) and bin size in feature pixels, and its points per bin."""
    n = tl.load(rois_ptr + k * 5).to(tl.int64)
    x1, y1 = tl.load(box_ptr + k * 4 + 0), tl.load(box_ptr + k * 4 + 1)
    width, height = tl.load(box_ptr + k * 4 + 2) - x1, tl.load(box_ptr + k * 4 + 3) - y1
    if not ALIGNED:  # the original RoIAlign forces malformed RoIs to be 1 x 1
        width, height = tl.maximum(width, 1.0), tl.maximum(height, 1.0)
    bin_h, bin_w = divide_rn(height, P), divide_rn(width, Q)
    gy = tl.where(sampling_ratio > 0, sampling_ratio, tl.math.ceil(bin_h).to(tl.int32))  # adaptive: ceil(h / P)
    gx = tl.where(sampling_ratio > 0, sampling_ratio, tl.math.ceil(bin_w).to(tl.int32))
    return n, y1, x1, bin_h, bin_w, gy, gx


@triton.jit
def _walk_bin(x_ptr, grad_ptr, n, y1, x1, p, q, bin_h, bin_w, gy, gx, H, W, C, c, ok, acc, ties, g,
              SPREAD: tl.constexpr, MAX: tl.constexpr):
    """Bin (p, q)'s gy x gx sampling points: the one loop of the forward and the backward kernels.

    Each point is a bilinear blend of 4 pixels (channels c of each). SPREAD=False reads it: returns (acc, ties)
    updated with each point's value: their sum, or (MAX) their max and, unless ties is None (the forward pass
    does not need them), how many points reach it. SPREAD=True
    writes the gradient: atomically adds g times each of the 4 weights to its pixel of grad, for every point,
    or (MAX) for the points at the max `acc` (pixels of weight 0 are skipped: a point outside the map, or
    past the last row or column)."""
    for iy in range(gy):
        yl, yh, wyl, wyh = _sample(y1, p, bin_h, iy, gy, H)
        row_low, row_high = (n * H + yl) * W, (n * H + yh) * W  # the first pixels of the point's two rows
        for ix in range(gx):
            xl, xh, wxl, wxh = _sample(x1, q, bin_w, ix, gx, W)
            # the 4 pixels, (row, column) low or high, and their weights
            ll, lh = (row_low + xl) * C + c, (row_low + xh) * C + c
            hl, hh = (row_high + xl) * C + c, (row_high + xh) * C + c
            w_ll, w_lh, w_hl, w_hh = wyl * wxl, wyl * wxh, wyh * wxl, wyh * wxh
            if not SPREAD or MAX:  # the point's value (the average's gradient does not need it)
                v = w_ll * tl.load(x_ptr + ll, mask=ok, other=0.0)
                v += w_lh * tl.load(x_ptr + lh, mask=ok, other=0.0)
                v += w_hl * tl.load(x_ptr + hl, mask=ok, other=0.0)
                v += w_hh * tl.load(x_ptr + hh, mask=ok, other=0.0)
            if SPREAD:
                share = ok
                if MAX:  # only the points at the max have a share
                    share = ok & (v == acc)
                tl.atomic_add(grad_ptr + ll, g * w_ll, mask=tl.where(w_ll != 0, share, False), sem="relaxed")
                tl.atomic_add(grad_ptr + lh, g * w_lh, mask=tl.where(w_lh != 0, share, False), sem="relaxed")
                tl.atomic_add(grad_ptr + hl, g * w_hl, mask=tl.where(w_hl != 0, share, False), sem="relaxed")
                tl.atomic_add(grad_ptr + hh, g * w_hh, mask=tl.where(w_hh != 0, share, False), sem="relaxed")
            elif MAX:
                if ties is not None:
                    ties = tl.where(v > acc, 1, tl.where(v == acc, ties + 1, ties))
                acc = tl.maximum(acc, v)
            else:
                acc += v
    return acc, ties


@triton.jit
def roi_align_forward_kernel(x_ptr, rois_ptr, box_ptr, out_ptr, H, W, C, sampling_ratio,
                             P: tl.constexpr, Q: tl.constexpr, ALIGNED: tl.constexpr, MAX: tl.constexpr,
                             BLOCK_C: tl.constexpr):
    """x: (N, H, W, C); rois: (K, 5), column 0 the image; box: (K, 4) the RoIs in feature pixels;
    out: (K, P, Q, C). Program (bin, block of channels)."""
    bin_ = tl.program_id(0)
    k, p, q = bin_ // (P * Q), (bin_ // Q) % P, bin_ % Q
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    n, y1, x1, bin_h, bin_w, gy, gx = _roi(rois_ptr, box_ptr, k, P, Q, sampling_ratio, ALIGNED)
    if MAX:
        acc = tl.full([BLOCK_C], float("-inf"), x_ptr.dtype.element_ty)
    else:
        acc = tl.zeros([BLOCK_C], x_ptr.dtype.element_ty)
    # a read walk writes nothing: out_ptr and acc stand in for the gradient's pointer and values; the max's ties
    # matter to its gradient only (None: not counted)
    acc, _ = _walk_bin(x_ptr, out_ptr, n, y1, x1, p, q, bin_h, bin_w, gy, gx, H, W, C, c, c_ok, acc, None, acc,
                       False, MAX)
    if MAX:
        acc = tl.where(gy * gx > 0, acc, 0.0)  # a bin without points (zero-size RoI) is 0
    else:
        acc = divide_rn(acc, tl.maximum(gy * gx, 1))
    tl.store(out_ptr + bin_.to(tl.int64) * C + c, acc, mask=c_ok)


@triton.jit
def roi_align_backward_kernel(grad_out_ptr, x_ptr, rois_ptr, box_ptr, grad_ptr, H, W, C, sampling_ratio,
                              P: tl.constexpr, Q: tl.constexpr, ALIGNED: tl.constexpr, MAX: tl.constexpr,
                              BLOCK_C: tl.constexpr):
    """grad_out: (K, P, Q, C); grad: (N, H, W, C), zeros on entry; x (max mode only): (N, H, W, C)."""
    bin_ = tl.program_id(0)
    k, p, q = bin_ // (P * Q), (bin_ // Q) % P, bin_ % Q
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    n, y1, x1, bin_h, bin_w, gy, gx = _roi(rois_ptr, box_ptr, k, P, Q, sampling_ratio, ALIGNED)
    g = tl.load(grad_out_ptr + bin_.to(tl.int64) * C + c, mask=c_ok, other=0.0)
    best = tl.full([BLOCK_C], float("-inf"), x_ptr.dtype.element_ty)
    ties = tl.zeros([BLOCK_C], tl.int32)
    if MAX:  # first the bin's max per channel, and how many points reach it: they share the gradient
        best, ties = _walk_bin(x_ptr, grad_ptr, n, y1, x1, p, q, bin_h, bin_w, gy, gx, H, W, C, c, c_ok, best, ties,
                               g, False, True)
        g = divide_rn(g, tl.maximum(ties, 1))
    else:
        g = divide_rn(g, tl.maximum(gy * gx, 1))
    _walk_bin(x_ptr, grad_ptr, n, y1, x1, p, q, bin_h, bin_w, gy, gx, H, W, C, c, c_ok, best, ties, g, True, MAX)


class RoIAlignFunction(torch.autograd.Function):
    """RoIAlign's forward and backward kernels as one differentiable op (input only; the boxes get
    no gradient, as in the reference and torchvision)."""

    @staticmethod
    def forward(ctx, input, rois, box, output_size, sampling_ratio, aligned, mode):
        """input: (N, C, H, W) float32/64; rois: (K, 5); box: (K, 4) RoIs in feature pixels.
        Returns (K, C, P, Q), a view of a (K, P, Q, C) tensor."""
        N, C, H, W = input.shape
        (P, Q), K = output_size, rois.shape[0]
        x = input.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C): channels contiguous; free if channels_last
        out = x.new_empty(K, P, Q, C)
        block, warps = block_and_warps(C)
        grid = (K * P * Q, triton.cdiv(C, block))
        roi_align_forward_kernel[grid](x, rois, box, out, H, W, C, sampling_ratio, P=P, Q=Q, ALIGNED=aligned,
                                       MAX=mode == "max", BLOCK_C=block, num_warps=warps)
        ctx.save_for_backward(x if mode == "max" else None, rois, box)
        ctx.shape, ctx.args = (N, C, H, W), (sampling_ratio, aligned, mode)
        return out.permute(0, 3, 1, 2)  # (K, C, P, Q)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, rois, box = ctx.saved_tensors
        (N, C, H, W), (sampling_ratio, aligned, mode) = ctx.shape, ctx.args
        K, _, P, Q = grad_out.shape
        g = grad_out.permute(0, 2, 3, 1).contiguous()  # (K, P, Q, C)
        grad = g.new_zeros(N, H, W, C)
        block, warps = block_and_warps(C)
        grid = (K * P * Q, triton.cdiv(C, block))
        roi_align_backward_kernel[grid](g, x if x is not None else g, rois, box, grad, H, W, C, sampling_ratio,
                                        P=P, Q=Q, ALIGNED=aligned, MAX=mode == "max", BLOCK_C=block,
                                        num_warps=warps)
        return grad.permute(0, 3, 1, 2), None, None, None, None, None, None  # (N, C, H, W)


def roi_align(input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int, aligned: bool, mode: str) -> torch.Tensor:
    """ops.roi_align's Triton path, for checked arguments: input (N, C, H, W); rois (K > 0, 5) in input's
    dtype, image pixels. Returns (K, C, P, Q) in input's dtype (float16 and bfloat16 computed in float32)."""
    dtype = input.dtype
    if dtype not in (torch.float32, torch.float64):
        input, rois = input.float(), rois.float()
    box = feature_box(rois, spatial_scale, aligned)  # (K, 4)
    out = RoIAlignFunction.apply(input, rois.contiguous(), box, output_size, int(sampling_ratio), bool(aligned), mode)
    return out.to(dtype)
