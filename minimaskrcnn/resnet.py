"""ResNet backbones (He et al., 2016) for Mask R-CNN, Sec. 3 "Network Architecture".

The paper evaluates two ways of taking features out of a ResNet:

- **C4**: the output of stage 4 (stride 16) feeds the RPN and RoI pooling; stage 5 ("res5") then
  runs on every RoI as the box/mask head (`build_res5_head`).
- **FPN**: stages 2-5 feed a feature pyramid (`fpn.py`) whose levels P2-P6 feed the RPN and the
  RoI heads (`FPNBackbone`).

`build_backbone(cfg)` returns the one named by `cfg.variant`.

Module and parameter names follow torchvision's `resnet*` (conv1, bn1, layer1..layer4, and inside a
block conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/downsample.1), so ImageNet weights load key by
key (`convert.py`). As in torchvision (the "ResNet v1.5" variant), a bottleneck block downsamples in
its 3x3 conv, not in its first 1x1 conv.

Shape glossary:
  N: images in the batch; H, W: padded input height and width (any size, not only multiples of 32)
  c2..c5: stage outputs at strides 4, 8, 16, 32, i.e. sizes ceil(H / s) x ceil(W / s)
  w: cfg.stem_channels (64 for the standard ResNet); stage k has width w * 2**(k-2) in its 3x3 convs
     and out channels w * 2**(k-2) * expansion (expansion 1 for basic blocks, 4 for bottlenecks)
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import BackboneConfig
from .fpn import FPN

# blocks per stage (layer1..layer4) and block type, Table 1 of the ResNet paper (config.DEPTHS lists the keys)
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters: y = (x - mean) / sqrt(var + eps) * w + b.

    Detection batches are 1-2 images per GPU, too few for batch statistics, so pretrained BN layers
    are frozen into a per-channel affine map. Buffers (not parameters): weight, bias, running_mean,
    running_var, each (C,), the names of BatchNorm2d's, so BN state_dicts load directly.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A BatchNorm2d state_dict also has a step counter that means nothing once frozen.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # (C,), float32
        shift = self.bias - self.running_mean * scale  # (C,)
        # Cast to x's dtype: under autocast x is bf16/fp16, and float32 buffers would promote the
        # whole feature map to float32 (twice the memory traffic for no gain).
        scale, shift = scale.to(x.dtype), shift.to(x.dtype)
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def set_frozen_bn_eps(module: nn.Module, eps: float) -> None:
    """Give every FrozenBatchNorm2d inside `module` this eps (BackboneConfig.frozen_bn_eps)."""
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = eps


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalization layer named by BackboneConfig.norm (config.NORMS), for `channels` channels."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    # "gn": 32 groups (Wu & He, 2018), fewer for narrow layers so that a group keeps >= 2 channels.
    return nn.GroupNorm(math.gcd(32, max(channels // 2, 1)), channels)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)  # the norm holds the bias


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the identity (ResNet-18/34): (N, cin, H, W) -> (N, width, H/s, W/s)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, norm: str):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = conv3x3(cin, width, stride), make_norm(norm, width)
        self.conv2, self.bn2 = conv3x3(width, cout), make_norm(norm, cout)
        # a 1x1 projection when the shortcut must change shape (option B of the ResNet paper)
        self.downsample = (nn.Sequential(conv1x1(cin, cout, stride), make_norm(norm, cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        # ReLUs in place, as torchvision: the norm's backward does not need its output, and training
        # memory drops by a feature map per ReLU.
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + shortcut, inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, plus the identity (ResNet-50/101):
    (N, cin, H, W) -> (N, 4 * width, H/s, W/s)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, norm: str):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = conv1x1(cin, width), make_norm(norm, width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), make_norm(norm, width)
        self.conv3, self.bn3 = conv1x1(width, cout), make_norm(norm, cout)
        self.downsample = (nn.Sequential(conv1x1(cin, cout, stride), make_norm(norm, cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        y += shortcut  # in place, as torchvision: no new feature map per block (2-4% of a fine-tune step on a CPU)
        return F.relu(y, inplace=True)


class ResStage(nn.Sequential):
    """One ResNet stage: `num_blocks` blocks, the first one strided. Plain attributes `in_channels`
    and `out_channels`, and `frozen` (set by `freeze`). Keys "0.conv1.weight", ... as in torchvision's layerK."""

    frozen = False

    def train(self, mode: bool = True):
        # a frozen stage stays in eval mode: its BatchNorm keeps the statistics it was loaded with
        return super().train(mode and not self.frozen)

    def __init__(self, block: type, cin: int, width: int, num_blocks: int, stride: int, norm: str):
        cout = width * block.expansion
        rest = [block(cout, width, 1, norm) for _ in range(num_blocks - 1)]
        super().__init__(block(cin, width, stride, norm), *rest)
        self.in_channels, self.out_channels = cin, cout


