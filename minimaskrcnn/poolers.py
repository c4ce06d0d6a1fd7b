"""RoI feature extraction from one or several feature maps (Sec. 3, "RoIAlign"; FPN paper, Eq. 1).

Each RoI is pooled to a fixed S x S grid from one feature map:
- C4: the single stage-4 map (stride 16);
- FPN: the pyramid level P2..P5 chosen by the RoI's size, k = floor(4 + log2(sqrt(w*h) / 224))
  clamped to [2, 5] (`assign_fpn_levels`), so a 224x224 RoI, the ImageNet scale, pools from P4
  and one half its side from P3. P6 is for the RPN only.

The pooling op is chosen by the config, for the paper's Table 2c/2d comparison: RoIAlign ("align", no
quantization of the RoI or its bins, bilinear samples), RoIPool ("pool", quantized, max) or RoIWarp
("warp", quantized RoI, bilinear samples). Strides are passed explicitly and nothing is cached.

The ops run in float32 (also under autocast): RoI coordinates of a large image do not survive half
precision (bf16 has 8 significant bits, i.e. steps of 4 pixels at x = 1000).

Shape glossary:
  N: images; C: channels; K: RoIs of all images; S: output size (7 box branch, 14 mask branch)
"""
from __future__ import annotations

import math

import torch

from .config import RoIHeadsConfig
from .ops import roi_align, roi_pool, roi_warp

FPN_ROI_LEVELS = ("p2", "p3", "p4", "p5")  # P6 only feeds the RPN (FPN paper, Sec. 4.2)


def assign_fpn_levels(boxes: torch.Tensor, k_min: int, k_max: int, canonical_size: float = 224.0,
                      canonical_level: int = 4) -> torch.Tensor:
    """FPN paper, Eq. 1: an RoI of w x h pixels pools from level k = floor(k0 + log2(sqrt(w h) / 224)).

    A 224 x 224 RoI (ImageNet's canonical size) maps to k0 = 4 (P4, stride 16); halving its side moves
    one level finer. k is clamped to the levels present, [k_min, k_max].
    boxes: (K, 4) pixels -> (K,) int64 level index k - k_min (0 for P{k_min}).
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (K, 4) (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if k_min > k_max:
        raise ValueError(f"k_min ({k_min}) must be <= k_max ({k_max})")
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    scale = torch.sqrt(w * h)
    # torchvision adds 1e-6 so that boxes exactly at a level's boundary land on the coarser level
    k = torch.floor(canonical_level + torch.log2(scale / canonical_size) + 1e-6)
    k = torch.nan_to_num(k, neginf=float(k_min))  # a zero-size box: the finest level
    return (k.clamp(min=k_min, max=k_max) - k_min).to(torch.int64)


def roi_feature_strides(strides: dict[str, int], levels: tuple = ()) -> dict[str, int]:
    """The maps RoIs pool from, with their strides: `levels` when given (RoIHeadsConfig.pool_levels),
    else P2..P5 of an FPN backbone, else all (C4: "c4")."""
    if levels:
        missing = [name for name in levels if name not in strides]
        if missing:
            raise ValueError(f"RoIHeadsConfig.pool_levels {missing} are not among the backbone's maps {list(strides)}")
        return {name: strides[name] for name in levels}
    if all(name in strides for name in FPN_ROI_LEVELS):
        return {name: strides[name] for name in FPN_ROI_LEVELS}
    return dict(strides)


def to_rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image boxes, list of (Ki, 4) -> (K, 5) float32 rows (image index, x1, y1, x2, y2)."""
    index = torch.cat([torch.full((len(b), 1), i, dtype=torch.float32, device=b.device)
                       for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat(boxes).float()], dim=1)


def pool_level(x: torch.Tensor, rois: torch.Tensor, size: int, stride: int, cfg: RoIHeadsConfig) -> torch.Tensor:
    """(N, C, H, W) map of stride `stride`, (K, 5) rois in image pixels -> (K, C, size, size), with the op
    cfg.pooler names (config.POOLERS)."""
    if cfg.pooler == "pool":
        return roi_pool(x, rois, (size, size), 1.0 / stride)
    if cfg.pooler == "warp":
        return roi_warp(x, rois, (size, size), 1.0 / stride, cfg.sampling_ratio)
    return roi_align(x, rois, (size, size), 1.0 / stride, cfg.sampling_ratio, cfg.aligned, cfg.pool_mode)


def pool_rois(features: dict[str, torch.Tensor], boxes: list[torch.Tensor], size: int,
              strides: dict[str, int], cfg: RoIHeadsConfig) -> torch.Tensor:
    """RoI features of every box.

    features: maps by name, (N, C, Hl, Wl); boxes: per image (Ki, 4) (x1, y1, x2, y2) in the padded
    batch's pixels; strides: the maps to pool from (`roi_feature_strides`) and their strides.
    Returns (K, C, size, size) float32, rows in the order of torch.cat(boxes).
    """
    rois = to_rois(boxes)  # (K, 5)
    names = list(strides)
    if len(names) == 1:
        return pool_level(features[names[0]].float(), rois, size, strides[names[0]], cfg)
    levels = [int(math.log2(strides[n])) for n in names]  # e.g. [2, 3, 4, 5]
    level = assign_fpn_levels(rois[:, 1:], levels[0], levels[-1])  # (K,) index into names
    first = features[names[0]]
    out = torch.zeros(rois.shape[0], first.shape[1], size, size, dtype=torch.float32, device=first.device)
    for i, name in enumerate(names):
        idx = torch.nonzero(level == i).squeeze(1)
        if idx.numel() > 0:
            out[idx] = pool_level(features[name].float(), rois[idx], size, strides[name], cfg)
    return out
