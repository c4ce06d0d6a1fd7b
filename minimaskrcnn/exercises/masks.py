"""Checks of mask_targets and mask_loss: what the mask branch learns from (Mask R-CNN Sec. 3, Sec. 3.1).

mask_targets: "the mask target is the intersection between an RoI and its associated ground-truth
mask" (Sec. 3.1), cropped and resized to M x M with RoIAlign, not with rounded RoI corners: the
reference is the checks' own RoIAlign loops (roi_align.py) on the matched ground truth's mask,
roi_align(gt_masks[:, None], [matched, rois], M, 1.0, sampling_ratio=-1, aligned=False), as
torchvision's project_masks_on_boxes.

mask_loss: "L_mask is defined as the average binary cross-entropy loss" over the pixels of the k-th
mask, k the RoI's ground-truth class, "only defined on positive RoIs" (Sec. 3): a per-pixel sigmoid,
no competition among classes. The reference writes the binary cross-entropy out per RoI, in its stable
form max(x, 0) - x t + log(1 + exp(-|x|)), from the logits' elements (autograd gives its gradient).

Shape glossary:
  G: ground-truth masks of an image; H, W: their size; P: RoIs; M: mask size; R: RoIs; K: classes
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F

from .core import Component, Unusable, call, mistake
from .roi_align import align_loops


def targets_loops(gt_masks, rois, matched, size, *, aligned=False, sampling_ratio=-1, crop="roi_align",
                  by_index=False):
    """(G, H, W) uint8 masks, (P, 4) rois, (P,) matched -> (P, size, size) float32. The keywords switch on
    known mistakes."""
    index = torch.arange(len(rois)) if by_index else matched
    if crop != "roi_align":  # the ground truth cut at the rounded RoI, then resized
        out = []
        for g, box in zip(index.tolist(), rois.tolist()):
            x1, y1, x2, y2 = (round(v) for v in box)
            piece = gt_masks[g, max(y1, 0):max(y2, y1 + 1), max(x1, 0):max(x2, x1 + 1)].double()[None, None]
            mode = {"nearest": "nearest"}.get(crop, "bilinear")
            kwargs = {} if mode == "nearest" else {"align_corners": False}
            out.append(F.interpolate(piece, size=(size, size), mode=mode, **kwargs)[0, 0] if piece.numel()
                       else torch.zeros(size, size, dtype=torch.float64))
        return torch.stack(out).float() if out else torch.zeros(0, size, size)
    boxes = rois.double()
    if crop == "roi_align" and sampling_ratio == "rounded":
        boxes, sampling_ratio = boxes.round(), -1
    rows = torch.cat([index.double()[:, None], boxes], dim=1)
    return align_loops(gt_masks[:, None].double(), rows, size, 1.0, sampling_ratio, aligned)[:, 0].float()


def loss_loops(mask_logits, labels, targets, *, channels="label", positives_only=True, mean="pixels", log="stable"):
    """(R, K, M, M) logits, (R,) labels (0 background), (R, M, M) targets -> the scalar L_mask.
    The keywords switch on known mistakes."""
    terms = []
    for i, k in enumerate(labels.tolist()):
        if positives_only and k == 0:
            continue
        t = targets[i].to(mask_logits.dtype)
        if channels == "softmax":  # a softmax over the classes, pixel target: the class where t >= 0.5
            pixel_class = torch.where(t >= 0.5, k, 0).reshape(-1)
            x = mask_logits[i].reshape(mask_logits.shape[1], -1).t()  # (M*M, K)
            terms.append(-(x.log_softmax(dim=1)[torch.arange(len(pixel_class)), pixel_class]).reshape(t.shape))
            continue
        x = {"label": mask_logits[i, k], "all": mask_logits[i], "minus_one": mask_logits[i, k - 1]}[channels]
        if log == "stable":
            bce = x.clamp(min=0) - x * t + torch.log1p(torch.exp(-x.abs()))
        else:  # log(sigmoid(x)): -inf once sigmoid rounds to 0 or 1; F.binary_cross_entropy clamps it at -100
            p = torch.sigmoid(x)
            low = -math.inf if log == "naive" else -100.0
            bce = -(t * torch.log(p).clamp(min=low) + (1 - t) * torch.log(1 - p).clamp(min=low))
        terms.append(bce)
    if not terms:
        return mask_logits.sum() * 0.0  # still a function of the logits: every one gets a (zero) gradient
    if mean == "per_roi_summed":
        return torch.stack([b.mean() for b in terms]).sum()
    total = torch.stack([b.sum() for b in terms]).sum()
    count = sum(b.numel() for b in terms) if mean == "pixels" else labels.numel() * targets[0].numel()
    return total / count


# --- mask_targets -------------------------------------------------------------------------------

CROPPED = ("your targets equal the ground-truth mask cut at the rounded RoI and resized (F.interpolate, bilinear or "
           "nearest): the paper crops with RoIAlign, no rounding anywhere, as the mask branch's features are: "
           "roi_align(gt_masks[:, None].float(), rois with matched as the image index, M, 1.0, -1, aligned=False)")

MASK_TARGETS = Component("mask_targets", "the ground-truth masks cropped to their RoIs with RoIAlign, M x M "
                         "(Mask R-CNN Sec. 3.1)", {"mask_targets": targets_loops}, [
    mistake("RoI i crops ground-truth mask matched[i], not mask i", mask_targets=partial(targets_loops, by_index=True)),
    mistake(CROPPED, mask_targets=partial(targets_loops, crop="bilinear")),
    mistake(CROPPED, mask_targets=partial(targets_loops, crop="nearest")),
    mistake("your RoI corners are rounded to whole pixels before sampling: RoIAlign rounds nothing (the "
            "quantization it removes, Sec. 3)", mask_targets=partial(targets_loops, sampling_ratio="rounded")),
    mistake("your targets equal RoIAlign with aligned=True; torchvision's project_masks_on_boxes uses "
            "aligned=False, where mask pixel (y, x) holds its value at the point (y, x)",
            mask_targets=partial(targets_loops, aligned=True)),
    mistake("your targets use 2 x 2 sampling points per bin; torchvision's project_masks_on_boxes uses the "
            "adaptive grid (sampling_ratio=-1): ceil(roi_height / M) x ceil(roi_width / M)",
            mask_targets=partial(targets_loops, sampling_ratio=2)),
])


def _masks():
    """Two 12 x 12 ground truths: 0, a square on pixels 2..7; 1, the left half, columns 0..5."""
    m = torch.zeros(2, 12, 12, dtype=torch.uint8)
    m[0, 2:8, 2:8] = 1
    m[1, :, :6] = 1
    return m


def _case(rois, matched, size=2):
    return {"gt_masks": _masks(), "rois": torch.tensor(rois, dtype=torch.float32).reshape(-1, 4),
            "matched": torch.tensor(matched, dtype=torch.int64), "size": size}


ALIGNED = [{"mask_targets": partial(targets_loops, aligned=True)}]  # the other pixel frame, accepted by the core


@MASK_TARGETS.core("an RoI inside the object gives all ones, an RoI away from it all zeros")
def _(t):
    t.expect("ground truth 0, the square on pixels 2..7; RoI (3, 3, 6, 6) inside it, (9, 9, 11, 11) away from it",
             _case([[3, 3, 6, 6], [9, 9, 11, 11]], [0, 0]), [[[1.0, 1], [1, 1]], [[0.0, 0], [0, 0]]])


@MASK_TARGETS.core("RoI i crops ground-truth mask matched[i]")
def _(t):
    t.expect("the RoI (0, 9, 3, 11) twice, on ground truth 1 (the left half: ones) and 0 (the square: zeros)",
             _case([[0, 9, 3, 11], [0, 9, 3, 11]], [1, 0]), [[[1.0, 1], [1, 1]], [[0.0, 0], [0, 0]]])


@MASK_TARGETS.core("the crop is RoIAlign's: bilinear samples of the mask in the RoI, no rounding (aligned=False or "
                   "True, both accepted here; 2 x 2 points per bin)")
def _(t):
    t.expect("ground truth 1 (the left half, columns 0..5), RoI (3.3, 2, 8.7, 8), 4 x 4: the edge falls inside",
             _case([[3.3, 2, 8.7, 8]], [1], 4), also=ALIGNED)
    t.expect("ground truth 0 (the square on pixels 2..7), RoI (1.5, 4.2, 6.3, 9.1), 4 x 4",
             _case([[1.5, 4.2, 6.3, 9.1]], [0], 4), also=ALIGNED)


@MASK_TARGETS.core("the targets are float32 (in [0, 1]) for uint8 masks")
def _(t):
    t.expect_dtype("ground truth 0, RoI (3, 3, 6, 6)", _case([[3, 3, 6, 6]], [0]), torch.float32)


@MASK_TARGETS.core("no RoIs: a (0, M, M) result")
def _(t):
    t.expect("(0, 4) rois, M = 3", _case([], [], 3), torch.zeros(0, 3, 3))


@MASK_TARGETS.convention("aligned=False: mask pixel (y, x) holds its value at the point (y, x), as torchvision's "
                         "project_masks_on_boxes")
def _(t):
    t.expect("ground truth 1 (the left half), RoI (3.3, 2, 8.7, 8), 4 x 4", _case([[3.3, 2, 8.7, 8]], [1], 4))


@MASK_TARGETS.convention("sampling_ratio=-1, the adaptive grid: ceil(roi_height / M) x ceil(roi_width / M) points "
                         "per bin, as torchvision's project_masks_on_boxes")
def _(t):
    t.expect("ground truth 0 (the square), RoI (0.5, 0.5, 11.5, 11.5), 2 x 2: 6 x 6 points per bin",
             _case([[0.5, 0.5, 11.5, 11.5]], [0], 2))


@MASK_TARGETS.convention("random RoIs (some small, some partly outside the mask) against the loop transcription")
def _(t):
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 2, generator=gen) * 12 - 2
    rois = torch.cat([xy, xy + 0.5 + torch.rand(5, 2, generator=gen) * 8], dim=1)
    t.expect("5 random RoIs on the two ground truths, M = 3", _case(rois.tolist(), [0, 1, 1, 0, 1], 3))


# --- mask_loss -------------------------------------------------------------------------------------

MASK_LOSS = Component("mask_loss", "L_mask: per-pixel sigmoid cross-entropy on the ground-truth class's mask, "
                      "positive RoIs only (Mask R-CNN Sec. 3)", {"mask_loss": loss_loops}, [
    mistake("your loss covers all K masks of an RoI; only the mask of its ground-truth class, "
            "mask_logits[i, labels[i]], counts (Sec. 3: 'L_mask is only defined on the k-th mask')",
            mask_loss=partial(loss_loops, channels="all")),
    mistake("your loss is a softmax across the classes: they then compete for every pixel. L_mask is a per-pixel "
            "sigmoid on the k-th mask alone (Table 2b: the softmax costs 5.5 mask AP)",
            mask_loss=partial(loss_loops, channels="softmax")),
    mistake("channel k is class k's mask (channel 0 belongs to the background and is never used): take "
            "mask_logits[i, labels[i]], not labels[i] - 1", mask_loss=partial(loss_loops, channels="minus_one")),
    mistake("background RoIs (label 0) count in your loss; L_mask is defined on positive RoIs only",
            mask_loss=partial(loss_loops, positives_only=False)),
    mistake("your loss sums the per-RoI means; L_mask is the mean over all pixels of all positive RoIs",
            mask_loss=partial(loss_loops, mean="per_roi_summed")),
    mistake("your mean divides by the pixels of every RoI, background ones included; divide by the positive RoIs' "
            "pixels", mask_loss=partial(loss_loops, mean="all_rois")),
    mistake("log(sigmoid(x)) is -inf once sigmoid(x) rounds to 0 or 1 (|x| > 17 in float32): compute the "
            "cross-entropy from the logits, max(x, 0) - x t + log(1 + exp(-|x|)) "
            "(F.binary_cross_entropy_with_logits)", mask_loss=partial(loss_loops, log="naive")),
    mistake("F.binary_cross_entropy(sigmoid(x), t) clamps the log at -100 once sigmoid(x) rounds to 0 or 1: compute "
            "the cross-entropy from the logits (F.binary_cross_entropy_with_logits)",
            mask_loss=partial(loss_loops, log="clamped")),
])
LOSS = call("mask_loss")


def logit_gradient(functions, x):
    """A measure: the gradient of the loss with respect to mask_logits, (R, K, M, M)."""
    logits = x["mask_logits"].clone().requires_grad_(True)
    loss = functions.mask_loss(logits, x["labels"], x["targets"])
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise Unusable("a loss that does not depend on mask_logits through autograd",
                       "compute the loss from mask_logits with torch operations; with no positive RoI, return "
                       "mask_logits.sum() * 0.0, which still reaches every logit (a zero gradient)")
    (grad,) = torch.autograd.grad(loss, logits, allow_unused=True)
    return torch.zeros_like(logits) if grad is None else grad


def _random(R, K, M, labels, seed):
    gen = torch.Generator().manual_seed(seed)
    return {"mask_logits": torch.randn(R, K, M, M, generator=gen) * 3,
            "labels": torch.tensor(labels, dtype=torch.int64),
            "targets": (torch.rand(R, M, M, generator=gen) > 0.5).float()}


@MASK_LOSS.core("binary cross-entropy of sigmoid(mask_logits[i, labels[i]]) against targets[i], the mean over "
                "pixels (hand-computed)")
def _(t):
    logits = torch.tensor([[[[5.0, -5], [5, -5]], [[-5, 5], [-5, 5]], [[0, 0], [math.log(3), math.log(3)]]]])
    t.expect("1 RoI of class 2, K = 3, M = 2: logits 0 give log 2 for either target; logit log 3 (sigmoid 0.75) "
             "gives -log 0.75 for target 1, -log 0.25 for 0", {"mask_logits": logits, "labels": torch.tensor([2]),
                                                               "targets": torch.tensor([[[1.0, 0], [1, 0]]])},
             (2 * math.log(2) - math.log(0.75) - math.log(0.25)) / 4, measure=LOSS)


@MASK_LOSS.core("only the ground-truth class's mask counts: the other masks of an RoI get no gradient (no "
                "competition among classes)")
def _(t):
    t.expect("2 RoIs of classes 1 and 2, K = 3, M = 2, random logits: d loss / d mask_logits",
             _random(2, 3, 2, [1, 2], 0), measure=logit_gradient)


@MASK_LOSS.core("only positive RoIs count: a background RoI (label 0) adds no loss and gets no gradient")
def _(t):
    x = _random(3, 3, 2, [2, 0, 1], 1)
    t.expect("3 RoIs, the second one background, K = 3, M = 2: the loss", x, measure=LOSS)
    t.expect("the same: d loss / d mask_logits", x, measure=logit_gradient)


@MASK_LOSS.core("the mean is over all pixels of all positive RoIs together")
def _(t):
    t.expect("2 positive RoIs with different losses, K = 2, M = 3", _random(2, 2, 3, [1, 1], 2), measure=LOSS)


@MASK_LOSS.core("random logits, labels and targets against the loop transcription")
def _(t):
    t.expect("5 RoIs (2 background), K = 4, M = 3", _random(5, 4, 3, [3, 0, 1, 0, 2], 3), measure=LOSS)


@MASK_LOSS.convention("logits of +-20 give the exact loss: the cross-entropy is computed from the logits "
                      "(F.binary_cross_entropy_with_logits, as torchvision's maskrcnn_loss)")
def _(t):
    t.expect("1 RoI of class 1, logits 20, -20, 20, -20 against targets 0, 1, 1, 1: 20, 20, 2e-9 and 20",
             {"mask_logits": torch.tensor([[[[0.0, 0], [0, 0]], [[20, -20], [20, -20]]]]), "labels": torch.tensor([1]),
              "targets": torch.tensor([[[0.0, 1], [1, 1]]])}, 15.0, measure=LOSS)


@MASK_LOSS.convention("no positive RoI: the loss is 0 and still depends on mask_logits (a zero gradient reaches "
                      "every logit, as torchvision's mask_logits.sum() * 0)")
def _(t):
    x = _random(2, 3, 2, [0, 0], 4)
    t.expect("2 background RoIs: the loss", x, 0.0, measure=LOSS)
    t.expect("the same: d loss / d mask_logits", x, torch.zeros(2, 3, 2, 2), measure=logit_gradient)


@MASK_LOSS.convention("the loss is a float32 scalar for float32 logits")
def _(t):
    t.expect_dtype("2 RoIs, K = 3, M = 2", _random(2, 3, 2, [1, 2], 5), torch.float32, measure=LOSS)
