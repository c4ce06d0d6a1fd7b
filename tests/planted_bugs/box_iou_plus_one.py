"""Planted bug (tests/test_check.py): box_iou with the +1 (inclusive pixel) convention, width = x2 - x1 + 1.
Otherwise the solution of notebooks/solutions/my_ops.py."""
import torch


def box_iou(boxes1, boxes2):
    # BUG: + 1 in every width and height, as in the old inclusive-pixel convention
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1] + 1).clamp(min=0)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1] + 1).clamp(min=0)
    left = torch.max(boxes1[:, None, 0], boxes2[None, :, 0])
    top = torch.max(boxes1[:, None, 1], boxes2[None, :, 1])
    right = torch.min(boxes1[:, None, 2], boxes2[None, :, 2])
    bottom = torch.min(boxes1[:, None, 3], boxes2[None, :, 3])
    overlap = (right - left + 1).clamp(min=0) * (bottom - top + 1).clamp(min=0)
    union = area1[:, None] + area2[None, :] - overlap
    return overlap / union.clamp(min=torch.finfo(union.dtype).tiny)