class ResNet(nn.Module):
    """The ResNet body without its classifier: forward(x (N, 3, H, W)) -> OrderedDict "c2".."c5"
    (or "c2".."c4" with `num_stages=3`, the C4 backbone, whose stage 5 becomes the RoI head).

    Plain attributes: `channels` {"c2": ..} and `strides` {"c2": 4, ..} of the returned maps.
    """

    def __init__(self, depth: int = 50, norm: str = "frozen_bn", stem_channels: int = 64,
                 num_stages: int = 4):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        kind, blocks_per_stage = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        w = stem_channels
        # stem (conv1 / "res1"): 7x7 stride 2 then 3x3 max-pool stride 2 -> stride 4
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, w)
        self.channels, self.strides = {}, {}
        cin = w
        for k in range(num_stages):  # layer1..layer4 = res2..res5; all but res2 halve the resolution
            stage = ResStage(block, cin, w * 2**k, blocks_per_stage[k], 1 if k == 0 else 2, norm)
            self.add_module(f"layer{k + 1}", stage)
            cin = stage.out_channels
            self.channels[f"c{k + 2}"], self.strides[f"c{k + 2}"] = cin, 2 ** (k + 2)
        self.num_stages = num_stages
        self.frozen_stem = False  # set by freeze_early_layers
        init_weights(self)

    def train(self, mode: bool = True):
        super().train(mode)  # the stages keep themselves in eval mode when frozen (ResStage.train)
        self.bn1.train(mode and not self.frozen_stem)
        return self

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (N, w, H/2, W/2)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (N, w, H/4, W/4)
        out = OrderedDict()
        for k in range(self.num_stages):
            x = getattr(self, f"layer{k + 1}")(x)  # (N, channels[c], H / s, W / s), s = strides[c]
            out[f"c{k + 2}"] = x
        return out


def init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convs, unit scale / zero shift for norms, as torchvision's ResNet."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def freeze_early_layers(body: ResNet, trainable_layers: int) -> None:
    """Turn off gradients of all but the last `trainable_layers` of (stem, layer1..layer4).

    The torchvision / Detectron rule: with pretrained weights the stem and first stages hold generic
    edge-like filters that fine-tuning on a small detection batch would only disturb. 3 -> layer2..4
    train; 5 -> everything trains; 0 -> only the FPN (and the heads) train. A frozen stage's BatchNorm
    (norm="bn") also stays in eval mode, so that its running statistics stay those it was loaded with
    (torchvision's resnet_fpn_backbone lets them drift in train mode).
    """
    stages = ["layer4", "layer3", "layer2", "layer1"]
    for name in stages[trainable_layers:]:
        if hasattr(body, name):  # the C4 body ends at layer3 (its layer4 is the RoI head, build_res5_head)
            freeze(getattr(body, name))
    if trainable_layers < 5:  # the stem: conv1 and bn1
        body.conv1.requires_grad_(False)
        body.bn1.requires_grad_(False)
        body.frozen_stem = True
        body.train(body.training)


def freeze(stage: "ResStage") -> None:
    """No gradients for the stage, and its BatchNorm in eval mode from now on."""
    stage.requires_grad_(False)
    stage.frozen = True
    stage.train(stage.training)


class FPNBackbone(nn.Module):
    """ResNet stages 2-5 + FPN: forward(x (N, 3, H, W)) -> OrderedDict "p2".."p6", each
    (N, out_channels, ceil(H / s), ceil(W / s)) for strides s = 4, 8, 16, 32, 64."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.body = ResNet(cfg.depth, cfg.norm, cfg.stem_channels, num_stages=4)
        set_frozen_bn_eps(self.body, cfg.frozen_bn_eps)
        freeze_early_layers(self.body, cfg.trainable_layers)
        self.fpn = FPN([self.body.channels[f"c{k}"] for k in (2, 3, 4, 5)], cfg.fpn_channels)
        self.out_channels = cfg.fpn_channels
        self.strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.body(x))


class C4Backbone(nn.Module):
    """ResNet stages 1-4: forward(x (N, 3, H, W)) -> OrderedDict "c4": (N, out_channels, H/16, W/16)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.body = ResNet(cfg.depth, cfg.norm, cfg.stem_channels, num_stages=3)
        set_frozen_bn_eps(self.body, cfg.frozen_bn_eps)
        freeze_early_layers(self.body, cfg.trainable_layers)
        self.out_channels = self.body.channels["c4"]
        self.strides = {"c4": 16}

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict(c4=self.body(x)["c4"])


def build_res5_head(cfg: BackboneConfig) -> ResStage:
    """The res5 stage run on each RoI in the C4 model (Sec. 3, Fig. 4 left).

    Input (R, C4, h, w) RoI features with C4 = stage-4 channels (1024 for R50); output
    (R, C5, ceil(h/2), ceil(w/2)), C5 = stage-5 channels (2048 for R50); the box head average-pools it.
    Frozen only when trainable_layers == 0. Keys as torchvision's layer4 without the "layer4." prefix.
    """
    kind, blocks_per_stage = DEPTHS[cfg.depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    w = cfg.stem_channels
    head = ResStage(block, w * 4 * block.expansion, w * 8, blocks_per_stage[3], 2, cfg.norm)
    init_weights(head)
    set_frozen_bn_eps(head, cfg.frozen_bn_eps)
    if cfg.trainable_layers == 0:
        freeze(head)
    return head


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """The feature extractor named by `cfg.variant`: an FPN (P2-P6) or a C4 (stage 4) backbone.

    Returns a module with forward(x (N, 3, H, W) float, normalized) -> OrderedDict of feature maps,
    and plain attributes `out_channels: int` (the same for every map) and `strides: dict[str, int]`.
    """
    return C4Backbone(cfg) if cfg.variant == "c4" else FPNBackbone(cfg)
