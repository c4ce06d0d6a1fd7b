"""Pre- and post-processing inside the model (Sec. 3.1, "Implementation Details").

Going in: normalize each image with the ImageNet statistics, resize it so that its shorter side is
`min_size` pixels (800 in the paper) unless that makes its longer side exceed `max_size` (1333), and
pad the batch to a common size, a multiple of `size_divisible` (32, the coarsest FPN stride, so that
every pyramid level aligns). Targets are resized with their image (boxes and keypoints scaled, masks resampled).

Coming out: boxes and keypoints are scaled back to the original image's pixels, and each 28x28 mask probability
map is pasted into the original image at its box ("resized to the RoI size", Sec. 3.1 "Inference").

The resizing rounds exactly as torchvision's GeneralizedRCNNTransform does (the scale is
min(min_size / short side, max_size / long side), the new side floor(side * scale)), so the two
models see the same pixels.

Shape glossary:
  N: images; H, W: an original image's size; h, w: its size after resizing; Hp, Wp: padded batch size
  G: ground-truth objects of an image; D: detections of an image; M: mask resolution (28); Kp: keypoint types
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import TransformConfig


@dataclass
class ImageBatch:
    """The model's input after preprocessing.

    tensors: (N, 3, Hp, Wp) float, normalized, zero-padded at the right and bottom.
    image_sizes: (h, w) of each image after resizing, before padding (the valid region).
    original_sizes: (H, W) of each image as given to the model.
    """

    tensors: torch.Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


def normalize(image: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> (3, H, W) (image - mean) / std, per channel."""
    mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device)
    std = torch.as_tensor(std, dtype=image.dtype, device=image.device)
    return (image - mean[:, None, None]) / std[:, None, None]


def resized_size(size: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """(H, W) -> (h, w): shorter side to `min_size`, unless the longer side would exceed `max_size`.
    A side never shrinks below 1 pixel (a 2000 x 3 image capped at 128 would otherwise be 128 x 0)."""
    H, W = size
    scale = min(min_size / min(H, W), max_size / max(H, W))
    return max(1, math.floor(H * scale)), max(1, math.floor(W * scale))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) float -> (C, h, w), bilinear with half-pixel centres (align_corners=False)."""
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def resize_boxes(boxes: torch.Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> torch.Tensor:
    """(G, 4) (x1, y1, x2, y2) pixels of an old_size=(H, W) image -> the same boxes in a new_size image."""
    ratio_h = torch.tensor(new_size[0], dtype=torch.float32) / old_size[0]
    ratio_w = torch.tensor(new_size[1], dtype=torch.float32) / old_size[1]
    scale = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(boxes)  # (4,)
    return boxes * scale


def resize_keypoints(keypoints: torch.Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> torch.Tensor:
    """(..., Kp, 3) (x, y, v) pixels of an old_size=(H, W) image -> the same keypoints in a new_size image;
    x and y are scaled as the boxes are (the same frame), v is kept."""
    ratio_h = torch.tensor(new_size[0], dtype=torch.float32) / old_size[0]
    ratio_w = torch.tensor(new_size[1], dtype=torch.float32) / old_size[1]
    scale = torch.stack([ratio_w, ratio_h, torch.tensor(1.0)]).to(keypoints)  # (3,)
    return keypoints * scale


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(G, H, W) uint8 {0, 1} -> (G, h, w) uint8, nearest neighbour (a mask stays binary)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].to(torch.uint8)


def pad_batch(images: list[torch.Tensor], size_divisible: int) -> torch.Tensor:
    """List of (3, hi, wi) -> (N, 3, Hp, Wp), zero-padded at the bottom and right.

    Hp, Wp: the largest hi, wi rounded up to a multiple of `size_divisible`, so every FPN level has
    an integer size and a pixel (x, y) is at (x / s, y / s) on the level of stride s in every image.
    """
    Hp = math.ceil(max(im.shape[1] for im in images) / size_divisible) * size_divisible
    Wp = math.ceil(max(im.shape[2] for im in images) / size_divisible) * size_divisible
    batch = images[0].new_zeros((len(images), images[0].shape[0], Hp, Wp))
    for b, im in zip(batch, images):
        b[:, : im.shape[1], : im.shape[2]].copy_(im)
    return batch


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Paste (D, M, M) mask probabilities into a (D, H, W) image at their (D, 4) boxes (image pixels).

    As torchvision's paste_masks_in_image, so that the same masks come out:
      1. pad each mask with one pixel of zeros, (M + 2)^2, and grow its box about its centre by
         (M + 2) / M, so the padded mask covers the grown box exactly; the zero border lets the
         probability fall off at the box edge instead of being cut;
      2. round the grown box to integer pixel corners (truncation towards zero);
      3. resize the padded mask bilinearly (half-pixel centres) to the box's pixels and write it there.

    Bilinear resizing is separable, so step 3 is one (H, M+2) @ (M+2, M+2) @ (M+2, W) product per mask:
    the two matrices hold each pixel row's / column's interpolation weights (zero outside the box), which
    pastes every mask at once, with no loop over detections.
    """
    D, M = masks.shape[0], masks.shape[-1]
    H, W = image_size
    if D == 0:
        return masks.new_zeros((0, H, W))
    padded = F.pad(masks, (1, 1, 1, 1))  # (D, M+2, M+2)
    scale = (M + 2) / M
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (D, 2) x, y
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale  # (D, 2)
    corners = torch.cat([centre - half, centre + half], dim=1).trunc()  # (D, 4) integer x1, y1, x2, y2
    rows = interpolation_matrix(corners[:, 1], corners[:, 3], H, M + 2)  # (D, H, M+2)
    cols = interpolation_matrix(corners[:, 0], corners[:, 2], W, M + 2)  # (D, W, M+2)
    # float32 also under autocast, which would run these products in bf16 / fp16 (8 or 11 significant bits)
    with torch.autocast(masks.device.type, enabled=False):
        return rows @ padded.float() @ cols.transpose(1, 2)  # (D, H, W)


