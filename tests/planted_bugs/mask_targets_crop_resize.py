"""Planted bug (tests/test_check.py): mask_targets cuts the ground-truth mask at the rounded RoI and resizes the
piece with F.interpolate, instead of sampling it with RoIAlign (no rounding)."""
import torch
import torch.nn.functional as F


def mask_targets(gt_masks, rois, matched, size):
    out = []
    for g, (x1, y1, x2, y2) in zip(matched.tolist(), rois.tolist()):
        x1, y1, x2, y2 = (round(v) for v in (x1, y1, x2, y2))  # BUG: rounded corners, a cut and a resize
        piece = gt_masks[g, y1:y2, x1:x2].float()
        out.append(F.interpolate(piece[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(out) if out else torch.zeros(0, size, size)
