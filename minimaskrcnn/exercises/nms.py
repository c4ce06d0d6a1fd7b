"""Checks of nms: greedy non-maximum suppression (used on RPN proposals and, per class, on detections).

The reference is the greedy rule as a loop: visit the boxes from the best score down; a box not yet
removed is kept and removes every later box whose IoU with it is > iou_threshold. Equal scores are
visited in index order. It returns indices into the given boxes, in the order they were kept.

Shape glossary:
  N: boxes
"""
from __future__ import annotations

from functools import partial

import torch

from .core import Component, mistake


def _iou(a, b) -> float:
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def nms_loops(boxes, scores, iou_threshold, *, drop_at_equal=False, only_kept_suppress=True, ties="lower_first"):
    """(N, 4) boxes, (N,) scores -> (K,) int64 indices of the kept boxes, best first.
    The keywords switch on known mistakes."""
    b, s = boxes.tolist(), scores.tolist()
    sign = 1 if ties == "lower_first" else -1
    order = sorted(range(len(b)), key=lambda i: (-s[i], sign * i))
    removed, keep = set(), []
    for rank, i in enumerate(order):
        if i in removed:
            if only_kept_suppress:
                continue  # a removed box removes nothing
        else:
            keep.append(i)
        for j in order[rank + 1:]:
            iou = _iou(b[i], b[j])
            if iou > iou_threshold or (drop_at_equal and iou == iou_threshold):
                removed.add(j)
    return torch.tensor(keep, dtype=torch.int64)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


NMS = Component("nms", "greedy non-maximum suppression (Faster R-CNN; Mask R-CNN Sec. 3, inference)",
                {"nms": nms_loops}, [
    mistake("your NMS drops a box whose IoU equals the threshold; drop only when IoU > iou_threshold",
            nms=partial(nms_loops, drop_at_equal=True)),
    mistake("in your NMS, boxes that were removed still remove others; only kept boxes suppress (greedy: a box "
            "survives when the box that overlaps it was itself removed by a better one)",
            nms=partial(nms_loops, only_kept_suppress=False)),
    mistake("your indices are in increasing order; return them best score first",
            nms=lambda b, s, t: nms_loops(b, s, t).sort().values),
    mistake("your indices count positions in the score-sorted order; return indices into the given boxes",
            nms=lambda b, s, t: torch.argsort(torch.argsort(-s, stable=True))[nms_loops(b, s, t)]),
    mistake("your NMS starts from the lowest score; visit the boxes from the highest score down",
            nms=lambda b, s, t: nms_loops(b, -s, t)),
    mistake("for equal scores your NMS visits the higher index first; keep the lower index first (sort with "
            "stable=True, or by (-score, index))", nms=partial(nms_loops, ties="higher_first")),
])


@NMS.core("the best box removes the boxes that overlap it by IoU > iou_threshold; the others stay (hand-computed)")
def _(t):
    t.expect("box 1 (score 0.9) overlaps box 0 (0.8) by IoU 81 / 119 = 0.68 > 0.5; box 2 is far from both",
             {"boxes": _t([[1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]]),
              "scores": torch.tensor([0.8, 0.9, 0.7]), "iou_threshold": 0.5}, [1, 2], exact=True)


@NMS.convention("a box is dropped only when its IoU is > iou_threshold, not when it equals it")
def _(t):
    t.expect("box 1 is the left half of box 0: IoU exactly 0.5, threshold 0.5",
             {"boxes": _t([[0, 0, 2, 1], [0, 0, 1, 1]]), "scores": torch.tensor([0.9, 0.8]), "iou_threshold": 0.5},
             [0, 1], exact=True)


@NMS.core("only kept boxes suppress: a box removed by a better box does not remove others (greedy)")
def _(t):
    t.expect("a chain: box 0 removes box 1 (IoU 1/3 > 0.3), box 1 overlaps box 2 (IoU 1/3) but box 0 does not",
             {"boxes": _t([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]]),
              "scores": torch.tensor([0.9, 0.8, 0.7]), "iou_threshold": 0.3}, [0, 2], exact=True)


@NMS.core("the result holds indices into the given boxes, best score first")
def _(t):
    t.expect("four disjoint boxes with shuffled scores: all kept, in the order 1, 3, 2, 0",
             {"boxes": _t([[0, 0, 1, 1], [2, 0, 3, 1], [4, 0, 5, 1], [6, 0, 7, 1]]),
              "scores": torch.tensor([0.3, 0.9, 0.5, 0.7]), "iou_threshold": 0.5}, [1, 3, 2, 0], exact=True)
    t.expect("box 2 (best) removes box 0; box 1 stays",
             {"boxes": _t([[0, 0, 4, 4], [10, 10, 12, 12], [0, 0, 4, 5]]),
              "scores": torch.tensor([0.6, 0.5, 0.9]), "iou_threshold": 0.5}, [2, 1], exact=True)


@NMS.convention("equal scores: the lower index is visited (and kept) first")
def _(t):
    t.expect("boxes 0 and 1 are the same box, box 2 is elsewhere; all three score 0.5",
             {"boxes": _t([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 6, 6]]),
              "scores": torch.tensor([0.5, 0.5, 0.5]), "iou_threshold": 0.5}, [0, 2], exact=True)


@NMS.core("random boxes against a loop transcription of greedy NMS")
def _(t):
    gen = torch.Generator().manual_seed(0)
    done = 0
    while done < 3:
        xy = torch.randint(0, 12, (7, 2), generator=gen)
        boxes = torch.cat([xy, xy + torch.randint(2, 8, (7, 2), generator=gen)], dim=1).float()
        scores = torch.randperm(7, generator=gen).float() / 10 + 0.1  # distinct scores
        threshold = [0.3, 0.5, 0.7][done]
        ious = [_iou(a, b) for a in boxes.tolist() for b in boxes.tolist()]
        if any(abs(iou - threshold) < 1e-3 for iou in ious):
            continue  # an IoU at the threshold would test float rounding, not NMS
        t.expect(f"7 random boxes with whole-pixel corners, threshold {threshold}",
                 {"boxes": boxes, "scores": scores, "iou_threshold": threshold}, exact=True)
        done += 1


@NMS.core("no boxes: an empty int64 result")
def _(t):
    t.expect("(0, 4) boxes", {"boxes": _t([]), "scores": torch.zeros(0), "iou_threshold": 0.5},
             torch.zeros(0, dtype=torch.int64), exact=True)


@NMS.convention("the indices are int64 (torch.long), with or without boxes")
def _(t):
    t.expect_dtype("two boxes", {"boxes": _t([[0, 0, 1, 1], [2, 2, 3, 3]]), "scores": torch.tensor([0.5, 0.6]),
                                 "iou_threshold": 0.5}, torch.int64)
    t.expect_dtype("no boxes", {"boxes": _t([]), "scores": torch.zeros(0), "iou_threshold": 0.5}, torch.int64)
