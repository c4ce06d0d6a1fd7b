"""Planted bug (tests/test_check.py): roi_align computes under torch.no_grad(), so no gradient reaches the
features. Otherwise the loop version of the solution in notebooks/solutions/my_ops.py."""
import math

import torch


def bilinear(fmap, y, x):
    """The value of fmap (C, H, W) at the real point (y, x), from its 4 neighbouring pixels -> (C,)."""
    C, H, W = fmap.shape
    if y < -1 or y > H or x < -1 or x > W:
        return fmap.new_zeros(C)  # more than one pixel outside the map
    y, x = min(max(y, 0.0), H - 1), min(max(x, 0.0), W - 1)  # just outside: read the border
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
    ly, lx = y - y0, x - x0  # how far past the top-left neighbour
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign: input (N, C, H, W), boxes (K, 5) (batch index, x1, y1, x2, y2) image pixels -> (K, C, P, Q)."""
    P, Q = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    shift = 0.5 if aligned else 0.0  # aligned=True: pixel centres sit at x + 0.5
    out = input.new_zeros(len(boxes), C, P, Q)
    with torch.no_grad():  # BUG: no gradient reaches input ("it is only indexing")
        for k, (n, x1, y1, x2, y2) in enumerate(boxes.tolist()):
            x1, y1, x2, y2 = (v * spatial_scale - shift for v in (x1, y1, x2, y2))  # no rounding anywhere
            width, height = x2 - x1, y2 - y1
            if not aligned:  # the original RoIAlign makes every RoI at least 1 x 1
                width, height = max(width, 1.0), max(height, 1.0)
            bin_h, bin_w = height / P, width / Q
            gy = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)  # points per bin, about 1 per pixel
            gx = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
            for p in range(P):
                for q in range(Q):
                    total = input.new_zeros(C)
                    for i in range(gy):
                        y = y1 + p * bin_h + (i + 0.5) * bin_h / gy  # point i of the bin's gy, centred
                        for j in range(gx):
                            x = x1 + q * bin_w + (j + 0.5) * bin_w / gx
                            total = total + bilinear(input[int(n)], y, x)
                    out[k, :, p, q] = total / max(gy * gx, 1)  # the average of all the bin's points
    return out
