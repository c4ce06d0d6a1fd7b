"""Non-maximum suppression as Triton kernels: the bitmask NMS of torchvision's CUDA kernel, and the
GPU twin of ops/nms.py.

How the op maps onto GPU programs. The boxes are sorted by score first (PyTorch's sort), then:
1. mask: one program per 64 x 64 tile of box pairs (a block of 64 rows i, a block of 64 columns j).
   It computes the tile's IoUs and packs "IoU(i, j) > threshold and j comes after i" into one 64-bit
   word per row: bit r of word (i, b) says that box i, if kept, suppresses box 64 b + r. All
   (N / 64)^2 programs run at once; the mask is N x N / 64 words, not an N x N IoU matrix.
2. scan: the greedy walk is sequential, so one program does it, 64 boxes (one word) at a time, with
   `removed` (one bit per box) held in registers. For a block: its boxes that no earlier kept box
   removed are alive; inside the block, box j survives if no surviving earlier box of the block
   suppresses it, the same fixed point as the reference's (ops/nms.py), iterated on bits until it
   settles; the survivors' rows of the mask are then OR-ed into `removed`. torchvision does this walk
   on the host, after copying the mask there; here it stays on the GPU.
Box groups (batched_nms) enter the mask: boxes of different groups never suppress each other, which
gives the same answer as one NMS per group, in one launch.

The IoU is the reference's (box_iou), divided exactly (divide_rn) and compared with the threshold in
the boxes' dtype, so the kernel keeps the same boxes as the reference, ties included.

Shape glossary:
  N: boxes; B = ceil(N / 64): blocks of 64 boxes, and 64-bit words per row of the mask
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import divide_rn

WORD = 64  # boxes per mask word, as torchvision's CUDA kernel


@triton.jit
def _corners(boxes_ptr, i, ok):
    """Boxes i (a vector of indices): x1, y1, x2, y2 and area, each a vector."""
    x1 = tl.load(boxes_ptr + i * 4 + 0, mask=ok, other=0.0)
    y1 = tl.load(boxes_ptr + i * 4 + 1, mask=ok, other=0.0)
    x2 = tl.load(boxes_ptr + i * 4 + 2, mask=ok, other=0.0)
    y2 = tl.load(boxes_ptr + i * 4 + 3, mask=ok, other=0.0)
    return x1, y1, x2, y2, tl.maximum(x2 - x1, 0.0) * tl.maximum(y2 - y1, 0.0)


@triton.jit
def nms_mask_kernel(boxes_ptr, groups_ptr, threshold_ptr, mask_ptr, n, B,
                    HAS_GROUPS: tl.constexpr, TINY: tl.constexpr, WORD: tl.constexpr):
    """boxes: (N, 4) sorted by score; groups: (N,) int64 (when HAS_GROUPS); threshold: (1,) in the boxes'
    dtype; mask: (N, B) int64. Program (block of rows, block of columns)."""
    i = tl.program_id(0) * WORD + tl.arange(0, WORD)  # (64,) rows
    j = tl.program_id(1) * WORD + tl.arange(0, WORD)  # (64,) columns
    i_ok, j_ok = i < n, j < n
    ax1, ay1, ax2, ay2, a_area = _corners(boxes_ptr, i, i_ok)
    bx1, by1, bx2, by2, b_area = _corners(boxes_ptr, j, j_ok)
    w = tl.maximum(tl.minimum(ax2[:, None], bx2[None, :]) - tl.maximum(ax1[:, None], bx1[None, :]), 0.0)
    h = tl.maximum(tl.minimum(ay2[:, None], by2[None, :]) - tl.maximum(ay1[:, None], by1[None, :]), 0.0)
    inter = w * h  # (64, 64)
    union = tl.maximum(a_area[:, None] + b_area[None, :] - inter, TINY)  # 0 / tiny = 0 for empty boxes
    suppresses = (divide_rn(inter, union) > tl.load(threshold_ptr)) & (j[None, :] > i[:, None]) & j_ok[None, :]
    if HAS_GROUPS:
        a_group = tl.load(groups_ptr + i, mask=i_ok, other=-1)
        b_group = tl.load(groups_ptr + j, mask=j_ok, other=-1)
        suppresses = suppresses & (a_group[:, None] == b_group[None, :])
    bit = tl.full([WORD], 1, tl.int64) << tl.arange(0, WORD).to(tl.int64)  # bit r: box 64 b + r
    words = tl.sum(tl.where(suppresses, bit[None, :], 0), axis=1)  # distinct bits: their sum is their OR
    tl.store(mask_ptr + i.to(tl.int64) * B + tl.program_id(1), words, mask=i_ok)


@triton.jit
def _or(a, b):
    return a | b


@triton.jit
def nms_scan_kernel(mask_ptr, keep_ptr, n, B, WORD: tl.constexpr, BLOCK_B: tl.constexpr):
    """mask: (N, B) int64 from nms_mask_kernel; keep: (N,) int8, 1 for a kept box. One program."""
    r = tl.arange(0, WORD)  # a box's place in its block, its bit in the block's word
    words = tl.arange(0, BLOCK_B)
    removed = tl.zeros([BLOCK_B], tl.int64)  # bit r of word b: box 64 b + r is suppressed by a kept box
    for b in range(B):
        i = b * WORD + r  # (64,) the block's boxes
        i_ok = i < n
        removed_b = tl.sum(tl.where(words == b, removed, 0), 0)  # this block's word
        alive = (((removed_b >> r.to(tl.int64)) & 1) == 0) & i_ok
        inside = tl.load(mask_ptr + i.to(tl.int64) * B + b, mask=i_ok, other=0)  # (64,) who suppresses whom
        # The fixed point keep = alive & ~(OR of the kept boxes' words), from keep = alive; it settles
        # in as many steps as the longest chain of suppressions inside the block.
        keep = alive
        previous = ~alive
        while tl.sum((keep != previous).to(tl.int32), 0) > 0:
            previous = keep
            suppressed = tl.reduce(tl.where(keep, inside, 0), 0, _or)
            keep = alive & (((suppressed >> r.to(tl.int64)) & 1) == 0)
        tl.store(keep_ptr + i, keep.to(tl.int8), mask=i_ok)
        # The block's kept boxes remove every later box they suppress.
        rows = tl.load(mask_ptr + i.to(tl.int64)[:, None] * B + words[None, :],
                       mask=keep[:, None] & (words[None, :] > b) & (words[None, :] < B), other=0)  # (64, BLOCK_B)
        removed = removed | tl.reduce(rows, 0, _or)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, groups: torch.Tensor | None = None):
    """ops.nms's Triton path (and batched_nms's, with groups), for checked arguments: boxes (N, 4),
    scores (N,), groups (N,) integers or None. Returns int64 indices of the kept boxes in decreasing
    score order, equal scores by increasing index (float16 and bfloat16 boxes compared in float32)."""
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    sorted_boxes = boxes[order].contiguous()  # box i is the i-th best
    sorted_groups = groups[order].to(torch.int64).contiguous() if groups is not None else sorted_boxes
    threshold = torch.full((1,), iou_threshold, dtype=boxes.dtype, device=boxes.device)  # no host round trip
    B = triton.cdiv(n, WORD)
    mask = torch.empty(n, B, dtype=torch.int64, device=boxes.device)
    nms_mask_kernel[(B, B)](sorted_boxes, sorted_groups, threshold, mask, n, B, HAS_GROUPS=groups is not None,
                            TINY=torch.finfo(boxes.dtype).tiny, WORD=WORD, num_warps=4)
    keep = torch.empty(n, dtype=torch.int8, device=boxes.device)
    block_b = max(triton.next_power_of_2(B), 2)
    nms_scan_kernel[(1,)](mask, keep, n, B, WORD=WORD, BLOCK_B=block_b, num_warps=min(16, max(4, block_b // 16)))
    return order[keep.bool()]