def interpolation_matrix(start: torch.Tensor, end: torch.Tensor, length: int, src: int) -> torch.Tensor:
    """Weights of bilinear resizing (align_corners=False) of `src` samples onto pixels start..end.

    start, end: (D,) integer-valued float, the first and last pixel covered (inclusive).
    Returns (D, length, src) float32: row p holds the weights of the src samples for pixel p, all zero
    for pixels outside [start, end] or outside 0..length-1.
    """
    n = (end - start + 1).clamp(min=1)  # (D,) pixels covered
    p = torch.arange(length, device=start.device, dtype=torch.float32)  # (length,)
    u = p[None] - start[:, None]  # (D, length) pixel index inside the box
    # source coordinate of pixel u's centre; negative ones clamp to 0 (as F.interpolate does)
    x = ((u + 0.5) * (src / n[:, None]) - 0.5).clamp(min=0)  # (D, length)
    i0 = x.floor().clamp(max=src - 1)
    frac = x - i0
    i1 = (i0 + 1).clamp(max=src - 1)
    inside = ((u >= 0) & (u < n[:, None])).float()  # (D, length)
    weights = torch.zeros(start.shape[0], length, src, device=start.device)
    weights.scatter_add_(2, i0.long()[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(2, i1.long()[..., None], (frac * inside)[..., None])
    return weights


class ImageTransform:
    """Callable pre/post-processing with the settings of a TransformConfig (no weights, no state).

    transform(images, targets) -> (ImageBatch, resized targets or None)
    transform.postprocess(detections, batch) -> detections in original-image pixels, masks pasted
    """

    def __init__(self, cfg: TransformConfig):
        self.cfg = cfg

    def __call__(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        """images: list of (3, H, W) float in [0, 1]; targets: per image "boxes" (G, 4), "labels" (G,),
        "masks" (G, H, W) and "keypoints" (G, Kp, 3) (both optional), in that image's pixels.
        Returns (ImageBatch, new targets)."""
        check_inputs(images, targets)
        cfg = self.cfg
        originals = [(im.shape[1], im.shape[2]) for im in images]
        sizes = [resized_size(s, cfg.min_size, cfg.max_size) for s in originals]
        resized = [resize_image(normalize(im, cfg.image_mean, cfg.image_std), s) for im, s in zip(images, sizes)]
        batch = ImageBatch(pad_batch(resized, cfg.size_divisible), sizes, originals)
        if targets is None:
            return batch, None
        new_targets = []
        for t, old, new in zip(targets, originals, sizes):
            t = dict(t, boxes=resize_boxes(t["boxes"].float(), old, new))  # a copy: the caller's stays
            if "masks" in t:
                t["masks"] = resize_masks(t["masks"], new)
            if "keypoints" in t:
                t["keypoints"] = resize_keypoints(t["keypoints"].float(), old, new)
            new_targets.append(t)
        return batch, new_targets

    def postprocess(self, detections: list[dict], batch: ImageBatch) -> list[dict]:
        """Detections in the resized frame ("boxes" (D, 4), "masks" (D, M, M) probabilities, "keypoints"
        (D, Kp, 3)) -> boxes and keypoints in original pixels and "masks" (D, H, W) float32 pasted probabilities."""
        out = []
        for det, size, original in zip(detections, batch.image_sizes, batch.original_sizes):
            det = dict(det, boxes=resize_boxes(det["boxes"], size, original))
            if "masks" in det:
                det["masks"] = paste_masks(det["masks"].float(), det["boxes"].float(), original)
            if "keypoints" in det:
                det["keypoints"] = resize_keypoints(det["keypoints"], size, original)
            out.append(det)
        return out


def check_inputs(images: list[torch.Tensor], targets: list[dict] | None) -> None:
    """ValueError naming the argument and what is wrong with it: a model fed NaN, a 0-255 image or a float64
    one would otherwise give no detections, or fail deep inside a convolution, without saying why."""
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError(f"images must be a non-empty list of (3, H, W) tensors, got {type(images).__name__}")
    for i, im in enumerate(images):
        if not torch.is_tensor(im) or im.dim() != 3 or im.shape[0] != 3:
            what = f"shape {tuple(im.shape)}" if torch.is_tensor(im) else type(im).__name__
            raise ValueError(f"images[{i}] must be a (3, H, W) float32 tensor in [0, 1], got {what}")
        if im.dtype != torch.float32:
            how = ("divide by 255: image.float() / 255" if not im.is_floating_point() else
                   "use image.float(); for mixed precision run the model under torch.autocast" if im.itemsize < 4
                   else "use image.float()")
            raise ValueError(f"images[{i}] is {im.dtype}; the model takes float32 images in [0, 1] ({how})")
        if im.shape[1] == 0 or im.shape[2] == 0:
            raise ValueError(f"images[{i}] is empty: {im.shape[1]}x{im.shape[2]} pixels")
    # one reduction per image, read back at once (a single device synchronization for the batch)
    stats = torch.stack([torch.stack([im.isfinite().all().float(), im.amin(), im.amax()]) for im in images]).tolist()
    for i, (finite, lowest, highest) in enumerate(stats):
        if not finite:
            raise ValueError(f"images[{i}] contains NaN or infinite values")
        if lowest < -0.01 or highest > 1.01:
            raise ValueError(f"images[{i}] has values in [{lowest:.4g}, {highest:.4g}], not [0, 1]: an image in "
                             f"0-255 must be divided by 255, and the normalization with the ImageNet mean and std "
                             f"is the model's own first step (do not apply it yourself)")
    if targets is None:
        return
    if len(targets) != len(images):
        raise ValueError(f"targets has {len(targets)} entries for {len(images)} images")
    for i, t in enumerate(targets):
        for key in ("boxes", "labels"):
            if key not in t:
                raise ValueError(f'targets[{i}] has no "{key}"')
        boxes = t["boxes"]
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f'targets[{i}]["boxes"] must be (G, 4), got {tuple(boxes.shape)}')
        if not boxes.is_floating_point() or not bool(boxes.isfinite().all()):
            raise ValueError(f'targets[{i}]["boxes"] must be finite float (x1, y1, x2, y2) pixels, got '
                             f'{boxes.dtype} {boxes.tolist()[:3]}')
        if t["labels"].shape != (boxes.shape[0],) or t["labels"].dtype != torch.int64:
            raise ValueError(f'targets[{i}]["labels"] must be ({boxes.shape[0]},) int64, '
                             f'got {tuple(t["labels"].shape)} {t["labels"].dtype}')
        if "masks" in t and t["masks"].shape != (boxes.shape[0], *images[i].shape[1:]):
            raise ValueError(f'targets[{i}]["masks"] must be ({boxes.shape[0]}, H, W) like its image, '
                             f'got {tuple(t["masks"].shape)}')
        keypoints = t.get("keypoints")
        if keypoints is not None and (keypoints.dim() != 3 or keypoints.shape[0] != boxes.shape[0] or
                                      keypoints.shape[2] != 3 or not keypoints.is_floating_point()):
            raise ValueError(f'targets[{i}]["keypoints"] must be ({boxes.shape[0]}, Kp, 3) float (x, y, visibility), '
                             f'got {tuple(keypoints.shape)} {keypoints.dtype}')
