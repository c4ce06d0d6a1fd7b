"""A COCO-format instance segmentation dataset (the paper's Sec. 4 data: COCO train2017 / val2017).

Reads any COCO-format export (COCO itself, CVAT, Labelme, Roboflow: one JSON and one image folder) through
pycocotools: images are decoded with Pillow, turned by their EXIF orientation (as displayed and annotated) and
converted to RGB; polygons and RLE (crowd included) become masks; category ids (COCO's sparse 1..90 for 80
classes, or 0-based, or anything) map to contiguous labels 1..K-1, label 0 is background. `file_name` may name
a file in a subfolder of the image folder.

The JSON is checked when the dataset is built (`coco_json.py`): a structural error fails at once with a
message naming the file and the annotation, not later inside a DataLoader worker; so is every image's size as
displayed, read from the file headers without decoding, against the JSON's. The training targets leave out
invalid polygons and annotations, crowd regions (iscrowd=1) and degenerate boxes (w or h < 1 pixel inside the
image), counted in one warning. `ds.coco`, the ground truth the evaluation compares against, is the file as given
(`coco_json.ground_truth_dict`), as pycocotools' COCOeval on the file and detectron2's COCOEvaluator see it.

Keypoints (Sec. 5): a file whose categories name keypoints (COCO's person_keypoints_*.json, or an export with a
skeleton) gives every target "keypoints" (N, K, 3) float32 (x, y, v) in image pixels, as the file has them (x, y
as written, v = 0 not labelled, 1 hidden, 2 visible), and the dataset its keypoint metadata (data/keypoints.py):
keypoint names, skeleton, flip pairs (derived from left_ / right_ names unless given) and OKS sigmas (COCO's for
its 17 person keypoints, else as given).

Glossary: N instances in one image, H, W image height and width, K classes including background.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from .. import paths
from .coco_json import (clean_coco_dict, coco_from_dict, describe_dropped, ground_truth_dict, keypoint_count,
                        load_coco_json, to_rle)
from .keypoints import (COCO_PERSON_KEYPOINTS, COCO_PERSON_SIGMAS, check_flip_pairs, check_sigmas,
                        flip_pairs_from_names)

EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how a camera's stored pixels turn for display (1: as stored)
TURNED = (5, 6, 7, 8)  # the orientations that swap width and height (a quarter turn, mirrored or not)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation 1..8 of an opened image (1 when absent or invalid), read from its header."""
    if im.format == "PNG" and "exif" not in im.info:  # Pillow would decode the pixels to look for an eXIf chunk
        return 1  # after them: such a late chunk (rare) counts as absent, here and in read_rgb alike
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):  # a broken EXIF block: the pixels as stored
        return 1
    return value if value in range(1, 9) else 1


