"""RoIWarp (Dai et al., MNC, 2016): the middle row of Mask R-CNN's Table 2c.

RoIWarp resamples the RoI with bilinear interpolation, like RoIAlign, but first rounds the RoI's
corners to the feature grid, like RoIPool. The paper shows it does about as badly as RoIPool: what
matters is removing the quantization, not the interpolation.

Here: RoIPool's rounding of the corners, then roi_align on the rounded box (aligned=False).

Shape glossary:
  K: RoIs; C: channels; P, Q: output height, width
"""
from __future__ import annotations

import torch

from .roi_align import roi_align
from .rois import as_rois, round_half_away


def roi_warp(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0,
             sampling_ratio: int = -1, impl: str = "auto") -> torch.Tensor:
    """RoIWarp. Arguments as roi_align's (impl chooses roi_align's path). Returns (K, C, P, Q);
    differentiable with respect to input."""
    rois, size = as_rois(input, boxes, output_size, spatial_scale)
    quantized = round_half_away(rois[:, 1:] * spatial_scale)  # (K, 4) corners on whole feature pixels
    return roi_align(input, torch.cat([rois[:, :1], quantized], dim=1), size, 1.0, sampling_ratio, aligned=False,
                     impl=impl)
