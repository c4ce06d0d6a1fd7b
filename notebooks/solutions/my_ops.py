"""Solutions to notebook 09 (implement it yourself), written straight from their definitions:

- Faster R-CNN's geometry: box_iou, encode_boxes / decode_boxes, nms, grid_anchors, roi_pool, roi_align;
- what Mask R-CNN adds: label_anchors, sample_rois, mask_targets, mask_loss, paste_masks;
- a backward pass by hand: bilinear sampling as a torch.autograd.Function (BilinearSample, bilinear_sample).

They favour reading over speed: loops where a loop says it best (NMS, RoIPool's bins, RoIAlign's RoIs),
whole-tensor arithmetic where it is just as clear (IoU, the box coder, one RoI's sampling points).
minimaskrcnn has the fast versions. The package's checks run on them, and so does the model:

    python -m minimaskrcnn check all notebooks/solutions/my_ops.py
    python -m minimaskrcnn check --in-model notebooks/solutions/my_ops.py

Boxes are (x1, y1, x2, y2) in pixels, continuous: a box's width is x2 - x1.
"""
import math

import torch
import torch.nn.functional as F


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
    """The values of fmap (C, H, W) at the real points (y[k], x[k]), from their 4 neighbouring pixels -> (C, n)."""
    C, H, W = fmap.shape
    outside = (y < -1) | (y > H) | (x < -1) | (x > W)  # more than one pixel outside the map: reads 0
    y, x = y.clamp(0, H - 1), x.clamp(0, W - 1)  # just outside: read the border
    y0, x0 = y.floor().long(), x.floor().long()
    y1, x1 = (y0 + 1).clamp(max=H - 1), (x0 + 1).clamp(max=W - 1)
    ly, lx = y - y0, x - x0  # how far past the top-left neighbour, 0..1
    value = ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
             + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])  # (C, n)
    return torch.where(outside, 0.0, value)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign: input (N, C, H, W), boxes (K, 5) (batch index, x1, y1, x2, y2) image pixels -> (K, C, P, Q)."""
    P, Q = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    shift = 0.5 if aligned else 0.0  # aligned=True: pixel centres sit at x + 0.5
    out = []
    for n, x1, y1, x2, y2 in boxes.tolist():
        x1, y1, x2, y2 = (v * spatial_scale - shift for v in (x1, y1, x2, y2))  # no rounding anywhere
        width, height = x2 - x1, y2 - y1
        if not aligned:  # the original RoIAlign makes every RoI at least 1 x 1
            width, height = max(width, 1.0), max(height, 1.0)
        bin_h, bin_w = height / P, width / Q
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)  # points per bin, about 1 per pixel
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
        if gy == 0 or gx == 0:  # an RoI of zero height or width (aligned=True) has no points: 0
            out.append(input.new_zeros(C, P, Q))
            continue
        # point i of bin p sits at y1 + p * bin_h + (i + 0.5) * bin_h / gy, i.e. row p * gy + i of this list
        ys = y1 + (torch.arange(P * gy, dtype=input.dtype) + 0.5) * (bin_h / gy)  # (P * gy,)
        xs = x1 + (torch.arange(Q * gx, dtype=input.dtype) + 0.5) * (bin_w / gx)  # (Q * gx,)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (P * gy, Q * gx)
        values = bilinear(input[int(n)], yy.reshape(-1), xx.reshape(-1))  # (C, P * gy * Q * gx)
        out.append(values.reshape(C, P, gy, Q, gx).mean(dim=(2, 4)))  # each bin: the average of its points
    return torch.stack(out) if out else input.new_zeros(0, C, P, Q)


# --- label_anchors: the RPN's targets (Faster R-CNN Sec. 3.1.2) ---

def label_anchors(anchors, gt_boxes, fg_iou_thresh=0.7, bg_iou_thresh=0.3):
    """(T,) int64 per anchor: its ground truth's index if positive, -1 background, -2 ignored."""
    if len(gt_boxes) == 0:
        return torch.full((len(anchors),), -1, dtype=torch.int64)  # nothing to find: all background
    iou = box_iou(gt_boxes, anchors)  # (G, T)
    best_iou, best_gt = iou.max(dim=0)  # (T,): each anchor's best ground truth
    matches = torch.where(best_iou >= fg_iou_thresh, best_gt, torch.where(best_iou < bg_iou_thresh, -1, -2))
    # The low-quality rule, after the thresholds: each ground truth's best anchors (ties included) are
    # positive too, matched to their own best ground truth, so that every object has a positive anchor.
    best_for_gt = iou.max(dim=1, keepdim=True).values  # (G, 1)
    is_best = ((iou == best_for_gt) & (best_for_gt > 0)).any(dim=0)  # (T,)
    return torch.where(is_best, best_gt, matches)


# --- sample_rois: the heads' 1:3 minibatch (Mask R-CNN Sec. 3.1) ---