def displayed_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of an image file as it is displayed, from its header alone: Pillow
    decodes pixels lazily, so nothing is decoded (some 0.1 ms a file). OSError / ValueError when unreadable."""
    with Image.open(path) as im:
        w, h = im.size
        orientation = exif_orientation(im)
    return (h, w, orientation) if orientation in TURNED else (w, h, orientation)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file with Pillow into (H, W, 3) uint8 RGB, whatever its mode (L, P, RGBA, CMYK,
    16-bit), turned by its EXIF orientation as detectron2's read_image does: a phone photo is stored as the
    sensor saw it, and is shown (and annotated, in CVAT, Labelme, ...) as the orientation tag says."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    try:
        with Image.open(path) as im:
            turn = exif_orientation(im) != 1  # from the header, as displayed_size reads it
            im.load()
            if turn:
                im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth: rescale to 8 bits
                a = np.asarray(im, dtype=np.float32)
                a = a / 257.0 if im.mode.startswith("I;16") else a * (255.0 / max(float(a.max()), 1e-6))
                im = Image.fromarray(np.round(np.clip(a, 0, 255)).astype(np.uint8))
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode image file {path}: {e}") from e


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]. Converted in numpy: torch's multi-threaded
    elementwise kernels cost more than they save on one small image inside a busy DataLoader."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)  # (H, W, 3) -> (3, H, W)
    return torch.from_numpy(np.divide(chw, np.float32(255.0), out=chw))  # in place: one (3, H, W) copy, not two


class CocoDataset:
    """COCO-format instances: ds[i] -> (image (3, H, W) float32 in [0, 1], target dict).

    target: "boxes" (N, 4) float32 (x1, y1, x2, y2) image pixels; "labels" (N,) int64 in 1..K-1;
    "masks" (N, H, W) uint8 {0, 1}; "image_id" int, the COCO image id. N may be 0 (a negative image).
    With keypoints in the file (module docstring), also "keypoints" (N, Kp, 3) float32.

    root: COCO root (None: `paths.coco_root()`); files default to root/annotations/instances_{split}.json
    and root/{split}/. skip_empty drops images with no training instance (only crowd or no annotations).
    transforms: callable (image, target) -> (image, target), e.g. `transforms.Compose([...])`; to flip keypoints,
    RandomHorizontalFlip(p, ds.flip_pairs). flip_pairs, keypoint_sigmas: the keypoints' own (None: derived).
    """

    def __init__(self, root=None, split: str = "train2017", skip_empty: bool = False, transforms=None,
                 ann_file=None, image_dir=None, flip_pairs=None, keypoint_sigmas=None):
        root = paths.coco_root(root)
        self.ann_file = Path(ann_file) if ann_file is not None else paths.ann_file(root, split)
        self.image_dir = Path(image_dir) if image_dir is not None else root / split
        self.split = split
        self.transforms = transforms
        data = load_coco_json(self.ann_file)
        if not self.image_dir.is_dir():  # before any warning about the annotations
            raise FileNotFoundError(f"image folder {self.image_dir} (for {self.ann_file}) does not exist")
        ground_truth, changed = ground_truth_dict(data)
        self.coco = coco_from_dict(ground_truth)  # what evaluation compares against: the file as given
        problems = clean_coco_dict(data)  # what training learns from

        cat_ids = sorted(self.coco.cats)
        self.label_to_cat_id = {label: cat for label, cat in enumerate(cat_ids, start=1)}
        self.cat_id_to_label = {cat: label for label, cat in self.label_to_cat_id.items()}
        self.class_names = ["background"] + [self.coco.cats[c]["name"] for c in cat_ids]
        self.num_classes = len(self.class_names)
        self._read_keypoint_layout(flip_pairs, keypoint_sigmas)

        # Training instances per image: (annotation id, xyxy box, label); crowd and degenerate left out.
        self._instances = {img_id: [] for img_id in self.coco.imgs}
        self._train_anns = {ann["id"]: ann for ann in data["annotations"]}  # the cleaned ones
        for ann in data["annotations"]:
            if ann["iscrowd"]:
                continue
            img = self.coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            x1, y1 = max(x, 0.0), max(y, 0.0)  # clip to the image, then judge the size
            x2, y2 = min(x + w, img["width"]), min(y + h, img["height"])
            if x2 - x1 < 1 or y2 - y1 < 1:
                problems["annotations", "with a box under 1 pixel inside the image"] += 1
                continue
            label = self.cat_id_to_label[ann["category_id"]]
            self._instances[ann["image_id"]].append((ann["id"], (x1, y1, x2, y2), label))

        if problems:
            evaluation = ("; the evaluation ground truth is the file as given, but for what pycocotools cannot "
                          f"read: {describe_dropped(changed)}" if changed else
                          "; the evaluation ground truth keeps them all: it is the file as given")
            warnings.warn(f"{self.ann_file}: left out {describe_dropped(problems)} of the training targets"
                          f"{evaluation}")
        self.image_ids = [img["id"] for img in self.coco.dataset["images"]
                          if not skip_empty or self._instances[img["id"]]]
        if not self.image_ids:
            why = " with at least one non-crowd instance (skip_empty=True)" if skip_empty else ""
            raise ValueError(f"empty dataset: {self.ann_file} lists no images{why}")
        self._check_image_files()

    def _read_keypoint_layout(self, flip_pairs, sigmas) -> None:
        """ds.num_keypoints, keypoint_names, skeleton (0-based), flip_pairs, keypoint_sigmas (data/keypoints.py)."""
        source = str(self.ann_file)
        self.num_keypoints = K = keypoint_count(self.coco.dataset, source)
        named = [c for c in self.coco.dataset["categories"] if c.get("keypoints") is not None]
        self.keypoint_names = list(named[0]["keypoints"]) if named else []
        self.skeleton = [(a - 1, b - 1) for a, b in named[0].get("skeleton", [])] if named else []  # COCO: from 1
        pairs = flip_pairs_from_names(self.keypoint_names) if flip_pairs is None else flip_pairs
        self.flip_pairs = check_flip_pairs(pairs, K, source)
        if sigmas is None and tuple(self.keypoint_names) == COCO_PERSON_KEYPOINTS:
            sigmas = COCO_PERSON_SIGMAS
        self.keypoint_sigmas = check_sigmas(sigmas, K, source)

    def _check_image_files(self) -> None:
        """Fail at construction, naming the paths, when listed image files are missing; then when an image's size
        as displayed (its EXIF orientation applied) differs from the JSON's, or its header cannot be read."""
        present = set(os.listdir(self.image_dir))  # one listing instead of one stat per image
        missing = [self.image_path(i) for i in range(len(self))
                   if self._file_name(i) not in present and not self.image_path(i).is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise FileNotFoundError(f"{len(missing)} image file(s) listed in {self.ann_file} are missing: "
                                    f"{shown}{' ...' if len(missing) > 3 else ''}")
        with ThreadPoolExecutor(8) as pool:  # headers only; threads overlap the reads of a cold disk
            wrong = [w for w in pool.map(self._size_problem, range(len(self))) if w]
        if wrong:
            raise ValueError(f"{len(wrong)} image file(s) do not match {self.ann_file}: {'; '.join(wrong[:4])}"
                             f"{'; ...' if len(wrong) > 4 else ''}. Fix the files or the JSON's width and height")

    def _size_problem(self, index: int) -> str | None:
        """Why image `index` disagrees with the JSON, or None when its displayed size is the JSON's."""
        info = self.coco.imgs[self.image_ids[index]]
        try:
            w, h, orientation = displayed_size(self.image_path(index))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return f"{self.image_path(index)} cannot be read ({e})"
        if (h, w) == (info["height"], info["width"]):
            return None
        turned = f" once turned by its EXIF orientation {orientation}" if orientation in TURNED else ""
        return f"{self.image_path(index)} is {w}x{h} (w x h){turned}, the JSON says {info['width']}x{info['height']}"

    def __len__(self) -> int:
        return len(self.image_ids)

    def _file_name(self, index: int) -> str:
        return self.coco.imgs[self.image_ids[index]]["file_name"]

    def image_path(self, index: int) -> Path:
        return self.image_dir / self._file_name(index)

    def load_image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB as displayed (EXIF orientation applied); the size must agree with the JSON's height
        and width (checked from the headers when the dataset was built; a file changed since is caught here)."""
        info = self.coco.imgs[self.image_ids[index]]
        image = read_rgb(self.image_path(index))
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"image file {self.image_path(index)} is {image.shape[1]}x{image.shape[0]} "
                             f"(w x h) but {self.ann_file} says {info['width']}x{info['height']}")
        return image

    def load_target(self, index: int) -> dict:
        """Target dict of image `index`, at the image's original size (see the class docstring)."""
        img_id = self.image_ids[index]
        info = self.coco.imgs[img_id]
        h, w = info["height"], info["width"]
        instances = self._instances[img_id]
        masks = np.zeros((len(instances), h, w), dtype=np.uint8)
        with warnings.catch_warnings():  # pycocotools' decode trips a numpy-2 DeprecationWarning per call
            warnings.simplefilter("ignore", DeprecationWarning)
            for k, (ann_id, _, _) in enumerate(instances):
                masks[k] = mask_utils.decode(to_rle(self._train_anns[ann_id]["segmentation"], h, w))
        target = {
            "boxes": torch.tensor([box for _, box, _ in instances], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label for _, _, label in instances], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": int(img_id),
        }
        if self.num_keypoints:  # an instance of a category without keypoint names has none labelled
            K = self.num_keypoints
            keypoints = [self._train_anns[ann_id].get("keypoints") or [0] * 3 * K for ann_id, _, _ in instances]
            target["keypoints"] = torch.tensor(keypoints, dtype=torch.float32).reshape(-1, K, 3)
        return target

    def __getitem__(self, index: int):
        image = to_tensor_image(self.load_image(index))
        target = self.load_target(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return (f"CocoDataset({self.ann_file}, {len(self)} images, {self.num_classes - 1} classes, "
                f"images in {self.image_dir})")
