"""Non-maximum suppression: keep the best-scoring box, drop the boxes that overlap it, repeat.

Used twice in Mask R-CNN: on RPN proposals (IoU 0.7) and, per class, on the final detections (IoU 0.5).

The greedy rule is sequential (whether box i survives depends on which earlier boxes did), but a Python
loop over boxes is slow, so we settle a block of the best remaining boxes at a time, with tensor
operations:

1. One IoU matrix per step: the block's boxes (rows) against every box still in play (columns), the
   block's own boxes first.
2. Inside the block, box j survives if no *surviving* box i < j of the block overlaps it. That is a
   fixed point, keep = ~any_i(keep_i & overlap_ij), which we find by iterating from "all survive".
   Because box j depends only on boxes before it, the iteration settles within a few steps (the
   longest chain of suppressions in the block), and the only vector that does not change under the
   update is the greedy answer.
3. The block's survivors are kept; every later box that one of them overlaps leaves play, at once.

The block is as large as a step's IoU matrix allows: a few big steps cost far fewer operations than
many small ones, and suppressed boxes leave play before the next step, so they cost no more IoUs (the
greedy loop of torchvision's C++ kernel skips them in the same way).

Shape glossary:
  N: boxes; R: boxes still in play; B: boxes of the block (the first B of the R)
"""
from __future__ import annotations

import torch

from .boxes import _check_boxes, box_area
from .triton import kernels, use_triton

# Per device: the entries of a step's B x R IoU matrix, and the smallest and largest block B. On a CPU,
# 2^18 entries (1 MiB of float32) stay in cache, and 4,000 RPN-like boxes took half the time of
# blocks of a fixed 128. On a GPU every step costs host synchronizations, so fewer, bigger steps win
# (4,000 RPN-like boxes on an H100: 39 ms with blocks of 128, 2.0 ms with 4096).
STEP = {"cpu": (2**18, 64, 256), "cuda": (2**24, 1024, 4096)}


def _overlap(rows: torch.Tensor, cols: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """IoU > iou_threshold, the IoU computed as box_iou computes it (in place, on one (B, R) buffer).
    rows (5, B), cols (5, R): x1, y1, x2, y2, area -> (B, R) bool."""
    x1, y1, x2, y2, area = rows[:, :, None].unbind(0)  # (B, 1) each
    X1, Y1, X2, Y2, AREA = cols[:, None, :].unbind(0)  # (1, R) each
    inter = torch.min(x2, X2).sub_(torch.max(x1, X1)).clamp_(min=0)  # (B, R)
    inter.mul_(torch.min(y2, Y2).sub_(torch.max(y1, Y1)).clamp_(min=0))
    union = (area + AREA).sub_(inter).clamp_(min=torch.finfo(inter.dtype).tiny)  # 0 / tiny = 0, not NaN
    return inter.div_(union) > iou_threshold


def _check(boxes: torch.Tensor, scores: torch.Tensor) -> None:
    _check_boxes(boxes, "boxes")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be (N,) with N = {boxes.shape[0]}, got shape {tuple(scores.shape)}")
    if boxes.device != scores.device:
        raise ValueError(f"boxes are on {boxes.device} but scores on {scores.device}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, impl: str = "auto") -> torch.Tensor:
    """Greedy NMS. boxes: (N, 4) (x1, y1, x2, y2); scores: (N,); impl: "auto" (the Triton kernel for
    CUDA tensors, else this code), "reference" or "triton" (ops/triton/nms.py).

    Returns int64 indices into boxes of the kept ones, in decreasing score order. A box is dropped when
    its IoU with a kept, higher-scoring box is > iou_threshold. Equal scores keep the lower index first.
    """
    _check(boxes, scores)
    if use_triton(impl, boxes.device, "nms"):
        return kernels("nms").nms(boxes, scores, iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    box = boxes[order]  # from here on, box i is the i-th best
    area = box_area(box)
    table = torch.cat([box.t(), area[None]]).contiguous()  # (5, N): x1, y1, x2, y2, area
    in_play = torch.arange(len(order), device=boxes.device)  # (R,) not yet kept or suppressed
    entries, smallest, largest = STEP.get(boxes.device.type, STEP["cpu"])
    kept = []
    while len(in_play):
        B = min(len(in_play), max(smallest, min(largest, entries // len(in_play))))
        candidates = table[:, in_play]  # (5, R)
        overlap = _overlap(candidates[:, :B], candidates, iou_threshold)  # (B, R)
        # 2. The block. suppresses[i, j]: box i overlaps box j and comes before it. The fixed point is
        # a matrix-vector product per step: j is hit when some kept i suppresses it.
        suppresses = overlap[:, :B].triu(1).to(box.dtype)  # (B, B)
        keep = torch.ones(B, dtype=torch.bool, device=boxes.device)
        while True:
            update = keep.to(box.dtype) @ suppresses == 0  # (B,)
            if torch.equal(update, keep):
                break
            keep = update
        kept.append(in_play[:B][keep])
        # 3. The survivors take the later boxes they overlap out of play.
        hit = overlap[keep, B:].any(dim=0)  # (R - B,)
        in_play = in_play[B:][~hit]
    return order[torch.cat(kept)] if kept else order


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float,
                impl: str = "auto") -> torch.Tensor:
    """NMS within each group (class, or FPN level): boxes of different idxs never suppress each other.

    One nms call per group, on the boxes as they are. (Shifting each group by a large offset so that
    one call does all groups is faster, but costs float32 precision in the IoUs.) The Triton kernel
    does all groups in one launch: its mask only lets boxes of the same group suppress each other.
    Returns int64 indices in decreasing score order, equal scores by increasing index.
    """
    if idxs.shape != scores.shape:
        raise ValueError(f"idxs must be (N,) like scores, got shape {tuple(idxs.shape)}")
    if use_triton(impl, boxes.device, "batched_nms"):
        _check(boxes, scores)
        return kernels("nms").nms(boxes, scores, iou_threshold, groups=idxs.to(boxes.device))
    kept = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    for group in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == group).squeeze(1)
        kept[members[nms(boxes[members], scores[members], iou_threshold, impl="reference")]] = True
    keep = torch.nonzero(kept).squeeze(1)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
