"""Non-maximum suppression: keep the best-scoring box, drop the boxes that overlap it, repeat.

Used twice in Mask R-CNN: on RPN proposals (IoU 0.7) and, per class, on the final detections (IoU 0.5).

The greedy rule is sequential (whether box i survives depends on which earlier boxes did), but a Python
loop over boxes is slow, so we work a block of B boxes (in score order) at a time, with tensor operations:

1. Inside the block, box j survives if it was not suppressed by an earlier block and no *surviving*
   box i < j of the block overlaps it. That is a fixed point, keep = alive & ~any_i(keep_i & overlap_ij),
   which we find by iterating from "all alive survive". Because box j depends only on boxes before
   it, the iteration settles within a few steps (the longest chain of suppressions in the block), and
   the only vector that does not change under the update is the greedy answer.
2. The block's survivors then suppress every later box they overlap, at once. Later boxes already
   suppressed are left out of the IoU work, and so are the block's own suppressed boxes.

Shape glossary:
  N: boxes; B: boxes per block; R: survivors of a block; M: later boxes not yet suppressed
"""
from __future__ import annotations

import torch

from .boxes import box_iou

# Boxes resolved at once. On a CPU, 128 keeps the (128, N) IoU tiles in cache (256 ran ~1.5x slower on
# 4,000 boxes). On a GPU every block costs a few host synchronizations, so fewer, bigger blocks win
# (4,000 RPN-like boxes on an H100: 39 ms with blocks of 128, 7.8 ms with 1024, 2.0 ms with 4096).
BLOCK = {"cpu": 128, "cuda": 4096}


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS. boxes: (N, 4) (x1, y1, x2, y2); scores: (N,).

    Returns int64 indices into boxes of the kept ones, in decreasing score order. A box is dropped when
    its IoU with a kept, higher-scoring box is > iou_threshold. Equal scores keep the lower index first.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be (N,) with N = {boxes.shape[0]}, got shape {tuple(scores.shape)}")
    if boxes.device != scores.device:
        raise ValueError(f"boxes are on {boxes.device} but scores on {scores.device}")
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    boxes = boxes[order]  # from here on, box i is the i-th best
    n = boxes.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    block_size = BLOCK.get(boxes.device.type, BLOCK["cpu"])
    for start in range(0, n, block_size):
        end = min(start + block_size, n)
        # 1. Resolve the block. later[i, j]: box i comes before box j (only earlier boxes suppress).
        block = boxes[start:end]
        later = torch.ones(end - start, end - start, dtype=torch.bool, device=boxes.device).triu_(1)  # (B, B)
        suppresses = (box_iou(block, block) > iou_threshold) & later  # (B, B)
        alive = ~suppressed[start:end]  # (B,)
        keep = alive
        while True:
            update = alive & ~(suppresses & keep[:, None]).any(dim=0)  # (B,)
            if torch.equal(update, keep):
                break
            keep = update
        suppressed[start:end] = ~keep
        # 2. The block's survivors suppress the later boxes they overlap.
        rest = end + torch.nonzero(~suppressed[end:]).squeeze(1)  # (M,) later boxes still in play
        if len(rest) and keep.any():
            hit = (box_iou(block[keep], boxes[rest]) > iou_threshold).any(dim=0)  # (R, M) -> (M,)
            suppressed[rest[hit]] = True
    return order[~suppressed]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each group (class, or FPN level): boxes of different idxs never suppress each other.

    One nms call per group, on the boxes as they are. (Shifting each group by a large offset so that
    one call does all groups is faster, but costs float32 precision in the IoUs.)
    Returns int64 indices in decreasing score order, equal scores by increasing index.
    """
    if idxs.shape != scores.shape:
        raise ValueError(f"idxs must be (N,) like scores, got shape {tuple(idxs.shape)}")
    kept = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    for group in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == group).squeeze(1)
        kept[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    keep = torch.nonzero(kept).squeeze(1)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
