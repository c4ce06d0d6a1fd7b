"""The training losses of Mask R-CNN (Sec. 3, "Multi-task loss"): L = L_cls + L_box + L_mask, plus the RPN's.

Each loss is a standalone function of explicit tensors (targets are built elsewhere, under no_grad).
Normalizations follow torchvision / Detectron, so that the numbers are comparable:

- RPN objectness: binary cross-entropy, mean over the sampled anchors of the whole batch.
- RPN boxes: smooth-L1 (beta = 1/9) summed over the positive anchors' 4 deltas, divided by the
  number of *sampled* anchors (positive and negative), as Faster R-CNN's lambda-balanced loss does.
- L_cls: cross-entropy over the K classes (background = 0), mean over sampled RoIs.
- L_box: smooth-L1 (beta = 1/9) on the deltas of the ground-truth class only, summed over foreground
  RoIs and divided by the number of sampled RoIs.
- L_mask: "sigmoid" (the paper's): per-pixel binary cross-entropy on the ground-truth class's mask
  only, mean over pixels and positive RoIs; masks of other classes get no gradient (Sec. 3: "no
  competition among classes"). "softmax": the multinomial ablation of Table 2b, see `mask_loss`.
- L_keypoint (Sec. 5, when the model has a keypoint branch): cross-entropy over the m^2 positions of each
  visible keypoint's heatmap, mean over the visible keypoints of the batch (`keypoint_loss`).

Every loss is computed in float32, also when the network runs under autocast (bf16 / fp16).

Shape glossary:
  S: sampled anchors (all images); P: positive anchors or RoIs; R: sampled RoIs (all images)
  K: classes including background; C: mask channels (K, or 1 if class-agnostic); M: mask size (28)
  Kp: keypoint types; m: heatmap size (56)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import MASK_LOSSES

BOX_BETA = 1.0 / 9  # smooth-L1 switches from quadratic to linear at |x| = 1/9 (Detectron, torchvision)


def rpn_objectness_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits: (S,) objectness logits of the sampled anchors; labels: (S,) float, 1 object / 0 background.
    Returns the mean binary cross-entropy, a scalar."""
    # float32 even under autocast: a half-precision mean over thousands of terms loses digits
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def rpn_box_loss(deltas: torch.Tensor, targets: torch.Tensor, num_sampled: int) -> torch.Tensor:
    """deltas, targets: (P, 4) predicted and target (dx, dy, dw, dh) of the positive anchors.
    Returns smooth-L1 summed over them, divided by `num_sampled` (the anchors in the objectness loss)."""
    loss = F.smooth_l1_loss(deltas.float(), targets.float(), beta=BOX_BETA, reduction="sum")
    return loss / max(num_sampled, 1)


def fast_rcnn_loss(class_logits: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor,
                   box_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The box branch's losses (L_cls, L_box).

    class_logits: (R, K); box_deltas: (R, 4K) class-specific deltas, class k at [4k:4k+4];
    labels: (R,) int64 in 0..K-1 (0 = background); box_targets: (R, 4) encoded ground-truth boxes
    (only rows with labels > 0 are used).
    """
    loss_cls = F.cross_entropy(class_logits.float(), labels)
    fg = torch.nonzero(labels > 0).squeeze(1)  # (P,)
    per_class = box_deltas.reshape(box_deltas.shape[0], -1, 4)  # (R, 4K) -> (R, K, 4)
    loss_box = F.smooth_l1_loss(per_class[fg, labels[fg]].float(), box_targets[fg].float(),
                                beta=BOX_BETA, reduction="sum")
    return loss_cls, loss_box / max(labels.numel(), 1)


def mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
              kind: str = "sigmoid") -> torch.Tensor:
    """L_mask over the positive RoIs.

    mask_logits: (P, C, M, M), C = K class masks, or 1 for class-agnostic masks (then channel 0 is used);
    labels: (P,) int64 ground-truth class of each RoI, 1..K-1;
    targets: (P, M, M) float in [0, 1], the ground-truth mask cropped to the RoI (`roi_heads.mask_targets`).

    kind="sigmoid" (the paper's): mean binary cross-entropy on channel labels[i] of RoI i.
    kind="softmax" (Table 2b, "multinomial"): a per-pixel softmax over all K channels, channel 0 standing
    for "background" (label 0 is background throughout the model). The target of a pixel is the RoI's
    class where its target is >= 0.5 and background elsewhere; the loss is the mean cross-entropy over
    pixels. Classes now compete for every pixel, which is what the paper shows to cost 5.5 mask AP.

    With no positive RoI (P = 0) the loss is 0, still connected to mask_logits so that every mask
    parameter gets a (zero) gradient, as DistributedDataParallel expects.
    """
    if kind not in MASK_LOSSES:
        raise ValueError(f"mask loss kind must be one of {MASK_LOSSES}, got {kind!r}")
    if labels.numel() == 0:
        return mask_logits.sum() * 0.0
    if kind == "softmax":
        if mask_logits.shape[1] == 1:
            raise ValueError("the softmax mask loss needs one mask per class, not class-agnostic masks")
        pixel_labels = torch.where(targets >= 0.5, labels[:, None, None], 0)  # (P, M, M) class or background
        return F.cross_entropy(mask_logits.float(), pixel_labels)
    channel = labels if mask_logits.shape[1] > 1 else torch.zeros_like(labels)
    logits = mask_logits[torch.arange(labels.numel(), device=labels.device), channel]  # (P, M, M)
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def keypoint_loss(heatmaps: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L_keypoint over the positive RoIs (Sec. 5): "for each visible ground-truth keypoint, we minimize the
    cross-entropy loss over an m^2-way softmax output".

    heatmaps: (P, Kp, m, m) logits; cells: (P, Kp) int64 index y * m + x of each keypoint's cell;
    valid: (P, Kp) bool, the keypoints that are targets (visible and inside their RoI,
    `keypoint_head.keypoint_targets`). Returns the mean cross-entropy over the valid keypoints: each
    counts once, whichever RoI and image it is in. Without any (no positive RoI, or no visible keypoint
    inside one) the loss is 0, connected to the heatmaps as `mask_loss` is.
    """
    if not bool(valid.any()):
        return heatmaps.sum() * 0.0
    logits = heatmaps.flatten(start_dim=2)  # (P, Kp, m, m) -> (P, Kp, m*m)
    return F.cross_entropy(logits[valid].float(), cells[valid])  # (V, m*m) scores of the V valid keypoints