def sample_rois(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25):
    """rois (R, 4), labels (R,) int64 (0 background), matched (R,) int64 ground-truth index of each RoI."""
    gt_boxes = gt_boxes.to(proposals.dtype)
    candidates = torch.cat([proposals, gt_boxes])  # the ground truth joins: each object has a perfect RoI
    matched = torch.zeros(len(candidates), dtype=torch.int64)
    labels = torch.zeros(len(candidates), dtype=torch.int64)
    if len(gt_boxes):
        best_iou, matched = box_iou(gt_boxes, candidates).max(dim=0)  # each candidate's best ground truth
        labels = torch.where(best_iou >= 0.5, gt_labels[matched], 0)  # "IoU of at least 0.5": foreground
    positive = torch.nonzero(labels > 0).squeeze(1)
    negative = torch.nonzero(labels == 0).squeeze(1)
    num_pos = min(len(positive), int(batch_size * positive_fraction))  # at most 1 in 4
    num_neg = min(len(negative), batch_size - num_pos)  # background fills the rest
    keep = torch.cat([positive[torch.randperm(len(positive))[:num_pos]],  # at random, without replacement
                      negative[torch.randperm(len(negative))[:num_neg]]])
    return candidates[keep], labels[keep], matched[keep]


# --- mask_targets and mask_loss (Mask R-CNN Sec. 3, Sec. 3.1) ---

def mask_targets(gt_masks, rois, matched, size):
    """Ground-truth mask matched[i] (G, H, W) cropped to rois[i] (P, 4) with RoIAlign -> (P, size, size)."""
    boxes = torch.cat([matched[:, None].float(), rois.float()], dim=1)  # the mask's index as the image index
    return roi_align(gt_masks[:, None].float(), boxes, size, 1.0, -1, aligned=False)[:, 0]


def mask_loss(mask_logits, labels, targets):
    """L_mask: mean per-pixel binary cross-entropy of each positive RoI's own class's mask (R, K, M, M)."""
    positive = torch.nonzero(labels > 0).squeeze(1)  # background RoIs have no mask to learn
    if len(positive) == 0:
        return mask_logits.sum() * 0.0  # 0, still connected to the logits
    logits = mask_logits[positive, labels[positive]]  # (P, M, M): the k-th mask only, no softmax over classes
    return F.binary_cross_entropy_with_logits(logits, targets[positive].to(logits.dtype))


# --- paste_masks (Mask R-CNN Sec. 3.1, Inference) ---

def paste_masks(masks, boxes, image_size):
    """masks (D, M, M) probabilities at boxes (D, 4) -> (D, H, W), as torchvision's paste_masks_in_image."""
    D, M = masks.shape[0], masks.shape[-1]
    H, W = image_size
    out = masks.new_zeros(D, H, W)
    scale = (M + 2) / M  # the padded mask covers the box grown by this much
    for d in range(D):
        padded = F.pad(masks[d], (1, 1, 1, 1))  # one pixel of zeros all round: the mask fades out at its edge
        centre, half = (boxes[d, :2] + boxes[d, 2:]) / 2, (boxes[d, 2:] - boxes[d, :2]) / 2 * scale
        x1, y1, x2, y2 = torch.cat([centre - half, centre + half]).trunc().long().tolist()  # towards zero
        h, w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)  # pixels y1..y2 and x1..x2, inclusive
        resized = F.interpolate(padded[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        top, left, bottom, right = max(y1, 0), max(x1, 0), min(y1 + h, H), min(x1 + w, W)  # cut at the image
        if bottom > top and right > left:
            out[d, top:bottom, left:right] = resized[top - y1:bottom - y1, left - x1:right - x1]
    return out


# --- a backward pass by hand: bilinear sampling as an autograd.Function ---

def corners(ys, xs):
    """The 4 neighbours of each point (ys, xs), each (n,), and their bilinear weights: [(i, j, weight), ...]."""
    y0, x0 = ys.floor().long(), xs.floor().long()
    ly, lx = ys - y0, xs - x0
    return [(y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx), (y0 + 1, x0, ly * (1 - lx)),
            (y0 + 1, x0 + 1, ly * lx)]


class BilinearSample(torch.autograd.Function):
    """fmap (H, W) sampled at the points (ys, xs), each (n,) -> (n,), with its backward written by hand."""

    @staticmethod
    def forward(ctx, fmap, ys, xs):
        ctx.save_for_backward(ys, xs)
        ctx.size = fmap.shape
        return sum(w * fmap[i, j] for i, j, w in corners(ys, xs))

    @staticmethod
    def backward(ctx, grad_out):
        ys, xs = ctx.saved_tensors
        grad = grad_out.new_zeros(ctx.size)
        for i, j, w in corners(ys, xs):  # each point sends w * grad_out back to each of its 4 pixels
            grad.index_put_((i, j), w * grad_out, accumulate=True)  # points that share a pixel add up
        return grad, None, None  # no gradient for the points (RoIs carry none in Mask R-CNN)


def bilinear_sample(fmap, ys, xs):
    return BilinearSample.apply(fmap, ys, xs)
