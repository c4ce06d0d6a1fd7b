"""Planted bug (tests/test_check.py): encode_boxes forgets the weights (decode_boxes applies them).
Otherwise the solution of notebooks/solutions/my_ops.py."""
import math

import torch


def centres_and_sizes(boxes):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


def encode_boxes(gt_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    gx, gy, gw, gh = centres_and_sizes(gt_boxes)
    px, py, pw, ph = centres_and_sizes(proposals)
    # BUG: the weights are never used
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1)


def decode_boxes(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    px, py, pw, ph = (v[:, None] for v in centres_and_sizes(proposals.to(deltas.dtype)))
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=math.log(1000 / 16))
    dh = (deltas[:, 3::4] / wh).clamp(max=math.log(1000 / 16))
    cx, cy = px + dx * pw, py + dy * ph
    w, h = pw * torch.exp(dw), ph * torch.exp(dh)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=2).reshape(deltas.shape)
