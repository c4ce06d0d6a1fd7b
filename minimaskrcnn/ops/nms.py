"""Non-maximum suppression: keep the best-scoring box, drop the boxes that overlap it, repeat.

Used twice in Mask R-CNN: on RPN proposals (IoU 0.7) and, per class, on the final detections (IoU 0.5).

The greedy loop is inherently sequential (whether box i survives depends on which earlier boxes did),
but the expensive part, the IoUs, is not. So, like torchvision's CUDA kernel, we compute the overlaps
of a block of boxes against all lower-scoring ones at once, and only walk the resulting yes/no matrix
one box at a time. Boxes already suppressed when their block comes up are left out of the IoU work.

Shape glossary:
  N: boxes; B: boxes per block
"""
from __future__ import annotations

import numpy as np
import torch

from .boxes import box_iou

BLOCK = 256  # rows of the overlap matrix computed at once


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
    sorted_boxes = boxes[order]
    n = boxes.shape[0]
    suppressed = np.zeros(n, dtype=bool)  # a NumPy array on the CPU: the walk below is sequential
    keep = []
    for start in range(0, n, BLOCK):
        rows = start + np.flatnonzero(~suppressed[start:start + BLOCK])  # survivors so far
        if rows.size == 0:
            continue
        # overlaps[r, j]: does survivor r suppress box start + j?  (R, N - start)
        survivors = sorted_boxes[torch.from_numpy(rows).to(boxes.device)]
        overlaps = (box_iou(survivors, sorted_boxes[start:]) > iou_threshold).cpu().numpy()
        for r, i in enumerate(rows.tolist()):
            if suppressed[i]:  # suppressed by a survivor earlier in this block
                continue
            keep.append(i)
            suppressed[start:] |= overlaps[r]
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


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
