"""Planted bug (tests/test_check.py): roi_pool rounds the RoI's corners with Python's round(), half to even (2.5 -> 2).
Otherwise the solution of notebooks/solutions/my_ops.py."""
import math

import torch


def round_half_away(v):
    """C's round(): 2.5 -> 3, -2.5 -> -3 (Python's round() gives 2)."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoIPool: input (N, C, H, W), boxes (K, 5) (batch index, x1, y1, x2, y2) image pixels -> (K, C, P, Q)."""
    P, Q = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    out = input.new_zeros(len(boxes), C, P, Q)
    for k, (n, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        # 1st quantization: the corners to whole feature pixels; the RoI covers pixels x1..x2 inclusive
        x1, y1, x2, y2 = (round(v * spatial_scale) for v in (x1, y1, x2, y2))  # BUG: round() rounds half to even
        height, width = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        for p in range(P):
            # 2nd quantization: each bin's edges to whole pixels, outward, then clipped to the map
            top = min(max(y1 + math.floor(p * height / P), 0), H)
            bottom = min(max(y1 + math.ceil((p + 1) * height / P), 0), H)
            for q in range(Q):
                left = min(max(x1 + math.floor(q * width / Q), 0), W)
                right = min(max(x1 + math.ceil((q + 1) * width / Q), 0), W)
                pixels = input[int(n), :, top:bottom, left:right]  # (C, h, w)
                if pixels.numel() > 0:  # a bin outside the map stays 0
                    out[k, :, p, q] = pixels.amax(dim=(1, 2))
    return out
