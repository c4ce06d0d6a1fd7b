"""Planted bug (tests/test_check.py): nms drops a box whose IoU equals the threshold (>= instead of >).
Otherwise the solution of notebooks/solutions/my_ops.py."""
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


def nms(boxes, scores, iou_threshold):
    order = torch.sort(scores, descending=True, stable=True).indices
    removed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if removed[i]:
            continue
        keep.append(i)
        removed |= box_iou(boxes[i:i + 1], boxes)[0] >= iou_threshold  # BUG: >= instead of >
    return torch.tensor(keep, dtype=torch.int64)
