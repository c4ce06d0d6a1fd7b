"""Training-time augmentation and batching.

Sec. 3.1 of the paper ("Training") names no augmentation; Detectron, whose recipe the paper uses, and
torchvision flip images horizontally at random, and so do we. Scale jitter is an optional extra.
Every transform maps (image, target) -> (image, target) and keeps boxes and masks in step with the
image. Random draws use torch's generator, so `torch.manual_seed` (and DataLoader worker seeding)
makes them reproducible.

Glossary: N instances, H, W image size before, H', W' after a resize.
    image: (3, H, W) float32 in [0, 1]
    target["boxes"]: (N, 4) float32 (x1, y1, x2, y2) image pixels; "masks": (N, H, W) uint8 {0, 1}
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self):
        return f"Compose({self.transforms})"


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror left-right. A box edge at pixel-edge coordinate x moves to W - x, so x1' = W - x2, x2' = W - x1."""
    w = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"]
    target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


class RandomHorizontalFlip:
    """hflip with probability p."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image, target):
        if torch.rand(()) < self.p:
            return hflip(image, target)
        return image, target

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


def resize(image: torch.Tensor, target: dict, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Resize to size = (H', W'): bilinear image, nearest masks, boxes scaled per axis."""
    h, w = image.shape[-2:]
    new_h, new_w = size
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    target = dict(target)
    scale = torch.tensor([new_w / w, new_h / h, new_w / w, new_h / h], dtype=torch.float32)
    target["boxes"] = target["boxes"] * scale
    masks = target["masks"]
    if masks.shape[0] > 0:
        masks = F.interpolate(masks[:, None].float(), size=(new_h, new_w), mode="nearest")[:, 0]
        target["masks"] = masks.to(torch.uint8)  # (N, H', W')
    else:
        target["masks"] = masks.new_zeros((0, new_h, new_w))
    return image, target


class RandomScale:
    """Scale jitter: resize by a factor drawn uniformly from [min_scale, max_scale]."""

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.2):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = min_scale, max_scale

    def __call__(self, image, target):
        s = self.min_scale + (self.max_scale - self.min_scale) * float(torch.rand(()))
        h, w = image.shape[-2:]
        return resize(image, target, (max(1, round(h * s)), max(1, round(w * s))))

    def __repr__(self):
        return f"RandomScale({self.min_scale}, {self.max_scale})"


def collate(batch):
    """[(image, target), ...] -> (list of images, list of targets); images keep their own sizes
    (the model's transform pads them into one batch tensor)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
