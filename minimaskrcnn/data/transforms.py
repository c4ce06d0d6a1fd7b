"""Training-time augmentation and batching.

Sec. 3.1 of the paper ("Training") names no augmentation; Detectron, whose recipe the paper uses, and
torchvision flip images horizontally at random, and so do we. Scale jitter is an optional extra.
Every transform maps (image, target) -> (image, target) and keeps boxes, masks and keypoints in step with
the image. A flip also swaps left and right keypoints (a mirrored left eye is a right eye), so it needs the
dataset's `flip_pairs` when the targets hold keypoints. Random draws use torch's generator, so
`torch.manual_seed` (and DataLoader worker seeding) makes them reproducible.

Glossary: N instances, K keypoint types, H, W image size before, H', W' after a resize.
    image: (3, H, W) float32 in [0, 1]
    target["boxes"]: (N, 4) float32 (x1, y1, x2, y2) image pixels; "masks": (N, H, W) uint8 {0, 1};
    "keypoints" (optional): (N, K, 3) float32 (x, y, v) image pixels, v = 0 not labelled, 1 hidden, 2 visible
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .keypoints import check_flip_pairs


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


def hflip(image: torch.Tensor, target: dict, flip_pairs=None) -> tuple[torch.Tensor, dict]:
    """Mirror left-right. A box edge at pixel-edge coordinate x moves to W - x, so x1' = W - x2, x2' = W - x1.
    Keypoints (when the target has them) move the same way and swap by `flip_pairs` (`hflip_keypoints`)."""
    w = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"]
    target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    target["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        if flip_pairs is None:
            raise ValueError("hflip: the target has keypoints, whose left and right swap in a mirror image: pass "
                             "flip_pairs (the dataset's ds.flip_pairs; [] when none swap)")
        target["keypoints"] = hflip_keypoints(target["keypoints"], w, flip_pairs)
    return image.flip(-1), target


def hflip_keypoints(keypoints: torch.Tensor, width: int, flip_pairs) -> torch.Tensor:
    """(N, K, 3) (x, y, v) of an image `width` pixels wide -> the mirrored image's: x' = width - x (the frame of the
    boxes), then keypoints i and j swapped for each (i, j) of flip_pairs. Unlabelled keypoints (v = 0) stay at
    (0, 0, 0), COCO's convention."""
    pairs = check_flip_pairs(flip_pairs, keypoints.shape[1], "hflip")
    order = list(range(keypoints.shape[1]))
    for i, j in pairs:
        order[i], order[j] = j, i
    x, y, v = keypoints[:, order].unbind(dim=2)  # (N, K) each
    labelled = (v > 0).to(keypoints.dtype)
    return torch.stack([(width - x) * labelled, y * labelled, v], dim=2)


class RandomHorizontalFlip:
    """hflip with probability p; flip_pairs: the dataset's, needed when the targets hold keypoints."""

    def __init__(self, p: float = 0.5, flip_pairs=None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p
        self.flip_pairs = None if flip_pairs is None else [tuple(pair) for pair in flip_pairs]

    def __call__(self, image, target):
        if torch.rand(()) < self.p:
            return hflip(image, target, self.flip_pairs)
        return image, target

    def __repr__(self):
        pairs = "" if self.flip_pairs is None else f", flip_pairs={self.flip_pairs}"
        return f"RandomHorizontalFlip(p={self.p}{pairs})"


def resize(image: torch.Tensor, target: dict, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Resize to size = (H', W'): bilinear image, nearest masks, boxes and keypoints scaled per axis."""
    h, w = image.shape[-2:]
    new_h, new_w = size
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    target = dict(target)
    scale = torch.tensor([new_w / w, new_h / h, new_w / w, new_h / h], dtype=torch.float32)
    target["boxes"] = target["boxes"] * scale
    if "keypoints" in target:  # x, y scaled like the boxes, v kept
        target["keypoints"] = target["keypoints"] * torch.tensor([new_w / w, new_h / h, 1.0], dtype=torch.float32)
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
