"""Loading torchvision weights into minimaskrcnn: state_dict key conversion.

Our modules are named so that converting is a renaming of keys, never a reshaping of tensors, and every
rule below can be read as a line of a table. A converted state_dict is loaded with `load_state_dict_strict`,
which fails loudly (listing missing, unexpected and mis-shaped keys) instead of silently skipping weights.

Backbone (ResNet, `resnet.py`; FPN, `fpn.py`):

  torchvision resnet50() (ImageNet)          ours: ResNet (backbone.body)
    conv1.*, bn1.*, layerK.*                   same names (layer1..layer4 = res2..res5)
    fc.*                                       dropped (the ImageNet classifier)
  for the C4 model, layer4.* is the RoI head:  res5 head (build_res5_head) "layer4.X" -> "X"

  torchvision maskrcnn_resnet50_fpn          ours: FPNBackbone (model.backbone)
    backbone.body.*                            body.*
    backbone.fpn.inner_blocks.i.0.{w,b}        fpn.lateral_convs.i.{w,b}   (1x1, C(i+2) -> 256), i = 0..3
    backbone.fpn.layer_blocks.i.0.{w,b}        fpn.output_convs.i.{w,b}    (3x3, 256 -> 256)
  (torchvision < 0.13 wrote inner_blocks.i.{w,b} without the ".0"; both are accepted.)

BatchNorm keys (weight, bias, running_mean, running_var) are the same for BatchNorm2d and our
FrozenBatchNorm2d. "num_batches_tracked" (present when torchvision built plain BatchNorm2d) is kept:
a "bn" model loads it and FrozenBatchNorm2d ignores it.

The Mask R-CNN heads (RPN, box, mask and keypoint heads) are converted in the second part of this file; the
third loads into a whole model: `load_torchvision_maskrcnn(model, sd)` (a COCO checkpoint),
`load_torchvision_keypointrcnn(model, sd)` (torchvision's keypointrcnn_resnet50_fpn, Sec. 5) and
`load_imagenet_resnet(model, sd)` (an ImageNet ResNet into the FPN or C4 model's backbone).
"""
from __future__ import annotations

import re

import torch
from torch import nn

# ------------------------------------------------------------------------------------------------
# Loading with a clear report
# ------------------------------------------------------------------------------------------------


