"""The box branch of the RoI heads (Sec. 3, "Network Architecture", Fig. 4).

Two heads, as in the paper (which extends the Faster R-CNN heads of the ResNet and FPN papers):

- FPN: the 7x7 RoI features are flattened and go through two fully connected layers of 1024
  ("fc6", "fc7", each followed by a ReLU) - `FPNBoxHead`.
- C4: the 14x14 RoI features of stage 4 go through the whole res5 stage of the ResNet (stride 2, so
  7x7) and a global average pool - `C4BoxHead`.

Either feeds `BoxPredictor`: class scores over K classes (background = 0) and class-specific box
deltas (4 per class, Faster R-CNN's parametrization with weights (10, 10, 5, 5), see ops.encode_boxes).
Names (fc6, fc7, cls_score, bbox_pred) match torchvision's, so its weights convert key by key.

Shape glossary:
  R: RoIs (all images); C: feature channels; S: RoI pool size (7 for FPN, 14 for C4)
  D: head output width (box_head_dim = 1024 for FPN, res5 channels = 2048 for R50-C4); K: classes
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPNBoxHead(nn.Module):
    """(R, C, S, S) RoI features -> (R, D) with two FC layers + ReLU ("2fc" head of the FPN paper)."""

    def __init__(self, in_channels: int, pool_size: int, dim: int):
        super().__init__()
        self.fc6 = nn.Linear(in_channels * pool_size * pool_size, dim)
        self.fc7 = nn.Linear(dim, dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=1)  # (R, C, S, S) -> (R, C*S*S)
        return F.relu(self.fc7(F.relu(self.fc6(x))))  # (R, D)


class C4BoxHead(nn.Module):
    """(R, C4, 14, 14) RoI features -> res5 -> (R, C5, 7, 7) -> average pool -> (R, C5).

    `res5` is the ResNet's fifth stage (resnet.build_res5_head); the mask branch of the C4 model runs
    it too (Fig. 4 left), through `features`.
    """

    def __init__(self, res5: nn.Module):
        super().__init__()
        self.res5 = res5
        self.out_dim = res5.out_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C4, S, S) -> (R, C5, S/2, S/2), the res5 feature map."""
        return self.res5(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res5(x).mean(dim=(2, 3))  # (R, C5, S/2, S/2) -> (R, C5)


class BoxPredictor(nn.Module):
    """(R, D) -> class logits (R, K) and class-specific box deltas (R, 4K), class k's at [4k:4k+4]."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes)
        self.bbox_pred = nn.Linear(in_dim, num_classes * 4)
        # Detectron's init: small weights so the first predictions are near-uniform and near-zero deltas
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)  # (R, K), (R, 4K)
