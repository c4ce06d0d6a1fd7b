"""Synthetic "shapes": squares, circles and triangles on a noisy background, with exact instance masks.

Other kinds make a dataset of new classes (`kinds=("star", "ring", "cross")`, `KINDS` names them all): the
fine-tuning study (benchmarks/transfer.py) starts from a model trained on the first three and learns these.

A dataset small enough to train Mask R-CNN from scratch on a laptop CPU in minutes, with the same
interface as `CocoDataset` (and a pycocotools ground truth, `ds.coco`), so training and COCO evaluation
run unchanged on it; `export_coco(folder)` writes it as a real COCO folder (PNG images + instances JSON).

Image i is drawn from its own generator seeded with (seed, i): it never depends on other images having
been drawn, so any worker can make any item, in any order. Shapes are painted bottom to top; a later
shape hides what it covers, so each instance's mask is its visible pixels only (no pixel belongs to two
instances), and a shape left with less than `min_visible` of its area visible is not drawn at all.
Boxes are the tight boxes of the visible masks.

Keypoints (`keypoints=True`, for the keypoint branch of Sec. 5): a square's four corners, a triangle's three
vertices, a circle's four extreme points, at their exact positions (pixel-edge coordinates, like the boxes).
A dataset has one layout of K keypoint types, so each class has slots of its own, K = 4 + 4 + 3 = 11:
    0-3 square top_left, top_right, bottom_right, bottom_left     4-7 circle top, right, bottom, left
    8-10 triangle apex, bottom_right, bottom_left
and an instance labels its own class's slots only (the others are v = 0, "not labelled", as COCO marks what
an annotator did not click). Class-specific slots make one list of flip pairs right for every class: a mirror
swaps left and right within each class (`FLIP_PAIRS`: square 0-1 and 2-3, circle 5-7, triangle 9-10), where one
shared "corner 0..3" layout would need a square's pairs for squares and a circle's for circles. Visibility
v: 2 visible; 1 hidden under a shape drawn later (on or inside its outline); 0 outside the image (which the
shapes, drawn whole inside the image, never are). Images, masks and boxes are the same with or without
keypoints: the keypoints are computed from the same draws, with no random number of their own.

Glossary: S image size (square images), N instances in an image, K keypoint types (11).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from .coco import to_tensor_image
from .coco_json import coco_from_dict
from .shape_kinds import (  # noqa: F401 (names other modules import from here)
    DEFAULT_KINDS, FLIP_PAIRS, KEYPOINT_NAMES, KEYPOINT_SIGMAS, KINDS, SKELETON, SLOTS, check_kinds, instance_keypoints,
    kind_mask, shape_mask)

CLASS_NAMES = ["background", *DEFAULT_KINDS]
def _pick_colour(rng, avoid: list[np.ndarray], min_dist: float = 0.35, tries: int = 30) -> np.ndarray:
    """An RGB colour in [0, 1]^3 at least min_dist from every colour in `avoid` (the best of `tries`)."""
    best, best_d = None, -1.0
    for _ in range(tries):
        c = rng.uniform(0, 1, 3)
        d = min(np.linalg.norm(c - a) for a in avoid) if avoid else np.inf
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


class ShapesDataset:
    """num_images synthetic images: ds[i] -> (image (3, S, S) float32 in [0, 1], target dict), target as
    in CocoDataset ("boxes" (N, 4) float32, "labels" (N,) int64 in 1..3, "masks" (N, S, S) uint8,
    "image_id" = i + 1). Labels: 1 square, 2 circle, 3 triangle; num_classes = 4.

    min_objects / max_objects: shapes drawn per image (before occluded ones are dropped).
    size_range: shape size as a fraction of S. noise: std of the (uniform) pixel noise, in [0, 1] units.
    min_visible: fraction of a shape's area that must stay visible for it to be kept.
    keypoints: targets also get "keypoints" (N, 11, 3) float32 (x, y, v) (module docstring), and the dataset the
    keypoint metadata of data/keypoints.py; flip with RandomHorizontalFlip(p, shapes.FLIP_PAIRS).
    kinds: the shapes drawn, class k being kinds[k - 1] (KINDS; e.g. ("star", "ring", "cross") for new classes);
    keypoints exist for the default kinds only.
    """

    def __init__(self, num_images: int, image_size: int = 128, seed: int = 0, min_objects: int = 1,
                 max_objects: int = 4, size_range=(0.15, 0.45), noise: float = 0.03,
                 min_visible: float = 0.35, transforms=None, keypoints: bool = False, kinds=DEFAULT_KINDS):
        if num_images < 1:
            raise ValueError(f"empty dataset: num_images must be >= 1, got {num_images}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if not 1 <= min_objects <= max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        if not 0 < size_range[0] <= size_range[1] <= 1:
            raise ValueError(f"size_range must satisfy 0 < lo <= hi <= 1, got {size_range}")
        kinds = check_kinds(kinds)
        if keypoints and kinds != DEFAULT_KINDS:
            raise ValueError(f"keypoints are defined for the kinds {', '.join(DEFAULT_KINDS)} only, got kinds "
                             f"{', '.join(kinds)}")
        self.num_images, self.image_size, self.seed = num_images, image_size, seed
        self.min_objects, self.max_objects = min_objects, max_objects
        self.size_range, self.noise, self.min_visible = tuple(size_range), noise, min_visible
        self.transforms = transforms
        self.kinds = kinds
        self.class_names = ["background", *kinds]
        self.num_classes = len(self.class_names)
        self.label_to_cat_id = {label: label for label in range(1, self.num_classes)}
        self.cat_id_to_label = dict(self.label_to_cat_id)
        self.image_ids = list(range(1, num_images + 1))  # COCO-style ids start at 1
        self.keypoints = bool(keypoints)
        self.keypoint_names = list(KEYPOINT_NAMES) if keypoints else []
        self.num_keypoints = len(self.keypoint_names)
        self.skeleton = list(SKELETON) if keypoints else []
        self.flip_pairs = list(FLIP_PAIRS) if keypoints else []
        self.keypoint_sigmas = KEYPOINT_SIGMAS if keypoints else None
        # label -> the keypoint slots its instances label (the others are never trained: drawing leaves them out)
        self.class_keypoints = {lab: list(range(11))[slots] for lab, slots in SLOTS.items()} if keypoints else {}

    def __len__(self) -> int:
        return self.num_images

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Image `index` as numpy: image (S, S, 3) uint8, masks (N, S, S) bool (visible pixels), labels (N,),
        keypoints (N, 11, 3) float32 (x, y, v) (module docstring; computed whether or not the targets hold them;
        all 0 for kinds other than the default ones)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng([self.seed, index])
        s = self.image_size
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5  # pixel centres, (S, S) each
        background = rng.uniform(0, 1, 3)
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        labels, colours, masks, geometry = [], [], [], []
        for _ in range(n):
            label = int(rng.integers(1, self.num_classes))
            size = rng.uniform(*self.size_range) * s
            cx, cy = rng.uniform(size / 2, s - size / 2, 2)
            labels.append(label)
            colours.append(_pick_colour(rng, [background] + colours))
            masks.append(kind_mask(self.kinds[label - 1], cx, cy, size, xx, yy))
            geometry.append((label, cx, cy, size))

        # Occlusion, top (last drawn) to bottom: a shape's visible part is what no kept shape above covers,
        # and a keypoint is hidden (v = 1) where a kept shape above covers it.
        covered = np.zeros((s, s), dtype=bool)
        kept, above = [], []  # (label, colour, visible mask, keypoints), top first; the kept shapes' geometry
        for label, colour, mask, shape in zip(labels[::-1], colours[::-1], masks[::-1], geometry[::-1]):
            visible = mask & ~covered
            if visible.sum() >= max(self.min_visible * mask.sum(), 1):
                points = instance_keypoints(shape, above, s) if self.kinds == DEFAULT_KINDS else None
                kept.append((label, colour, visible, points))
                covered |= mask
                above.append(shape)
        kept.reverse()  # bottom first, the painting order

        image = np.empty((s, s, 3), dtype=np.float32)
        image[:] = background
        for _, colour, visible, _ in kept:
            image[visible] = colour
        # pixel noise, uniform with standard deviation `noise` (four times cheaper to draw than Gaussian)
        image += (rng.random((s, s, 3), dtype=np.float32) - 0.5) * np.float32(self.noise * 12 ** 0.5)
        image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        out_masks = np.stack([m for _, _, m, _ in kept]) if kept else np.zeros((0, s, s), dtype=bool)
        keypoints = (np.stack([k for *_, k in kept]) if kept and self.kinds == DEFAULT_KINDS
                     else np.zeros((len(kept), len(KEYPOINT_NAMES), 3), np.float32))
        return image, out_masks, np.array([lab for lab, *_ in kept], dtype=np.int64), keypoints

    def load_image(self, index: int) -> np.ndarray:
        """(S, S, 3) uint8 RGB."""
        return self.draw(index)[0]

    def _target(self, index: int, masks: np.ndarray, labels: np.ndarray, keypoints: np.ndarray) -> dict:
        target = {"boxes": torch.from_numpy(masks_to_boxes(masks)), "labels": torch.from_numpy(labels),
                  "masks": torch.from_numpy(masks.astype(np.uint8)), "image_id": self.image_ids[index]}
        if self.keypoints:
            target["keypoints"] = torch.from_numpy(keypoints)
        return target

    def load_target(self, index: int) -> dict:
        """Target dict of image `index` (see the class docstring)."""
        return self._target(index, *self.draw(index)[1:])

    def __getitem__(self, index: int):
        image, *drawn = self.draw(index)
        target = self._target(index, *drawn)
        image = to_tensor_image(image)  # (3, S, S)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def file_name(self, index: int) -> str:
        return f"{self.image_ids[index]:06d}.png"

    def coco_dict(self) -> dict:
        """The ground truth as a COCO instances dict: RLE masks (counts as str), area and bbox from the mask."""
        images, annotations = [], []
        for i in range(len(self)):
            _, masks, labels, keypoints = self.draw(i)
            images.append({"id": self.image_ids[i], "file_name": self.file_name(i),
                           "height": self.image_size, "width": self.image_size})
            # pycocotools encodes (H, W, N) Fortran-order uint8
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
            for rle, label, points in zip(rles, labels, keypoints):
                rle["counts"] = rle["counts"].decode("ascii")
                annotations.append({"id": len(annotations) + 1, "image_id": self.image_ids[i],
                                    "category_id": int(label), "segmentation": rle,
                                    "area": float(mask_utils.area(rle)),
                                    "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
                if self.keypoints:  # float32 values, so that CocoDataset reads back the same targets
                    annotations[-1].update(keypoints=[float(v) for v in points.reshape(-1)],
                                           num_keypoints=int((points[:, 2] > 0).sum()))
        categories = [{"id": self.label_to_cat_id[k], "name": self.class_names[k], "supercategory": "shape"}
                      for k in range(1, self.num_classes)]
        for category in categories if self.keypoints else []:  # COCO's skeleton counts keypoints from 1
            category.update(keypoints=list(KEYPOINT_NAMES), skeleton=[[i + 1, j + 1] for i, j in SKELETON])
        return {"info": {"description": f"minimaskrcnn synthetic shapes, seed {self.seed}"},
                "images": images, "annotations": annotations, "categories": categories}

    @functools.cached_property
    def coco(self):
        """pycocotools COCO of the ground truth, built on first use (it draws every image once)."""
        return coco_from_dict(self.coco_dict())

    def export_coco(self, folder, split: str = "train") -> Path:
        """Write folder/{split}/NNNNNN.png and folder/annotations/instances_{split}.json; returns the JSON
        path. `CocoDataset(folder, split)` then reads back the same images, boxes, labels and masks."""
        folder = Path(folder)
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        for i in range(len(self)):
            Image.fromarray(self.load_image(i)).save(folder / split / self.file_name(i))
        ann_file = folder / "annotations" / f"instances_{split}.json"
        ann_file.write_text(json.dumps(self.coco_dict()))
        return ann_file

    def __repr__(self) -> str:
        size, keypoints = f"{self.image_size}x{self.image_size}", ", keypoints=True" if self.keypoints else ""
        kinds = f", kinds={self.kinds}" if self.kinds != DEFAULT_KINDS else ""
        return f"ShapesDataset({self.num_images} images, {size}, seed={self.seed}{keypoints}{kinds})"


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 tight boxes (x1, y1, x2, y2) in pixel-edge coordinates
    (a mask covering only pixel (r, c) has the box (c, r, c + 1, r + 1))."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
