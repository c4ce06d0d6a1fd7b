"""Mask R-CNN (He et al., 2017), assembled from the components of this package (Sec. 3, Fig. 1).

    images -> transform -> backbone (ResNet + FPN, or C4) -> RPN -> RoI heads (box + mask) -> postprocess

The RoI heads may also hold the keypoint branch of Sec. 5 (human pose), beside the mask branch or instead of it
(RoIHeadsConfig.num_keypoints, mask_branch): the same figure, one more head.

Each stage is an attribute usable on its own (model.transform, model.backbone, model.rpn,
model.roi_heads), which is how the notebooks show every step. The model computes the losses whenever
targets are given (in train or eval mode, so a validation loss is possible) and the detections in
eval mode only.

Shape glossary:
  N: images; H, W: an image's original size; D: detections of an image; G: objects of an image
  Kp: keypoint types (RoIHeadsConfig.num_keypoints)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .resnet import build_backbone, build_res5_head
from .roi_heads import RoIHeads
from .rpn import RPN
from .transform import ImageTransform

LOSS_NAMES = ("loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box", "loss_mask")  # Mask R-CNN's


def loss_names(config: ModelConfig) -> tuple[str, ...]:
    """The losses a model of this config returns: LOSS_NAMES, without "loss_mask" when the mask branch is off,
    with "loss_keypoint" when the keypoint branch is on."""
    heads = config.roi_heads
    return LOSS_NAMES[:4] + ("loss_mask",) * heads.mask_branch + ("loss_keypoint",) * bool(heads.num_keypoints)


@dataclass
class MaskRCNNOutput:
    """losses: scalar tensors by name (`loss_names(config)`), empty without targets.
    detections: eval mode only (else None), one dict per image: "boxes" (D, 4) float32 original-image
    pixels (x1, y1, x2, y2), "labels" (D,) int64 in 1..K-1, "scores" (D,) float32; with the mask branch
    "masks" (D, H, W) float32 probabilities pasted into the original image; with the keypoint branch
    "keypoints" (D, Kp, 3) float32 (x, y, 1) original-image pixels and "keypoint_scores" (D, Kp) float32
    (each keypoint's heatmap logit)."""

    losses: dict[str, torch.Tensor]
    detections: list[dict] | None


class MaskRCNN(nn.Module):
    """model(images, targets=None) -> MaskRCNNOutput.

    images: list of (3, H, W) float tensors in [0, 1], any sizes. targets: one dict per image,
    "boxes" (G, 4) float32 pixels of that image, "labels" (G,) int64 in 1..K-1, "masks" (G, H, W)
    uint8 {0, 1} (for the mask branch), "keypoints" (G, Kp, 3) float32 (x, y, v) pixels of that image, v = 0
    not labelled, 1 hidden, 2 visible (for the keypoint branch); G may be 0. Required in train mode.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transform = ImageTransform(config.transform)
        self.backbone = build_backbone(config.backbone)
        self.rpn = RPN(config.rpn, config.anchors, self.backbone.out_channels)
        res5 = build_res5_head(config.backbone) if config.backbone.variant == "c4" else None
        self.roi_heads = RoIHeads(config.roi_heads, config.num_classes, self.backbone.out_channels,
                                  self.backbone.strides, res5)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> MaskRCNNOutput:
        check_targets(targets, self.training, self.config)
        batch, targets = self.transform(images, targets)
        features = self.backbone(batch.tensors)
        proposals, rpn_losses = self.rpn(batch, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        if detections is not None:
            detections = self.transform.postprocess(detections, batch)
        return MaskRCNNOutput(losses={**rpn_losses, **roi_losses}, detections=detections)


def check_targets(targets: list[dict] | None, training: bool, config: ModelConfig) -> None:
    """ValueError for what the losses cannot use (the transform checks shapes): no targets in train mode, no
    masks for the mask branch, no keypoints (or another number of them) for the keypoint branch, a label that
    is not an object class of this model."""
    if training and targets is None:
        raise ValueError("targets are required in train mode (call model.eval() to only detect)")
    num_classes, Kp = config.num_classes, config.roi_heads.num_keypoints
    for i, t in enumerate(targets or []):
        if config.roi_heads.mask_branch and "masks" not in t:
            raise ValueError(f'targets[{i}] has no "masks" (G, H, W) uint8, which the mask loss needs')
        keypoints = t.get("keypoints")
        if Kp and (not torch.is_tensor(keypoints) or keypoints.dim() != 3 or keypoints.shape[1:] != (Kp, 3)):
            got = f"shape {tuple(keypoints.shape)}" if torch.is_tensor(keypoints) else "none"
            raise ValueError(f'targets[{i}] needs "keypoints" (G, {Kp}, 3) float32 (x, y, visibility) for this '
                             f"model's {Kp} keypoint types; got {got}")
        labels = t.get("labels")
        if torch.is_tensor(labels) and labels.numel() and not 1 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise ValueError(f'targets[{i}]["labels"] holds {labels.tolist()}, but this model has {num_classes} '
                             f"classes: object labels are 1..{num_classes - 1} (0 is the background)")
