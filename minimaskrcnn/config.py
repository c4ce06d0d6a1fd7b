"""Configuration: plain nested dataclasses, one per component, with named presets.

Every field carries its unit and, where the paper (or the FPN / Faster R-CNN papers it builds on)
fixes a value, that value in a comment. Presets:

- `r50_fpn()`: the paper's ResNet-50-FPN, architecturally identical to torchvision's
  `maskrcnn_resnet50_fpn`, so its weights load (see `convert.py`).
- `r50_c4()`: the paper's ResNet-50-C4 (stage-4 features at stride 16, res5 as the RoI head).
- `cpu_small()`: a small from-scratch model sized for the synthetic shapes on a laptop CPU.

`get_config(name)` looks a preset up by name (used by the CLI).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class BackboneConfig:
    depth: int = 50  # ResNet depth: 18, 34 (basic blocks), 50, 101 (bottlenecks)
    variant: str = "fpn"  # "fpn" (P2-P6, Sec. 3.1 / FPN paper) or "c4" (stage-4 features, stride 16)
    norm: str = "frozen_bn"  # "frozen_bn" for pretrained weights, "bn" or "gn" to train from scratch
    # eps of the frozen BN, y = (x - mean) / sqrt(var + eps) * w + b. torchvision's own ResNets use 1e-5, but
    # it runs its COCO-trained Mask R-CNN weights (COCO_V1) with eps = 0.0 (`overwrite_eps`), the Detectron
    # convention those weights were trained with; `convert.coco_config()` sets it
    frozen_bn_eps: float = 1e-5
    stem_channels: int = 64  # channels after the 7x7 stem; ResNet: 64. Stage widths scale with it
    trainable_layers: int = 3  # stages (of 5, stem counted) that get gradients; torchvision: 3
    fpn_channels: int = 256  # channels of every pyramid level P2-P6; FPN paper: 256


@dataclass
class AnchorConfig:
    # One tuple of sizes (pixels, sqrt(w*h)) per feature level; FPN: 32..512, one size per level P2..P6.
    sizes: tuple = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple = (0.5, 1.0, 2.0)  # h / w, the same at every level; paper: {1:2, 1:1, 2:1}


@dataclass
class RPNConfig:
    conv_channels: int = 0  # channels of the 3x3 head conv; 0 means "same as the feature maps"
    fg_iou_thresh: float = 0.7  # anchor IoU >= 0.7 is positive (Faster R-CNN)
    bg_iou_thresh: float = 0.3  # anchor IoU < 0.3 is negative
    batch_size_per_image: int = 256  # anchors sampled per image for the loss
    positive_fraction: float = 0.5  # at most half of them positive
    pre_nms_top_n_train: int = 2000  # proposals kept per level before NMS, training
    pre_nms_top_n_test: int = 1000  # ... at test time
    post_nms_top_n_train: int = 2000  # proposals kept per image after NMS, training
    post_nms_top_n_test: int = 1000  # ... at test time
    nms_thresh: float = 0.7  # NMS IoU threshold for proposals
    min_size: float = 1e-3  # proposals narrower or shorter than this (pixels) are removed
    score_thresh: float = 0.0  # proposals with a lower objectness probability are removed


@dataclass
class RoIHeadsConfig:
    # RoI feature extraction, shared by the box and mask branches (Sec. 3, Table 2c/2d)
    pooler: str = "align"  # "align" (RoIAlign), "pool" (RoIPool) or "warp" (RoIWarp)
    aligned: bool = False  # half-pixel shift of RoIAlign; torchvision's Mask R-CNN: False
    sampling_ratio: int = 2  # bilinear samples per bin side; paper: 4 points per bin, i.e. 2x2
    pool_mode: str = "avg"  # "avg" or "max" aggregation of the samples (Table 2c)
    box_pool_size: int = 7  # RoI feature size of the box branch; paper: 7x7
    mask_pool_size: int = 14  # RoI feature size of the mask branch; paper (FPN): 14x14
    # maps every RoI pools from; () = by RoI size over P2-P5 (FPN) or the one C4 map. The ablations use
    # ("p4",), a single stride-16 map as in Table 2c, and ("p5",), stride 32 as in Table 2d
    pool_levels: tuple = ()

    # proposal labelling and sampling (Sec. 3.1, "Training")
    fg_iou_thresh: float = 0.5  # RoI IoU >= 0.5 with a ground-truth box is foreground
    bg_iou_thresh: float = 0.5  # ... and below it, background
    batch_size_per_image: int = 512  # RoIs sampled per image; paper: 512 (FPN), 64 (C4)
    positive_fraction: float = 0.25  # 1:3 positive:negative

    # box branch
    box_head_dim: int = 1024  # width of the two FC layers of the FPN box head
    bbox_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0)  # weights of (dx, dy, dw, dh)

    # mask branch
    mask_head: str = "fcn"  # "fcn" (four 3x3 convs + deconv) or "mlp" (Table 2e)
    mask_head_channels: int = 256  # channels of the mask FCN; paper: 256
    mask_head_convs: int = 4  # number of 3x3 convs; paper (FPN): 4
    mask_loss: str = "sigmoid"  # "sigmoid" (per-class binary) or "softmax" (multinomial, Table 2b)
    class_agnostic_masks: bool = False  # one mask for all classes (Sec. 4.2: "nearly as effective")

    # inference (Sec. 3.1, "Inference")
    score_thresh: float = 0.05  # detections with a lower class probability are dropped
    nms_thresh: float = 0.5  # per-class NMS IoU threshold
    detections_per_img: int = 100  # the mask branch runs on these top-scoring boxes only
    mask_threshold: float = 0.5  # binarization of pasted mask probabilities (used by evaluation)


@dataclass
class TransformConfig:
    min_size: int = 800  # shorter image side after resizing, pixels; paper: 800
    max_size: int = 1333  # cap on the longer side, pixels
    size_divisible: int = 32  # the padded batch is a multiple of this (the coarsest FPN stride)
    image_mean: tuple = (0.485, 0.456, 0.406)  # ImageNet statistics, images in [0, 1]
    image_std: tuple = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    num_classes: int = 91  # including background (label 0); torchvision's COCO models use 91
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)


def r50_fpn(num_classes: int = 91) -> ModelConfig:
    """The paper's ResNet-50-FPN; identical in architecture to torchvision's maskrcnn_resnet50_fpn."""
    return ModelConfig(num_classes=num_classes)


def r50_c4(num_classes: int = 91) -> ModelConfig:
    """The paper's ResNet-50-C4: one feature map at stride 16, res5 as the RoI head, 64 RoIs per image."""
    return ModelConfig(
        num_classes=num_classes,
        backbone=BackboneConfig(variant="c4"),
        # Faster R-CNN on C4: 15 anchors at one level, sizes 32..512 pixels.
        anchors=AnchorConfig(sizes=((32, 64, 128, 256, 512),)),
        rpn=RPNConfig(pre_nms_top_n_train=12000, pre_nms_top_n_test=6000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000),
        roi_heads=RoIHeadsConfig(box_pool_size=14, mask_pool_size=14, batch_size_per_image=64),
    )


