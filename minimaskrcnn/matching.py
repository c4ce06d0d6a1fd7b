"""Matching boxes to ground-truth objects and sampling a balanced minibatch of them: the shared first step of
the RPN's targets (anchors, Faster R-CNN Sec. 3.1.2) and of the RoI heads' (proposals, Mask R-CNN Sec. 3.1).

Both label each box by its best IoU with a ground-truth box (foreground, background, or ignored in between),
then sample a fixed number per image with at most a given fraction of foreground: 256 anchors at most half
positive for the RPN, 512 RoIs (64 for C4) with 1:3 positive to negative for the heads. No gradient flows here.

Shape glossary:
  G: ground-truth boxes of an image; B: boxes to label (anchors or proposals)
"""
from __future__ import annotations

import torch

BACKGROUND, IGNORED = -1, -2  # values of match_boxes for unmatched boxes


@torch.no_grad()
def match_boxes(iou: torch.Tensor, fg_thresh: float, bg_thresh: float, allow_low_quality: bool) -> torch.Tensor:
    """Match each box (anchor or proposal) to a ground-truth box.

    iou: (G, B) IoU of G ground-truth boxes with B boxes, G >= 1.
    Returns (B,) int64: the matched ground-truth index where the best IoU >= fg_thresh, BACKGROUND (-1)
    where it is < bg_thresh, IGNORED (-2) in between. With allow_low_quality (the RPN), each ground
    truth's best boxes, ties included, are matched too (to their own best ground truth), so that every
    object has a positive anchor; a ground truth that overlaps no box at all gets none.
    """
    best_iou, best_gt = iou.max(dim=0)  # (B,), (B,)
    matches = torch.where(best_iou >= fg_thresh, best_gt,
                          torch.where(best_iou < bg_thresh, BACKGROUND, IGNORED))
    if allow_low_quality:
        best_for_gt = iou.max(dim=1, keepdim=True).values  # (G, 1)
        is_best = ((iou == best_for_gt) & (best_for_gt > 0)).any(dim=0)  # (B,)
        matches = torch.where(is_best, best_gt, matches)
    return matches


@torch.no_grad()
def sample_labels(labels: torch.Tensor, batch_size: int, positive_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly pick at most `batch_size` boxes, at most `positive_fraction` of them positive.

    labels: (B,) >= 1 positive (a class or 1), 0 negative, -1 ignored.
    Returns (positive indices, negative indices), int64; negatives fill what positives leave.
    """
    positive = torch.nonzero(labels >= 1).squeeze(1)
    negative = torch.nonzero(labels == 0).squeeze(1)
    num_pos = min(positive.numel(), int(batch_size * positive_fraction))
    num_neg = min(negative.numel(), batch_size - num_pos)
    pos = positive[torch.randperm(positive.numel(), device=labels.device)[:num_pos]]
    neg = negative[torch.randperm(negative.numel(), device=labels.device)[:num_neg]]
    return pos, neg
