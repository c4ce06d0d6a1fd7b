"""Argument handling shared by the RoI ops (roi_pool, roi_warp, roi_align).

RoIs come as torchvision takes them: a (K, 5) tensor of rows (batch_index, x1, y1, x2, y2), or a list
with one (Ki, 4) tensor of boxes per image. Coordinates are in image pixels; spatial_scale (1 / stride)
maps them onto the feature map.
"""
from __future__ import annotations

import torch


def as_rois(input: torch.Tensor, boxes, output_size, spatial_scale: float) -> tuple[torch.Tensor, tuple[int, int]]:
    """Check the arguments of an RoI op; return rois (K, 5) in input's dtype and (P, Q) = output size."""
    if not isinstance(input, torch.Tensor) or input.dim() != 4:
        raise ValueError(f"input must be a (N, C, H, W) tensor, got {getattr(input, 'shape', type(input))}")
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must be a (Ki, 4) tensor (x1, y1, x2, y2), "
                                 f"got {getattr(b, 'shape', type(b))}")
        if len(boxes) == 0:
            rois = torch.zeros(0, 5, dtype=input.dtype, device=input.device)
        else:
            index = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
            rois = torch.cat([torch.cat(index), torch.cat(list(boxes))], dim=1)
    elif isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError("boxes must be a (K, 5) tensor (batch_index, x1, y1, x2, y2) or a list of (Ki, 4) "
                             f"tensors, got shape {tuple(boxes.shape)}")
        rois = boxes
    else:
        raise ValueError(f"boxes must be a tensor or a list of tensors, got {type(boxes).__name__}")
    if rois.device != input.device:
        raise ValueError(f"boxes are on {rois.device} but input is on {input.device}")
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    if len(output_size) != 2 or any(int(s) <= 0 for s in output_size):
        raise ValueError(f"output_size must be positive (an int or (height, width)), got {output_size}")
    if not spatial_scale > 0:
        raise ValueError(f"spatial_scale must be > 0 (1 / feature stride), got {spatial_scale}")
    rois = rois.detach().to(input.dtype)  # as in torchvision, no gradient flows to the boxes
    if rois.shape[0]:
        lowest, highest = torch.stack(torch.aminmax(rois[:, 0])).tolist()  # one read back from the device
        if not 0 <= lowest <= highest < input.shape[0]:
            raise ValueError(f"boxes' batch indices must lie in [0, {input.shape[0] - 1}] (input has "
                             f"{input.shape[0]} images), got {lowest:g}..{highest:g}")
    return rois, (int(output_size[0]), int(output_size[1]))


def divide(x: torch.Tensor, n: int) -> torch.Tensor:
    """x / n rounded correctly on every device, as torchvision's kernels divide.

    With a Python number as divisor, PyTorch's CUDA kernel multiplies by 1 / n instead, which can be one
    float32 step off: 7 * (1 / 3) = 2.3333335, not 2.3333333, and the last of 3 bins of a 7-pixel RoI
    then ends at ceil(3 * 2.3333335) = 8 instead of 7. A tensor divisor gets a true division.
    """
    return x / torch.full_like(x, n)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round(): 2.5 -> 3, -2.5 -> -3 (torch.round rounds half to even: 2.5 -> 2)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def no_rois_output(input: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """The (0, C, P, Q) result for no RoIs: a view of input, so that it stays in input's autograd graph and
    a backward pass through it works (giving input a zero gradient), as with torchvision."""
    C = input.shape[1]
    return input[:0, :, :1, :1].expand(0, C, *output_size)  # (0, C, 1, 1) -> (0, C, P, Q)


def feature_table(input: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C): one row per feature-map position, the lookup table the RoI ops
    gather from (row n*H*W + y*W + x holds the C channels at pixel (y, x) of image n)."""
    N, C, H, W = input.shape
    return input.permute(0, 2, 3, 1).reshape(N * H * W, C)  # (N*H*W, C)