def cpu_small(num_classes: int = 4) -> ModelConfig:
    """A from-scratch model for the synthetic shapes (128x128 images) that trains on a laptop CPU.

    A ResNet-18 with a quarter of the width, trainable BatchNorm, a 64-channel FPN, small anchors and
    heads scaled down to match; the same code paths as the paper's model. Sized so that a training
    step on 8 images of 128x128 takes well under 0.5 s on 2 CPU cores: the mask FCN dominates (4 convs
    on each positive RoI), hence 32 channels and 64 RoIs per image (at most 16 positives; these images
    hold 1-4 objects), and fewer proposals than for 800-pixel images.
    """
    return ModelConfig(
        num_classes=num_classes,
        backbone=BackboneConfig(depth=18, norm="bn", stem_channels=16, trainable_layers=5, fpn_channels=64),
        anchors=AnchorConfig(sizes=((16,), (32,), (64,), (128,), (256,))),
        rpn=RPNConfig(pre_nms_top_n_train=300, pre_nms_top_n_test=300,
                      post_nms_top_n_train=200, post_nms_top_n_test=100, batch_size_per_image=128),
        roi_heads=RoIHeadsConfig(batch_size_per_image=64, box_head_dim=256, mask_head_channels=32,
                                 detections_per_img=50),
        transform=TransformConfig(min_size=128, max_size=128),
    )


PRESETS = {"r50_fpn": r50_fpn, "r50_c4": r50_c4, "cpu_small": cpu_small}


def get_config(name: str, num_classes: int | None = None) -> ModelConfig:
    """The preset called `name` ("r50_fpn", "r50_c4", "cpu_small"), optionally with another class count."""
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]() if num_classes is None else PRESETS[name](num_classes)


def to_dict(config) -> dict:
    """A plain nested dict of a config (for checkpoints and logs)."""
    return dataclasses.asdict(config)


def from_dict(d: dict) -> ModelConfig:
    """The inverse of `to_dict`; tuples come back as tuples."""
    def tuples(v):
        return tuple(tuples(x) for x in v) if isinstance(v, (list, tuple)) else v

    parts = {"backbone": BackboneConfig, "anchors": AnchorConfig, "rpn": RPNConfig,
             "roi_heads": RoIHeadsConfig, "transform": TransformConfig}
    kwargs = {k: parts[k](**{f: tuples(x) for f, x in v.items()}) if k in parts else v for k, v in d.items()}
    return ModelConfig(**kwargs)
