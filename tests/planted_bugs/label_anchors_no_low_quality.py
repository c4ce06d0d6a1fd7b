"""Planted bug (tests/test_check.py): label_anchors without the low-quality rule, so that an object whose best
anchor has IoU < 0.7 gets no positive anchor. Otherwise the solution of notebooks/solutions/my_ops.py."""
import torch


def box_iou(boxes1, boxes2):
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)
    left = torch.max(boxes1[:, None, 0], boxes2[None, :, 0])
    top = torch.max(boxes1[:, None, 1], boxes2[None, :, 1])
    right = torch.min(boxes1[:, None, 2], boxes2[None, :, 2])
    bottom = torch.min(boxes1[:, None, 3], boxes2[None, :, 3])
    overlap = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)
    union = area1[:, None] + area2[None, :] - overlap
    return overlap / union.clamp(min=torch.finfo(union.dtype).tiny)


def label_anchors(anchors, gt_boxes, fg_iou_thresh=0.7, bg_iou_thresh=0.3):
    if len(gt_boxes) == 0:
        return torch.full((len(anchors),), -1, dtype=torch.int64)
    best_iou, best_gt = box_iou(gt_boxes, anchors).max(dim=0)
    # BUG: the thresholds only; each ground truth's best anchors are not made positive
    return torch.where(best_iou >= fg_iou_thresh, best_gt, torch.where(best_iou < bg_iou_thresh, -1, -2))
