"""Planted bug (tests/test_check.py): mask_targets rounds the RoI's corners to whole pixels before RoIAlign,
a quantization the paper removes. Otherwise the solution of notebooks/solutions/my_ops.py."""
import math

import torch


def bilinear(fmap, y, x):
    C, H, W = fmap.shape
    outside = (y < -1) | (y > H) | (x < -1) | (x > W)
    y, x = y.clamp(0, H - 1), x.clamp(0, W - 1)
    y0, x0 = y.floor().long(), x.floor().long()
    y1, x1 = (y0 + 1).clamp(max=H - 1), (x0 + 1).clamp(max=W - 1)
    ly, lx = y - y0, x - x0
    value = ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
             + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])
    return torch.where(outside, 0.0, value)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    P, Q = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    shift = 0.5 if aligned else 0.0
    out = []
    for n, x1, y1, x2, y2 in boxes.tolist():
        x1, y1, x2, y2 = (v * spatial_scale - shift for v in (x1, y1, x2, y2))
        width, height = x2 - x1, y2 - y1
        if not aligned:
            width, height = max(width, 1.0), max(height, 1.0)
        bin_h, bin_w = height / P, width / Q
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
        if gy == 0 or gx == 0:
            out.append(input.new_zeros(C, P, Q))
            continue
        ys = y1 + (torch.arange(P * gy, dtype=input.dtype) + 0.5) * (bin_h / gy)
        xs = x1 + (torch.arange(Q * gx, dtype=input.dtype) + 0.5) * (bin_w / gx)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        values = bilinear(input[int(n)], yy.reshape(-1), xx.reshape(-1))
        out.append(values.reshape(C, P, gy, Q, gx).mean(dim=(2, 4)))
    return torch.stack(out) if out else input.new_zeros(0, C, P, Q)


def mask_targets(gt_masks, rois, matched, size):
    boxes = torch.cat([matched[:, None].float(), rois.float().round()], dim=1)  # BUG: the corners are rounded
    return roi_align(gt_masks[:, None].float(), boxes, size, 1.0, -1, aligned=False)[:, 0]
