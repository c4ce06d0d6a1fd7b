"""Planted bug (tests/test_check.py): sample_rois keeps the first foreground and background RoIs instead of a
random sample. Otherwise the solution of notebooks/solutions/my_ops.py."""
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


def sample_rois(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25):
    gt_boxes = gt_boxes.to(proposals.dtype)
    candidates = torch.cat([proposals, gt_boxes])
    matched = torch.zeros(len(candidates), dtype=torch.int64)
    labels = torch.zeros(len(candidates), dtype=torch.int64)
    if len(gt_boxes):
        best_iou, matched = box_iou(gt_boxes, candidates).max(dim=0)
        labels = torch.where(best_iou >= 0.5, gt_labels[matched], 0)
    positive = torch.nonzero(labels > 0).squeeze(1)
    negative = torch.nonzero(labels == 0).squeeze(1)
    num_pos = min(len(positive), int(batch_size * positive_fraction))
    num_neg = min(len(negative), batch_size - num_pos)
    keep = torch.cat([positive[:num_pos], negative[:num_neg]])  # BUG: always the first ones, not a random sample
    return candidates[keep], labels[keep], matched[keep]
