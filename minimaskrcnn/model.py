"""Mask R-CNN (He et al., 2017), assembled from the components of this package (Sec. 3, Fig. 1).

    images -> transform -> backbone (ResNet + FPN, or C4) -> RPN -> RoI heads (box + mask) -> postprocess

Each stage is an attribute usable on its own (model.transform, model.backbone, model.rpn,
model.roi_heads), which is how the notebooks show every step. The model computes the losses whenever
targets are given (in train or eval mode, so a validation loss is possible) and the detections in
eval mode only.

Shape glossary:
  N: images; H, W: an image's original size; D: detections of an image; G: objects of an image
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

LOSS_NAMES = ("loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box", "loss_mask")


@dataclass
class MaskRCNNOutput:
    """losses: scalar tensors by name (LOSS_NAMES), empty without targets.
    detections: eval mode only (else None), one dict per image: "boxes" (D, 4) float32 original-image
    pixels (x1, y1, x2, y2), "labels" (D,) int64 in 1..K-1, "scores" (D,) float32, "masks" (D, H, W)
    float32 probabilities pasted into the original image."""

    losses: dict[str, torch.Tensor]
    detections: list[dict] | None


class MaskRCNN(nn.Module):
    """model(images, targets=None) -> MaskRCNNOutput.

    images: list of (3, H, W) float tensors in [0, 1], any sizes. targets: one dict per image,
    "boxes" (G, 4) float32 pixels of that image, "labels" (G,) int64 in 1..K-1, "masks" (G, H, W)
    uint8 {0, 1}; G may be 0. Required in train mode.
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
        check_targets(targets, self.training, self.config.num_classes)
        batch, targets = self.transform(images, targets)
        features = self.backbone(batch.tensors)
        proposals, rpn_losses = self.rpn(batch, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        if detections is not None:
            detections = self.transform.postprocess(detections, batch)
        return MaskRCNNOutput(losses={**rpn_losses, **roi_losses}, detections=detections)


def check_targets(targets: list[dict] | None, training: bool, num_classes: int) -> None:
    """ValueError for what the losses cannot use (the transform checks shapes): no targets in train mode,
    no masks, a label that is not an object class of this model."""
    if training and targets is None:
        raise ValueError("targets are required in train mode (call model.eval() to only detect)")
    for i, t in enumerate(targets or []):
        if "masks" not in t:
            raise ValueError(f'targets[{i}] has no "masks" (G, H, W) uint8, which the mask loss needs')
        labels = t.get("labels")
        if torch.is_tensor(labels) and labels.numel() and not 1 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise ValueError(f'targets[{i}]["labels"] holds {labels.tolist()}, but this model has {num_classes} '
                             f"classes: object labels are 1..{num_classes - 1} (0 is the background)")
