"""The second stage: box, mask and keypoint branches on each RoI (Sec. 3, Sec. 3.1 and Sec. 5).

Training (Sec. 3.1, "Training"; no gradient through the targets):
  1. the ground-truth boxes join the proposals, so every object has at least one perfect RoI;
  2. a RoI is foreground when its IoU with a ground-truth box is >= 0.5 (labelled with that box's
     class), background otherwise;
  3. `batch_size_per_image` RoIs are sampled per image, 1:3 positive:negative;
  4. box targets: the matched ground-truth box encoded on the RoI with weights (10, 10, 5, 5);
  5. mask targets: the matched ground-truth mask cropped to each positive RoI and resized to M x M
     with RoIAlign ("the intersection between an RoI and its associated ground-truth mask").
  L_mask is defined on positive RoIs only;
  6. keypoint targets (when the model has the keypoint branch, Sec. 5): each visible keypoint of the matched
     ground truth as a cell of the m x m grid over each positive RoI (`keypoint_head.py`).

Inference (Sec. 3.1, "Inference"): softmax class scores, class-specific boxes decoded and clipped,
scores <= 0.05 and empty boxes dropped, NMS at 0.5 per class, the top 100 kept; then the mask branch
runs on those detections only ("fewer, more accurate RoIs") and the predicted class's mask is taken; so does
the keypoint branch, whose heatmaps give each detection K keypoints. The mask branch can be switched off
(RoIHeadsConfig.mask_branch: a keypoint-only model), the keypoint branch on (RoIHeadsConfig.num_keypoints).

Shape glossary:
  N: images; P: proposals of an image; G: ground-truth objects of an image; R: sampled RoIs
  K: classes including background; D: detections of an image; M: mask size (28 FPN, 14 C4)
  Kp: keypoint types; m: heatmap size (56)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .box_head import BoxPredictor, C4BoxHead, FPNBoxHead
from .config import RoIHeadsConfig
from .keypoint_head import build_keypoint_branch, heatmaps_to_keypoints, keypoint_targets
from .losses import fast_rcnn_loss, keypoint_loss, mask_loss
from .mask_head import build_mask_branch
from .ops import batched_nms, box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes, roi_align_matrix
from .poolers import pool_rois, roi_feature_strides
from .matching import BACKGROUND, IGNORED, match_boxes, sample_labels


@torch.no_grad()
def sample_rois(proposals: list[torch.Tensor], targets: list[dict], cfg: RoIHeadsConfig):
    """Label and sample the RoIs of each image (steps 1-3 above).

    Returns per image: rois (R, 4), labels (R,) int64 (0 background), matched ground-truth index (R,)
    (meaningful where labels > 0). Positives come first.
    """
    rois, labels, matched = [], [], []
    for boxes, t in zip(proposals, targets):
        gt = t["boxes"].to(boxes.dtype)
        boxes = torch.cat([boxes, gt])  # (P + G, 4)
        if gt.shape[0] == 0:  # an image without objects: all background
            match = torch.full((boxes.shape[0],), BACKGROUND, dtype=torch.int64, device=boxes.device)
        else:
            match = match_boxes(box_iou(gt, boxes), cfg.fg_iou_thresh, cfg.bg_iou_thresh, allow_low_quality=False)
        label = t["labels"][match.clamp(min=0)] if gt.shape[0] else torch.zeros_like(match)
        label = torch.where(match == BACKGROUND, 0, torch.where(match == IGNORED, -1, label))
        pos, neg = sample_labels(label, cfg.batch_size_per_image, cfg.positive_fraction)
        keep = torch.cat([pos, neg])
        rois.append(boxes[keep])
        labels.append(label[keep])
        matched.append(match.clamp(min=0)[keep])
    return rois, labels, matched


@torch.no_grad()
def box_targets(rois: list[torch.Tensor], matched: list[torch.Tensor], targets: list[dict],
                weights: tuple) -> torch.Tensor:
    """(R, 4) encoded matched ground-truth box of every sampled RoI, all images (zeros without objects)."""
    out = []
    for r, m, t in zip(rois, matched, targets):
        gt = t["boxes"].to(r.dtype)
        out.append(encode_boxes(gt[m], r, weights) if gt.shape[0] else torch.zeros_like(r))
    return torch.cat(out)


@torch.no_grad()
def mask_targets(gt_masks: torch.Tensor, rois: torch.Tensor, matched: torch.Tensor, size: int) -> torch.Tensor:
    """Crop-and-resize ground-truth masks to their RoIs (step 5 above), as a bilinear RoIAlign.

    gt_masks: (G, H, W) uint8 in the resized image's pixels; rois: (P, 4) positive RoIs;
    matched: (P,) int64 ground-truth index of each. Returns (P, size, size) float32 in [0, 1], equal to
    roi_align(gt_masks[:, None], rois with the mask index as image index, size, 1.0, -1, aligned=False).

    A mask has one channel and bilinear sampling is separable, so RoIAlign is a product of matrices,
    Ay (size, H) @ mask (H, W) @ Ax^T (W, size), one per RoI: dense products, far faster than the
    op's weighted gather of single pixels.
    """
    if rois.shape[0] == 0:
        return torch.zeros(0, size, size, device=rois.device)
    H, W = gt_masks.shape[-2:]
    rois = rois.float()
    extent = (rois[:, 2:] - rois[:, :2]).clamp(min=1.0)  # (P, 2) width, height; aligned=False: at least 1 pixel
    rows = roi_align_matrix(rois[:, 1], extent[:, 1], size, H)  # (P, size, H)
    cols = roi_align_matrix(rois[:, 0], extent[:, 0], size, W)  # (P, size, W)
    out = torch.empty(rois.shape[0], size, size, device=rois.device)
    # one ground truth at a time: gt_masks[matched] would copy a whole image-sized mask per RoI
    with torch.autocast(rois.device.type, enabled=False):  # float32 targets also under autocast
        for g in matched.unique().tolist():
            idx = torch.nonzero(matched == g).squeeze(1)  # (Pg,) the RoIs of ground truth g
            # (Pg, size, H) @ (H, W) @ (Pg, W, size) -> (Pg, size, size)
            out[idx] = rows[idx] @ gt_masks[g].float() @ cols[idx].transpose(1, 2)
    return out


def detect_boxes(class_logits: torch.Tensor, box_deltas: torch.Tensor, proposals: list[torch.Tensor],
                 image_sizes: list[tuple[int, int]], cfg: RoIHeadsConfig) -> list[dict]:
    """Box-branch outputs (R, K), (R, 4K) on the proposals of all images -> per image detections
    {"boxes" (D, 4), "scores" (D,), "labels" (D,) int64 in 1..K-1}, highest score first."""
    K = class_logits.shape[1]
    scores = F.softmax(class_logits.float(), dim=-1)  # (R, K)
    boxes = decode_boxes(box_deltas.float(), torch.cat(proposals).float(), cfg.bbox_reg_weights)  # (R, 4K)
    boxes = boxes.reshape(-1, K, 4)  # (R, 4K) -> (R, K, 4)
    detections = []
    for b, s, size in zip(boxes.split([len(p) for p in proposals]), scores.split([len(p) for p in proposals]),
                          image_sizes):
        # one candidate per (RoI, object class); the background column is dropped
        labels = torch.arange(1, K, device=b.device).expand(b.shape[0], K - 1).reshape(-1)  # (P*(K-1),)
        b, s = clip_boxes(b[:, 1:], size).reshape(-1, 4), s[:, 1:].reshape(-1)  # (P*(K-1), 4), (P*(K-1),)
        keep = torch.nonzero(s > cfg.score_thresh).squeeze(1)
        keep = keep[remove_small_boxes(b[keep], cfg.min_box_size)]
        keep = keep[batched_nms(b[keep], s[keep], labels[keep], cfg.nms_thresh)[: cfg.detections_per_img]]
        detections.append({"boxes": b[keep], "scores": s[keep], "labels": labels[keep]})
    return detections


def mask_probabilities(mask_logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """(D, C, M, M) logits, (D,) predicted classes -> (D, M, M) float32 probabilities of each class's
    mask (channel 0 for class-agnostic masks); a sigmoid, or a softmax over the classes for "softmax"."""
    logits = mask_logits.float()
    probs = logits.softmax(dim=1) if kind == "softmax" else logits.sigmoid()
    channel = labels if probs.shape[1] > 1 else torch.zeros_like(labels)
    return probs[torch.arange(labels.numel(), device=labels.device), channel]


class RoIHeads(nn.Module):
    """forward(features, proposals, image_sizes, targets=None) -> (detections or None, losses).

    features: backbone maps by name; proposals: per image (P, 4) in the padded batch's pixels;
    image_sizes: (h, w) of each image; targets: per image "boxes", "labels", "masks" (with the mask branch),
    "keypoints" (G, Kp, 3) (with the keypoint branch) in that frame. Losses whenever targets are given;
    detections in eval mode, with "masks" (D, M, M) probabilities and / or "keypoints" (D, Kp, 3) (x, y, 1) and
    "keypoint_scores" (D, Kp). `res5` (build_res5_head) makes the C4 heads; without it the FPN heads are built.
    A branch that is off is None (mask_head, mask_predictor, keypoint_head, keypoint_predictor).
    """

    def __init__(self, cfg: RoIHeadsConfig, num_classes: int, in_channels: int, strides: dict[str, int],
                 res5: nn.Module | None = None):
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        self.strides = roi_feature_strides(strides, cfg.pool_levels)
        self.c4 = res5 is not None
        if self.c4:
            self.box_head = C4BoxHead(res5)
            mask_in = (res5.out_channels, math.ceil(cfg.mask_pool_size / 2))  # res5 halves the RoI grid
        else:
            self.box_head = FPNBoxHead(in_channels, cfg.box_pool_size, cfg.box_head_dim)
            mask_in = (in_channels, cfg.mask_pool_size)
        self.box_predictor = BoxPredictor(self.box_head.out_dim, num_classes)
        self.mask_head, self.mask_predictor = (build_mask_branch(cfg, *mask_in, num_classes, c4=self.c4)
                                               if cfg.mask_branch else (None, None))
        # the keypoint branch pools from the maps the box branch pools from (for C4: the stage-4 map, without res5)
        self.keypoint_head, self.keypoint_predictor = (build_keypoint_branch(cfg, in_channels)
                                                       if cfg.num_keypoints else (None, None))

    def box_branch(self, features: dict, boxes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (R, K) and box deltas (R, 4K) of the RoIs `boxes` (per image (Ri, 4))."""
        x = pool_rois(features, boxes, self.cfg.box_pool_size, self.strides, self.cfg)  # (R, C, S, S)
        return self.box_predictor(self.box_head(x))

    def mask_branch(self, features: dict, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Mask logits (R, C, M, M) of the RoIs `boxes`; C4 runs res5 first (Fig. 4 left)."""
        x = pool_rois(features, boxes, self.cfg.mask_pool_size, self.strides, self.cfg)  # (R, C, S, S)
        if self.c4:
            x = self.box_head.features(x)  # (R, C5, S/2, S/2)
        return self.mask_predictor(self.mask_head(x))

    def keypoint_branch(self, features: dict, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Keypoint heatmap logits (R, Kp, m, m) of the RoIs `boxes` (Sec. 5)."""
        x = pool_rois(features, boxes, self.cfg.keypoint_pool_size, self.strides, self.cfg)  # (R, C, S, S)
        return self.keypoint_predictor(self.keypoint_head(x))

    def forward(self, features: dict, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None):
        losses = {} if targets is None else self.losses(features, proposals, targets)
        detections = None if self.training else self.detect(features, proposals, image_sizes)
        return detections, losses

    def losses(self, features: dict, proposals: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        rois, labels, matched = sample_rois(proposals, targets, self.cfg)
        class_logits, box_deltas = self.box_branch(features, rois)
        regression = box_targets(rois, matched, targets, self.cfg.bbox_reg_weights)
        loss_cls, loss_box = fast_rcnn_loss(class_logits, box_deltas, torch.cat(labels), regression)
        losses = {"loss_classifier": loss_cls, "loss_box": loss_box}

        # the mask and keypoint branches learn on the positive RoIs only, from the ground truth each is matched to
        positive = [torch.nonzero(lb > 0).squeeze(1) for lb in labels]  # per image, (Pi,)
        pos_rois = [r[p] for r, p in zip(rois, positive)]
        pos_matched = [m[p] for m, p in zip(matched, positive)]
        if self.mask_head is not None:
            mask_logits = self.mask_branch(features, pos_rois)  # (sum Pi, C, M, M)
            M = mask_logits.shape[-1]
            gt_masks = torch.cat([mask_targets(t["masks"], r, m, M) for t, r, m in zip(targets, pos_rois, pos_matched)])
            pos_labels = torch.cat([lb[p] for lb, p in zip(labels, positive)])
            losses["loss_mask"] = mask_loss(mask_logits, pos_labels, gt_masks, self.cfg.mask_loss)
        if self.keypoint_head is not None:
            heatmaps = self.keypoint_branch(features, pos_rois)  # (sum Pi, Kp, m, m)
            cells, valid = zip(*[keypoint_targets(t["keypoints"][m], r, heatmaps.shape[-1])
                                 for t, r, m in zip(targets, pos_rois, pos_matched)])  # per image (Pi, Kp) each
            losses["loss_keypoint"] = keypoint_loss(heatmaps, torch.cat(cells), torch.cat(valid))
        return losses

    def detect(self, features: dict, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> list[dict]:
        class_logits, box_deltas = self.box_branch(features, proposals)
        detections = detect_boxes(class_logits, box_deltas, proposals, image_sizes, self.cfg)
        boxes = [d["boxes"] for d in detections]  # the other branches run on the top detections only
        counts = [len(b) for b in boxes]
        if self.mask_head is not None:
            labels = torch.cat([d["labels"] for d in detections])
            masks = mask_probabilities(self.mask_branch(features, boxes), labels, self.cfg.mask_loss)  # (sum D, M, M)
            for d, m in zip(detections, masks.split(counts)):
                d["masks"] = m
        if self.keypoint_head is not None:
            heatmaps = self.keypoint_branch(features, boxes)  # (sum D, Kp, m, m)
            keypoints, scores = heatmaps_to_keypoints(heatmaps, torch.cat(boxes))  # (sum D, Kp, 3), (sum D, Kp)
            for d, k, s in zip(detections, keypoints.split(counts), scores.split(counts)):
                d["keypoints"], d["keypoint_scores"] = k, s
        return detections
