"""Which objects of one image a model found: the per-image count behind "found 3 of 4" (notebook 06).

COCO AP (evaluation.py) summarizes a whole dataset over many thresholds; a student looking at one photo asks
a simpler question: which of its objects did the model find? An object counts as found when a detection of its
class, scoring at least `score_thresh`, overlaps its box with IoU >= `iou_thresh`. Detections are matched
greedily in order of score, each to at most one object, as COCOeval matches them at one IoU threshold: a
second detection of an object already found finds nothing.

Glossary: D detections, N ground-truth objects of the image. Boxes (x1, y1, x2, y2) in image pixels.
"""
from __future__ import annotations

import torch

from .ops import box_iou


@torch.no_grad()
def found_objects(detections: dict, target: dict, iou_thresh: float = 0.5, score_thresh: float = 0.5) -> torch.Tensor:
    """(N,) bool: whether each ground-truth object of one image is found by a detection.

    detections: "boxes" (D, 4), "labels" (D,) int64, "scores" (D,) (a model's output for the image).
    target: "boxes" (N, 4), "labels" (N,) int64 (a dataset's target: crowd regions already left out).
    """
    gt_boxes = torch.as_tensor(target["boxes"]).detach().cpu().float().reshape(-1, 4)  # (N, 4)
    gt_labels = torch.as_tensor(target["labels"]).detach().cpu().reshape(-1)  # (N,)
    scores = torch.as_tensor(detections["scores"]).detach().cpu().float().reshape(-1)  # (D,)
    keep = scores >= score_thresh
    order = scores[keep].argsort(descending=True)  # best first, as COCOeval
    boxes = torch.as_tensor(detections["boxes"]).detach().cpu().float().reshape(-1, 4)[keep][order]  # (D', 4)
    labels = torch.as_tensor(detections["labels"]).detach().cpu().reshape(-1)[keep][order]  # (D',)
    found = torch.zeros(len(gt_boxes), dtype=torch.bool)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return found
    iou = box_iou(boxes, gt_boxes)  # (D', N)
    for d in range(len(boxes)):
        candidates = (gt_labels == labels[d]) & ~found & (iou[d] >= iou_thresh)  # (N,)
        if candidates.any():
            best = torch.where(candidates, iou[d], torch.full_like(iou[d], -1.0)).argmax()
            found[best] = True
    return found
