"""Planted bug (tests/test_check.py): paste_masks resizes each mask to its box and writes it there, the textbook
way: no zero border, no grown box, so the mask is cut at the box's edge. The core passes; torchvision's
convention does not (exit status 0, and 1 with --strict)."""
import torch
import torch.nn.functional as F


def paste_masks(masks, boxes, image_size):
    D, M = masks.shape[0], masks.shape[-1]
    H, W = image_size
    out = masks.new_zeros(D, H, W)
    for d in range(D):
        x1, y1, x2, y2 = (int(v) for v in boxes[d].tolist())  # BUG (a convention): no padding, no grown box
        h, w = max(y2 - y1, 1), max(x2 - x1, 1)
        resized = F.interpolate(masks[d][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        top, left, bottom, right = max(y1, 0), max(x1, 0), min(y1 + h, H), min(x1 + w, W)
        if bottom > top and right > left:
            out[d, top:bottom, left:right] = resized[top - y1:bottom - y1, left - x1:right - x1]
    return out
