"""Configuration: plain nested dataclasses, one per component, with named presets.

Every field carries its unit and, where the paper (or the FPN / Faster R-CNN papers it builds on)
fixes a value, that value in a comment. Presets:

- `r50_fpn()`: the paper's ResNet-50-FPN, architecturally identical to torchvision's
  `maskrcnn_resnet50_fpn`, so its weights load (see `convert.py`).
- `r50_c4()`: the paper's ResNet-50-C4 (stage-4 features at stride 16, res5 as the RoI head).
- `cpu_small()`: a small from-scratch model sized for the synthetic shapes on a laptop CPU.
- `keypoint_r50_fpn()` (torchvision's `keypointrcnn_resnet50_fpn`), `cpu_small_keypoints()`: keypoints, Sec. 5.

`get_config(name)` looks a preset up by name (used by the CLI).

Every field is checked once, when a config is built (`__post_init__`, which `dataclasses.replace` and
`from_dict` run too): a bad value fails at once with a ValueError that names the field and, for a choice,
lists the allowed values, instead of deep inside the model. (Assigning a field afterwards is not checked.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# The choices of the string fields, in one place (the modules that build what they name import them).
DEPTHS = (18, 34, 50, 101)  # ResNet depths: basic blocks for 18 and 34, bottlenecks for 50 and 101
VARIANTS = ("fpn", "c4")
NORMS = ("frozen_bn", "bn", "gn")
POOLERS = ("align", "pool", "warp")
POOL_MODES = ("avg", "max")
MASK_HEADS = ("fcn", "mlp")
MASK_LOSSES = ("sigmoid", "softmax")


def check_choice(owner: str, name: str, value, allowed) -> None:
    """ValueError naming owner.name and listing the allowed values, unless value is one of them."""
    if value not in allowed:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_number(owner: str, name: str, value, low=None, high=None, integer: bool = False,
                 low_open: bool = False, high_open: bool = False) -> None:
    """ValueError naming owner.name unless value is a number (an int when `integer`) within the bounds."""
    ok = isinstance(value, (int,) if integer else (int, float)) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = [f"{sign} {v}" for sign, v in ((">" if low_open else ">=", low), ("<" if high_open else "<=", high))
                  if v is not None]
        raise ValueError(f"{owner}.{name} must be {'an integer' if integer else 'a number'}"
                         f"{' ' + ' and '.join(bounds) if bounds else ''}; got {value!r}")


def check_fraction(owner: str, name: str, value) -> None:  # a probability, a fraction or an IoU threshold
    check_number(owner, name, value, 0.0, 1.0)


@dataclass
class BackboneConfig:
    depth: int = 50  # ResNet depth: 18, 34 (basic blocks), 50, 101 (bottlenecks)
    variant: str = "fpn"  # "fpn" (P2-P6, Sec. 3.1 / FPN paper) or "c4" (stage-4 features, stride 16)
    norm: str = "frozen_bn"  # "frozen_bn" for pretrained weights, "bn" or "gn" to train from scratch

    def __post_init__(self):
        check_choice("BackboneConfig", "depth", self.depth, DEPTHS)
        check_choice("BackboneConfig", "variant", self.variant, VARIANTS)
        check_choice("BackboneConfig", "norm", self.norm, NORMS)
        check_number("BackboneConfig", "stem_channels", self.stem_channels, 1, integer=True)
        check_number("BackboneConfig", "trainable_layers", self.trainable_layers, 0, 5, integer=True)
        check_number("BackboneConfig", "fpn_channels", self.fpn_channels, 1, integer=True)
        check_number("BackboneConfig", "frozen_bn_eps", self.frozen_bn_eps, 0.0)
    stem_channels: int = 64  # channels after the 7x7 stem; ResNet: 64. Stage widths scale with it
    trainable_layers: int = 3  # stages (of 5, stem counted) that get gradients; torchvision: 3
    fpn_channels: int = 256  # channels of every pyramid level P2-P6; FPN paper: 256
    # eps of the frozen BN, y = (x - mean) / sqrt(var + eps) * w + b. torchvision's own ResNets use 1e-5, but
    # it runs its COCO-trained Mask R-CNN weights (COCO_V1) with eps = 0.0 (`overwrite_eps`), the Detectron
    # convention those weights were trained with; `convert.coco_config()` sets it
    frozen_bn_eps: float = 1e-5


@dataclass
class AnchorConfig:
    # One tuple of sizes (pixels, sqrt(w*h)) per feature level; FPN: 32..512, one size per level P2..P6.
    sizes: tuple = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple = (0.5, 1.0, 2.0)  # h / w, the same at every level; paper: {1:2, 1:1, 2:1}

    def __post_init__(self):
        self.sizes = tuple(tuple(level) for level in self.sizes)
        self.aspect_ratios = tuple(self.aspect_ratios)
        for level in self.sizes:
            for size in level:
                check_number("AnchorConfig", "sizes", size, 0, low_open=True)
        for ratio in self.aspect_ratios:
            check_number("AnchorConfig", "aspect_ratios", ratio, 0, low_open=True)
        if not self.aspect_ratios or len({len(level) for level in self.sizes}) != 1 or not self.sizes[0]:
            raise ValueError(f"AnchorConfig.sizes must give the same, non-zero number of sizes at every level "
                             f"(one RPN head is shared by all levels), and aspect_ratios at least one ratio; "
                             f"got {self.sizes} and {self.aspect_ratios}")


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

    def __post_init__(self):
        check_number("RPNConfig", "conv_channels", self.conv_channels, 0, integer=True)
        for name in ("fg_iou_thresh", "bg_iou_thresh", "positive_fraction", "nms_thresh", "score_thresh"):
            check_fraction("RPNConfig", name, getattr(self, name))
        if self.bg_iou_thresh > self.fg_iou_thresh:
            raise ValueError(f"RPNConfig.bg_iou_thresh ({self.bg_iou_thresh}) must be <= fg_iou_thresh "
                             f"({self.fg_iou_thresh})")
        for name in ("batch_size_per_image", "pre_nms_top_n_train", "pre_nms_top_n_test", "post_nms_top_n_train",
                     "post_nms_top_n_test"):
            check_number("RPNConfig", name, getattr(self, name), 1, integer=True)
        check_number("RPNConfig", "min_size", self.min_size, 0.0)


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
    mask_branch: bool = True  # False: no mask branch (a keypoint-only model, as Table 4's and torchvision's)

    # keypoint branch (Sec. 5): one m x m heatmap per keypoint type, m = 4 x pool size (deconv, then 2x bilinear)
    num_keypoints: int = 0  # K keypoint types; 0: no keypoint branch. COCO people: 17
    keypoint_pool_size: int = 14  # RoI feature size of the keypoint branch; paper: 14x14 (-> 56x56 heatmaps)
    keypoint_head_channels: int = 512  # channels of its 3x3 convs; paper: 512
    keypoint_head_convs: int = 8  # number of 3x3 convs; paper: 8

    # inference (Sec. 3.1, "Inference")
    score_thresh: float = 0.05  # detections with a lower class probability are dropped
    min_box_size: float = 1e-2  # detections narrower or shorter than this (pixels) are dropped; torchvision: 1e-2
    nms_thresh: float = 0.5  # per-class NMS IoU threshold
    detections_per_img: int = 100  # the mask branch runs on these top-scoring boxes only
    mask_threshold: float = 0.5  # binarization of pasted mask probabilities ("binarized at 0.5", Sec. 3.1)

    def __post_init__(self):
        own = "RoIHeadsConfig"
        check_choice(own, "pooler", self.pooler, POOLERS)
        check_choice(own, "pool_mode", self.pool_mode, POOL_MODES)
        check_choice(own, "mask_head", self.mask_head, MASK_HEADS)
        check_choice(own, "mask_loss", self.mask_loss, MASK_LOSSES)
        for name in ("aligned", "class_agnostic_masks", "mask_branch"):
            check_choice(own, name, getattr(self, name), (False, True))
        if self.mask_loss == "softmax" and self.class_agnostic_masks:
            raise ValueError(f"{own}: mask_loss='softmax' needs a mask per class (class_agnostic_masks=False): "
                             f"the multinomial loss makes the classes compete for each pixel")
        check_number(own, "sampling_ratio", self.sampling_ratio, integer=True)  # any int; <= 0: adaptive
        self.pool_levels = tuple(self.pool_levels)
        if not all(isinstance(name, str) for name in self.pool_levels):
            raise ValueError(f"{own}.pool_levels must name feature maps, e.g. ('p4',); got {self.pool_levels!r}")
        for name in ("box_pool_size", "mask_pool_size", "batch_size_per_image", "box_head_dim",
                     "mask_head_channels", "detections_per_img", "keypoint_pool_size", "keypoint_head_channels"):
            check_number(own, name, getattr(self, name), 1, integer=True)
        for name in ("mask_head_convs", "num_keypoints", "keypoint_head_convs"):
            check_number(own, name, getattr(self, name), 0, integer=True)
        for name in ("fg_iou_thresh", "bg_iou_thresh", "positive_fraction", "score_thresh", "nms_thresh",
                     "mask_threshold"):
            check_fraction(own, name, getattr(self, name))
        self.bbox_reg_weights = tuple(self.bbox_reg_weights)
        if len(self.bbox_reg_weights) != 4:
            raise ValueError(f"{own}.bbox_reg_weights must be 4 weights of (dx, dy, dw, dh); "
                             f"got {self.bbox_reg_weights}")
        for w in self.bbox_reg_weights:
            check_number(own, "bbox_reg_weights", w, 0, low_open=True)
        check_number(own, "min_box_size", self.min_box_size, 0.0)


@dataclass
class TransformConfig:
    min_size: int = 800  # shorter image side after resizing, pixels; paper: 800
    max_size: int = 1333  # cap on the longer side, pixels
    size_divisible: int = 32  # the padded batch is a multiple of this (the coarsest FPN stride)
    image_mean: tuple = (0.485, 0.456, 0.406)  # ImageNet statistics, images in [0, 1]
    image_std: tuple = (0.229, 0.224, 0.225)

    def __post_init__(self):
        # at least one cell of the coarsest map (stride 32): smaller images have nothing left to detect in
        check_number("TransformConfig", "min_size", self.min_size, 32, integer=True)
        check_number("TransformConfig", "max_size", self.max_size, self.min_size, integer=True)
        check_number("TransformConfig", "size_divisible", self.size_divisible, 1, integer=True)
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        for name in ("image_mean", "image_std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(isinstance(v, (int, float)) for v in values) or \
                    (name == "image_std" and min(values) <= 0):
                positive = ", all > 0" if name == "image_std" else ""
                raise ValueError(f"TransformConfig.{name} must be 3 numbers (R, G, B){positive}; got {values!r}")


@dataclass
class ModelConfig:
    num_classes: int = 91  # including background (label 0); torchvision's COCO models use 91
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)

    def __post_init__(self):
        check_number("ModelConfig", "num_classes", self.num_classes, 2, integer=True)  # background and one class
        maps = {"fpn": 5, "c4": 1}[self.backbone.variant]  # P2-P6, or the stage-4 map
        if len(self.anchors.sizes) != maps:
            raise ValueError(f"AnchorConfig.sizes has {len(self.anchors.sizes)} levels, the "
                             f"{self.backbone.variant} backbone gives {maps} feature map(s)")


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


def keypoint_r50_fpn(num_classes: int = 2) -> ModelConfig:
    """torchvision's keypointrcnn_resnet50_fpn (Sec. 5): R50-FPN, people and background, 17 COCO keypoints, no masks;
    all else r50_fpn's (torchvision trains at a shorter side drawn from 640..800 pixels, tests at 800: here 800)."""
    return dataclasses.replace(r50_fpn(num_classes), roi_heads=RoIHeadsConfig(num_keypoints=17, mask_branch=False))


def cpu_small_keypoints(num_classes: int = 4) -> ModelConfig:
    """cpu_small and a keypoint branch for `ShapesDataset(keypoints=True)` (11 types), 4 convs of 64 channels."""
    cfg = cpu_small(num_classes)
    heads = dataclasses.replace(cfg.roi_heads, num_keypoints=11, keypoint_head_channels=64, keypoint_head_convs=4)
    return dataclasses.replace(cfg, roi_heads=heads)


PRESETS = {f.__name__: f for f in (r50_fpn, r50_c4, cpu_small, keypoint_r50_fpn, cpu_small_keypoints)}


def get_config(name: str, num_classes: int | None = None) -> ModelConfig:
    """The preset called `name` (a key of PRESETS), optionally with another class count."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(map(repr, PRESETS))}")
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
