"""Solutions to notebook 09 (implement it yourself): box_iou, encode_boxes / decode_boxes, nms, grid_anchors,
roi_pool and roi_align, written straight from their definitions.

They favour reading over speed: loops where a loop says it best (NMS, the RoI ops), whole-tensor
arithmetic where it is just as clear (IoU, the box coder). minimaskrcnn.ops has the fast versions.
Every function keeps the package's signature, so the package's checks run on them:

    python -m minimaskrcnn check all notebooks/solutions/my_ops.py

Boxes are (x1, y1, x2, y2) in pixels, continuous: a box's width is x2 - x1.
"""
import math

import torch


# --- box_iou ---

def box_iou(boxes1, boxes2):
    """Intersection over union of every pair: boxes1 (N, 4), boxes2 (M, 4) -> (N, M)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)  # (M,)
    # The overlap of box i and box j: (N, 1) against (1, M) broadcasts to (N, M).
    left = torch.max(boxes1[:, None, 0], boxes2[None, :, 0])
    top = torch.max(boxes1[:, None, 1], boxes2[None, :, 1])
    right = torch.min(boxes1[:, None, 2], boxes2[None, :, 2])
    bottom = torch.min(boxes1[:, None, 3], boxes2[None, :, 3])
    overlap = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)  # each side clamped: apart means 0
    union = area1[:, None] + area2[None, :] - overlap
    # Two boxes of zero area have union 0 and overlap 0: dividing by a tiny number instead of 0 makes
    # their IoU 0, not 0 / 0 = NaN, and changes nothing else.
    return overlap / union.clamp(min=torch.finfo(union.dtype).tiny)


# --- the box coder (Faster R-CNN, Eq. 2) ---

def centres_and_sizes(boxes):
    """(N, 4) -> centre x, centre y, width, height, each (N,)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


def encode_boxes(gt_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    """The deltas (dx, dy, dw, dh) that move proposals[i] onto gt_boxes[i]: (N, 4), (N, 4) -> (N, 4)."""
    wx, wy, ww, wh = weights
    gx, gy, gw, gh = centres_and_sizes(gt_boxes)
    px, py, pw, ph = centres_and_sizes(proposals)
    dx, dy = (gx - px) / pw, (gy - py) / ph  # the centre's move, in proposal widths and heights
    dw, dh = torch.log(gw / pw), torch.log(gh / ph)  # the size change, on a log scale
    return torch.stack([wx * dx, wy * dy, ww * dw, wh * dh], dim=1)


def decode_boxes(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    """Apply deltas (N, 4K) (K classes side by side) to proposals (N, 4) -> boxes (N, 4K)."""
    wx, wy, ww, wh = weights
    px, py, pw, ph = (v[:, None] for v in centres_and_sizes(proposals.to(deltas.dtype)))  # (N, 1) each
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy  # (N, K): every class's dx is column 4k
    # exp() of a large dw would overflow: a box may grow at most 1000 / 16 = 62.5 times
    dw = (deltas[:, 2::4] / ww).clamp(max=math.log(1000 / 16))
    dh = (deltas[:, 3::4] / wh).clamp(max=math.log(1000 / 16))
    cx, cy = px + dx * pw, py + dy * ph
    w, h = pw * torch.exp(dw), ph * torch.exp(dh)
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=2)  # (N, K, 4)
    return boxes.reshape(deltas.shape)  # (N, 4K)


# --- nms ---

def nms(boxes, scores, iou_threshold):
    """Greedy NMS: indices (int64) of the kept boxes, best score first."""
    order = torch.sort(scores, descending=True, stable=True).indices  # equal scores: lower index first
    removed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if removed[i]:
            continue  # a removed box removes nothing
        keep.append(i)
        removed |= box_iou(boxes[i:i + 1], boxes)[0] > iou_threshold  # strictly greater
    return torch.tensor(keep, dtype=torch.int64)


# --- grid_anchors ---

def grid_anchors(sizes, aspect_ratios, feature_size, stride):
    """All anchors of a feature level: (H*W*A, 4) float32, row (y * W + x) * A + a for anchor a at (y, x)."""
    H, W = feature_size
    stride_y, stride_x = (stride, stride) if isinstance(stride, (int, float)) else stride
    base = []  # the A anchors centred at (0, 0): for each aspect ratio, each size
    for a in aspect_ratios:
        for size in sizes:
            w, h = size / math.sqrt(a), size * math.sqrt(a)  # w * h = size^2 and h / w = a
            base.append([-w / 2, -h / 2, w / 2, h / 2])
    base = torch.tensor(base, dtype=torch.float32).round()  # whole pixels, half to even
    anchors = []
    for y in range(H):
        for x in range(W):  # row-major: the position's top-left image pixel is (x * stride_x, y * stride_y)
            anchors.append(base + torch.tensor([x * stride_x, y * stride_y, x * stride_x, y * stride_y]))
    return torch.cat(anchors) if anchors else torch.zeros(0, 4)


# --- roi_pool (Fast R-CNN) ---

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
        x1, y1, x2, y2 = (round_half_away(v * spatial_scale) for v in (x1, y1, x2, y2))
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


# --- roi_align (Mask R-CNN, Sec. 3) ---

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
