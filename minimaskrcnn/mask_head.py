"""The mask branch (Sec. 3, "Mask Representation" and Fig. 4): a small FCN on each RoI.

A mask keeps the object's spatial layout, so the paper predicts it with convolutions, which keep an
explicit m x m layout, rather than collapsing the RoI into a vector with FC layers:

- FPN (Fig. 4 right, `MaskFCNHead` + `MaskPredictor`): four 3x3 convs of 256 channels with ReLU on the
  14x14 RoI features, a 2x2 deconvolution of stride 2 (-> 28x28) with ReLU, and a 1x1 conv to one
  mask logit map per class: (R, K, 28, 28).
- C4 (Fig. 4 left): the res5 output of the box head (7x7, 2048 channels) goes straight to the
  deconvolution and the 1x1 conv: (R, K, 14, 14). No convs of its own (`MaskFCNHead` with 0 convs).
- MLP (Table 2e ablation, `MaskMLPHead` + `MaskMLPPredictor`): FC layers map the flattened RoI
  features to the K*m*m logits, losing the pixel-to-pixel correspondence (-2.1 mask AP in the paper).

K masks are predicted, one per class (channel k for class k, channel 0 unused by the sigmoid loss), or a
single one when the masks are class-agnostic. Names (convs.i, conv5_mask, mask_fcn_logits) map onto
torchvision's mask_head.i.0 / mask_predictor.* (convert.py).

Shape glossary:
  R: RoIs; C: input channels (FPN channels, or res5 channels for C4); S: input size (14 FPN, 7 C4)
  Ch: mask_head_channels (256); Km: mask channels (K classes, or 1); M: mask size, 2S
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import RoIHeadsConfig

class MaskFCNHead(nn.Module):
    """(R, C, S, S) -> (R, Ch, S, S): `num_convs` 3x3 convs (padding 1) each followed by a ReLU.
    With num_convs = 0 (the C4 head) it passes its input through."""

    def __init__(self, in_channels: int, channels: int, num_convs: int):
        super().__init__()
        dims = [in_channels] + [channels] * num_convs
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(dims[:-1], dims[1:]))
        self.out_channels = dims[-1]
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class MaskPredictor(nn.Module):
    """(R, C, S, S) -> mask logits (R, Km, 2S, 2S): 2x2 stride-2 deconv + ReLU, then a 1x1 conv."""

    def __init__(self, in_channels: int, channels: int, num_masks: int):
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(in_channels, channels, kernel_size=2, stride=2)
        self.mask_fcn_logits = nn.Conv2d(channels, num_masks, kernel_size=1)
        nn.init.kaiming_normal_(self.conv5_mask.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv5_mask.bias)
        nn.init.normal_(self.mask_fcn_logits.weight, std=0.001)  # start near p = 0.5 everywhere
        nn.init.zeros_(self.mask_fcn_logits.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x)))  # (R, Ch, 2S, 2S) -> (R, Km, 2S, 2S)


class MaskMLPHead(nn.Module):
    """(R, C, S, S) -> (R, D): flatten, then two FC layers + ReLU (Table 2e, "MLP")."""

    def __init__(self, in_channels: int, size: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * size * size, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=1)  # (R, C, S, S) -> (R, C*S*S)
        return F.relu(self.fc2(F.relu(self.fc1(x))))  # (R, D)


class MaskMLPPredictor(nn.Module):
    """(R, D) -> mask logits (R, Km, M, M) with one FC layer of Km*M*M outputs."""

    def __init__(self, dim: int, num_masks: int, mask_size: int):
        super().__init__()
        self.mask_fc_logits = nn.Linear(dim, num_masks * mask_size * mask_size)
        self.num_masks, self.mask_size = num_masks, mask_size
        nn.init.normal_(self.mask_fc_logits.weight, std=0.001)
        nn.init.zeros_(self.mask_fc_logits.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        M = self.mask_size
        return self.mask_fc_logits(x).reshape(-1, self.num_masks, M, M)  # (R, Km*M*M) -> (R, Km, M, M)


def build_mask_branch(cfg: RoIHeadsConfig, in_channels: int, in_size: int, num_classes: int,
                      c4: bool = False) -> tuple[nn.Module, nn.Module]:
    """(mask_head, mask_predictor) for RoI features of (in_channels, in_size, in_size).

    c4=True: the input is the res5 output, and the FCN head has no convs of its own (Fig. 4 left).
    For "mlp" the hidden width is box_head_dim (1024, as the paper's fc:1024 -> 1024 -> 80*28^2).
    """
    num_masks = 1 if cfg.class_agnostic_masks else num_classes
    if cfg.mask_head == "mlp":
        return (MaskMLPHead(in_channels, in_size, cfg.box_head_dim),
                MaskMLPPredictor(cfg.box_head_dim, num_masks, 2 * in_size))
    head = MaskFCNHead(in_channels, cfg.mask_head_channels, 0 if c4 else cfg.mask_head_convs)
    return head, MaskPredictor(head.out_channels, cfg.mask_head_channels, num_masks)