def load_state_dict_strict(module: nn.Module, state_dict: dict, source: str = "state_dict") -> None:
    """Load `state_dict` into `module` with strict=True, after checking keys and shapes ourselves.

    Raises ValueError naming `source` and listing missing keys, unexpected keys and shape mismatches.
    The only tolerated gap: BatchNorm's step counter "num_batches_tracked" (no weights) keeps the
    module's own value when a checkpoint of frozen BN has none.
    """
    own = module.state_dict()
    state_dict = dict(state_dict)
    for k in own:
        if k.endswith("num_batches_tracked") and k not in state_dict:
            state_dict[k] = own[k]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own and not k.endswith("num_batches_tracked")]
    mismatched = [f"{k}: got {tuple(state_dict[k].shape)}, expected {tuple(own[k].shape)}"
                  for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit {type(module).__name__}:"]
        for what, keys in [("missing keys", missing), ("unexpected keys", unexpected),
                           ("shape mismatches", mismatched)]:
            if keys:
                shown = keys[:10] + ([f"... and {len(keys) - 10} more"] if len(keys) > 10 else [])
                lines.append(f"  {len(keys)} {what}: " + ", ".join(shown))
        raise ValueError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


# ------------------------------------------------------------------------------------------------
# Backbone: torchvision ResNet and ResNet-FPN -> resnet.py / fpn.py
# ------------------------------------------------------------------------------------------------

_FPN_RULES = [  # (torchvision key pattern, our key), applied after removing the "backbone." prefix
    (re.compile(r"^fpn\.inner_blocks\.(\d+)\.(?:0\.)?(weight|bias)$"), r"fpn.lateral_convs.\1.\2"),
    (re.compile(r"^fpn\.layer_blocks\.(\d+)\.(?:0\.)?(weight|bias)$"), r"fpn.output_convs.\1.\2"),
]


def convert_torchvision_resnet(state_dict: dict) -> dict[str, torch.Tensor]:
    """torchvision `resnet*()` state_dict (ImageNet) -> state_dict of our `ResNet` body.

    The names already agree; the classifier "fc.*" is dropped. Load into `backbone.body` of an FPN
    backbone. For the C4 model use `convert_torchvision_resnet_c4`. Tensors are shared, not copied.
    """
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


def convert_torchvision_resnet_c4(state_dict: dict) -> tuple[dict, dict]:
    """torchvision `resnet*()` state_dict -> (C4 backbone state_dict, res5 head state_dict).

    The stem and layer1..layer3 (res2..res4) go to `C4Backbone` ("body." prefix); layer4 (res5)
    becomes the RoI head (`build_res5_head`), keys without the "layer4." prefix.
    """
    body = convert_torchvision_resnet(state_dict)
    backbone = {"body." + k: v for k, v in body.items() if not k.startswith("layer4.")}
    res5 = {k[len("layer4."):]: v for k, v in body.items() if k.startswith("layer4.")}
    return backbone, res5


def convert_torchvision_fpn_backbone(state_dict: dict, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """torchvision `maskrcnn_resnet50_fpn` (or `resnet_fpn_backbone`) state_dict -> our FPNBackbone's.

    Keys outside `prefix` are ignored (they are the heads'); pass prefix="" for a bare
    `BackboneWithFPN` state_dict. Keys that match no rule are kept as they are, so that
    `load_state_dict_strict` reports them.
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        for pattern, ours in _FPN_RULES:
            key = pattern.sub(ours, key)
        out[key] = value
    return out

# (end of the backbone section)


# ------------------------------------------------------------------------------------------------
# Mask R-CNN heads: torchvision maskrcnn_resnet50_fpn -> model.py
# ------------------------------------------------------------------------------------------------
#
#   torchvision maskrcnn_resnet50_fpn                  ours: MaskRCNN (model.py)
#     backbone.*                                         backbone.* (convert_torchvision_fpn_backbone)
#     rpn.head.conv.0.0.{w,b}                            rpn.head.conv.{w,b}    (3x3; older: rpn.head.conv)
#     rpn.head.cls_logits / bbox_pred                    same names
#     roi_heads.box_head.fc6 / fc7                       same names
#     roi_heads.box_predictor.cls_score / bbox_pred      same names
#     roi_heads.mask_head.i.0.{w,b}                      roi_heads.mask_head.convs.i.{w,b}  (older: mask_fcn{i+1})
#     roi_heads.mask_predictor.conv5_mask / mask_fcn_logits   same names
#
#   torchvision keypointrcnn_resnet50_fpn (no mask head)  ours: MaskRCNN(config.keypoint_r50_fpn())
#     backbone.*, rpn.*, roi_heads.box_*                  as above
#     roi_heads.keypoint_head.{2i}.{w,b}                  roi_heads.keypoint_head.convs.i.{w,b}  (3x3; a Sequential
#                                                         whose odd modules are the ReLUs)
#     roi_heads.keypoint_predictor.kps_score_lowres       same name

_HEAD_RULES = [
    (re.compile(r"^rpn\.head\.conv\.(?:0\.0\.)?(weight|bias)$"), r"rpn.head.conv.\1"),
    (re.compile(r"^roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$"), r"roi_heads.mask_head.convs.\1.\2"),
]
_OLD_MASK_FCN = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")
_KEYPOINT_CONV = re.compile(r"^roi_heads\.keypoint_head\.(\d+)\.(weight|bias)$")


def convert_torchvision_maskrcnn(state_dict: dict) -> dict[str, torch.Tensor]:
    """torchvision `maskrcnn_resnet50_fpn` state_dict (e.g. its COCO checkpoint) -> our `MaskRCNN`'s
    with the r50_fpn config (same num_classes); a `keypointrcnn_resnet50_fpn` state_dict -> our `MaskRCNN`'s
    with the keypoint_r50_fpn config. Load with `load_state_dict_strict`.

    Keys that match no rule are kept as they are, so that the strict loader reports them.
    """
    out = {"backbone." + k: v for k, v in convert_torchvision_fpn_backbone(state_dict).items()}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            continue
        old = _OLD_MASK_FCN.match(key)
        if old:  # torchvision < 0.13 numbered the mask convs from 1
            key = f"roi_heads.mask_head.convs.{int(old.group(1)) - 1}.{old.group(2)}"
        conv = _KEYPOINT_CONV.match(key)
        if conv:  # conv i is module 2i of torchvision's Sequential (conv, ReLU, conv, ReLU, ...)
            key = f"roi_heads.keypoint_head.convs.{int(conv.group(1)) // 2}.{conv.group(2)}"
        for pattern, ours in _HEAD_RULES:
            key = pattern.sub(ours, key)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------
# Loading into a whole model
# ------------------------------------------------------------------------------------------------


def coco_config(num_classes: int = 91):
    """The config that runs torchvision's COCO-trained `maskrcnn_resnet50_fpn` weights as torchvision does:
    `config.r50_fpn` with the frozen BatchNorm's eps at 0.0. torchvision builds that model with eps 1e-5 and
    then overwrites it with 0.0 when it loads the COCO_V1 weights (`overwrite_eps` in
    torchvision/models/detection/mask_rcnn.py); with 1e-5 the same weights give boxes up to half a pixel
    and scores 0.005 apart, and visibly different masks."""
    from .config import r50_fpn

    return _eps_zero(r50_fpn(num_classes))


def keypoint_coco_config(num_classes: int = 2):
    """The config that runs torchvision's COCO-trained `keypointrcnn_resnet50_fpn` weights (COCO_V1) as torchvision
    does: `config.keypoint_r50_fpn` with the frozen BatchNorm's eps at 0.0 (`overwrite_eps` again, see coco_config;
    torchvision does not overwrite it for the older COCO_LEGACY weights)."""
    from .config import keypoint_r50_fpn

    return _eps_zero(keypoint_r50_fpn(num_classes))


def _eps_zero(cfg):
    import dataclasses

    return dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, frozen_bn_eps=0.0))


def load_torchvision_maskrcnn(model: nn.Module, state_dict: dict) -> None:
    """Load a torchvision `maskrcnn_resnet50_fpn` state_dict (e.g. its COCO checkpoint, 91 classes)
    into our `MaskRCNN` built from `config.r50_fpn(num_classes)` (for the COCO-trained weights:
    `coco_config()`, whose frozen BN has torchvision's eps of 0). Strict: ValueError lists what does
    not fit (for instance a different num_classes shows as shape mismatches of the predictors)."""
    load_state_dict_strict(model, convert_torchvision_maskrcnn(state_dict), "torchvision maskrcnn_resnet50_fpn")


def load_torchvision_keypointrcnn(model: nn.Module, state_dict: dict) -> None:
    """Load a torchvision `keypointrcnn_resnet50_fpn` state_dict (its COCO checkpoints: 2 classes, 17 keypoints)
    into our `MaskRCNN` built from `config.keypoint_r50_fpn(num_classes)` (COCO_V1 weights: `keypoint_coco_config()`).
    Strict, as load_torchvision_maskrcnn: another number of keypoints shows as a shape mismatch of the predictor."""
    load_state_dict_strict(model, convert_torchvision_maskrcnn(state_dict), "torchvision keypointrcnn_resnet50_fpn")


def load_imagenet_resnet(model: nn.Module, state_dict: dict) -> None:
    """Initialize the ResNet of our `MaskRCNN` from a torchvision `resnet*()` ImageNet state_dict
    (Sec. 3.1: the backbone is ImageNet-pretrained; the FPN and the heads keep their fresh init).

    FPN model: stem and layer1..layer4 go to model.backbone.body. C4 model: stem and layer1..layer3
    go to model.backbone, layer4 (res5) to the RoI head (model.roi_heads.box_head.res5).
    Strict for the ResNet part: ValueError if a key is missing or has another shape (e.g. a depth
    or width that does not match the config).
    """
    if "res5" in dict(model.roi_heads.box_head.named_children()):  # C4
        backbone, res5 = convert_torchvision_resnet_c4(state_dict)
        load_state_dict_strict(model.backbone, backbone, "torchvision resnet (stages 1-4)")
        load_state_dict_strict(model.roi_heads.box_head.res5, res5, "torchvision resnet (layer4 as res5)")
    else:
        load_state_dict_strict(model.backbone.body, convert_torchvision_resnet(state_dict), "torchvision resnet")
