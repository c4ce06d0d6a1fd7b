"""Planted bug (tests/test_check.py): grid_anchors takes the aspect ratio as w / h instead of h / w.
Otherwise the solution of notebooks/solutions/my_ops.py."""
import math

import torch


def grid_anchors(sizes, aspect_ratios, feature_size, stride):
    H, W = feature_size
    stride_y, stride_x = (stride, stride) if isinstance(stride, (int, float)) else stride
    base = []
    for a in aspect_ratios:
        for size in sizes:
            w, h = size * math.sqrt(a), size / math.sqrt(a)  # BUG: a = w / h, so a = 2 is wide
            base.append([-w / 2, -h / 2, w / 2, h / 2])
    base = torch.tensor(base, dtype=torch.float32).round()
    anchors = []
    for y in range(H):
        for x in range(W):
            anchors.append(base + torch.tensor([x * stride_x, y * stride_y, x * stride_x, y * stride_y]))
    return torch.cat(anchors) if anchors else torch.zeros(0, 4)
