"""Reading a COCO instances JSON, from COCO itself or from an export (CVAT, Labelme, Roboflow), and making it safe.

Two kinds of problems, treated differently, as detectron2 and mmdetection do:

- **Structural errors** fail at once, with a message naming the file and the field, image or annotation id: not
  a JSON object, a missing key, an id, height or width that is not an integer, a duplicate id or category name,
  an annotation whose image or category does not exist, a bbox that is not [x, y, w, h], a segmentation that is
  neither a list of polygons nor an RLE of its image's size; and for keypoints (person_keypoints_*.json, Sec. 5):
  categories that name different numbers of keypoints, an annotation whose keypoints are not 3 numbers (x, y, v)
  for each of its category's keypoint names, a visibility v outside 0-2, a `num_keypoints` that disagrees with the
  list. Nothing sensible can be trained from such a file.
- **Invalid shapes** are dropped from the training targets and counted, because exports are full of them:
  polygons with fewer than 3 points, an odd number of coordinates, NaN or infinite coordinates or zero area; then
  annotations with no valid polygon left (CVAT writes rectangles as `"segmentation": []`) or a NaN bbox. One
  warning counts them all (`CocoDataset` gives it), instead of rejecting a file of 10,000 images for one bad click.

The **evaluation ground truth** is another matter: it is the file as given (`ground_truth_dict`), as pycocotools'
COCOeval reads it and detectron2's COCOEvaluator scores against it. A zero-area polygon there is an object no
mask can hit (a miss), a crowd region of any size is an ignore region. Only what pycocotools cannot read is
changed (see `ground_truth_dict`), and what exports leave out is filled in: `iscrowd` (0) and `area` (the mask's
pixel count, as in the official files), which COCOeval reads; for a category with keypoint names, `keypoints`
(all unlabelled) and `num_keypoints` (the labelled ones). Category ids may be anything (0-based, 1-based, with
gaps); `CocoDataset` maps them to contiguous labels.
"""
from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
from pathlib import Path

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

REQUIRED = {
    "file": ("images", "annotations", "categories"),
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "bbox", "segmentation"),
    "categories": ("id", "name"),
}


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools COCO over an in-memory dataset dict, without pycocotools' progress prints."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco_json(ann_file: str | os.PathLike) -> dict:
    """Read a COCO instances JSON and check its structure (`validate_coco_dict`); the dict as stored.
    FileNotFoundError / ValueError naming the file and the offending field or annotation id."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    try:
        data = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{ann_file} is not valid JSON: {e}") from e
    validate_coco_dict(data, str(ann_file))
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_coco_dict(data, source: str) -> None:
    """Structural checks of a COCO instances dict (module docstring); `source` names the file in messages.
    Integral floats in an image's height and width (some exporters write 480.0) become ints."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object with keys {REQUIRED['file']}, got {type(data).__name__}")
    missing = [k for k in REQUIRED["file"] if k not in data]
    if missing:
        raise ValueError(f"{source} is not a COCO instances file: missing top-level key(s) {missing}")
    for section in ("images", "annotations", "categories"):
        if not isinstance(data[section], list):
            raise ValueError(f"{source}: '{section}' must be a list, got {type(data[section]).__name__}")
        for i, item in enumerate(data[section]):
            lacking = [k for k in REQUIRED[section] if not isinstance(item, dict) or k not in item]
            if lacking:
                raise ValueError(f"{source}: {section}[{i}] is missing key(s) {lacking}")
            if not _is_int(item["id"]):
                raise ValueError(f"{source}: {section}[{i}] has id {item['id']!r}; ids must be integers")
    for i, img in enumerate(data["images"]):
        for key in ("height", "width"):
            v = img[key]
            if _is_number(v) and float(v).is_integer() and v > 0:
                img[key] = int(v)
            else:
                raise ValueError(f"{source}: image {img['id']} (images[{i}]) has {key} {v!r}; "
                                 f"it must be a positive integer (pixels)")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise ValueError(f"{source}: image {img['id']} (images[{i}]) has file_name {img['file_name']!r}")
    images = {img["id"]: img for img in data["images"]}
    if len(images) != len(data["images"]):
        raise ValueError(f"{source}: duplicate image ids in 'images'")
    cat_ids = {c["id"] for c in data["categories"]}
    if len(cat_ids) != len(data["categories"]):
        raise ValueError(f"{source}: duplicate category ids in 'categories'")
    check_category_names(data["categories"], source)
    num_keypoints = keypoint_count(data, source)
    ann_ids = set()
    for ann in data["annotations"]:
        aid = ann["id"]
        if aid in ann_ids:
            raise ValueError(f"{source}: duplicate annotation id {aid}")
        ann_ids.add(aid)
        if ann["image_id"] not in images:
            raise ValueError(f"{source}: annotation {aid} refers to unknown image_id {ann['image_id']!r}")
        if ann["category_id"] not in cat_ids:
            raise ValueError(f"{source}: annotation {aid} has unknown category_id {ann['category_id']!r} "
                             f"(categories: {sorted(cat_ids)})")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise ValueError(f"{source}: annotation {aid} has bbox {bbox!r}, expected [x, y, w, h]")
        img = images[ann["image_id"]]
        _check_segmentation(ann["segmentation"], aid, (img["height"], img["width"]), source)
        if "keypoints" in ann:
            _check_keypoints(ann, num_keypoints, source)


def keypoint_count(data: dict, source: str) -> int:
    """K, the number of keypoint names the categories give (0 when none does); ValueError naming `source` when
    they give different numbers (a dataset has one keypoint layout) or the names are not a list of strings."""
    counts = {}
    for c in data["categories"]:
        names = c.get("keypoints")
        if names is None:
            continue
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{source}: category {c['id']} has keypoints {str(names)[:60]}; expected a list of names")
        counts[c["id"]] = len(names)
    if len(set(counts.values())) > 1:
        raise ValueError(f"{source}: categories name different numbers of keypoints {counts}: a dataset has one "
                         f"keypoint layout")
    return next(iter(counts.values()), 0)


def _check_keypoints(ann: dict, num_keypoints: int, source: str) -> None:
    """[x1, y1, v1, ...]: 3 finite numbers per keypoint name, each v in 0-2, and num_keypoints (when given) the
    count of labelled ones (v > 0)."""
    aid, kp = ann["id"], ann["keypoints"]
    if not num_keypoints:
        raise ValueError(f"{source}: annotation {aid} has keypoints but no category names any ('keypoints' in "
                         f"categories)")
    if not (isinstance(kp, list) and len(kp) == 3 * num_keypoints and
            all(_is_number(v) and math.isfinite(v) for v in kp)):
        what = f"{len(kp)} values" if isinstance(kp, list) else type(kp).__name__
        raise ValueError(f"{source}: annotation {aid} has keypoints of {what}; expected {3 * num_keypoints} "
                         f"numbers, (x, y, v) for each of the {num_keypoints} keypoint names")
    bad = [v for v in kp[2::3] if v not in (0, 1, 2)]
    if bad:
        raise ValueError(f"{source}: annotation {aid} has keypoint visibility {bad[0]!r}; v must be 0 (not labelled), "
                         f"1 (labelled, hidden) or 2 (labelled, visible)")
    labelled = sum(v > 0 for v in kp[2::3])
    if "num_keypoints" in ann and ann["num_keypoints"] != labelled:
        raise ValueError(f"{source}: annotation {aid} has num_keypoints {ann['num_keypoints']!r} but {labelled} "
                         f"labelled keypoints (v > 0) in its list")


def check_category_names(categories: list[dict], source: str) -> None:
    """ValueError naming the file and the names when two categories share a name: a model's predictions would
    then name different classes the same, and nothing downstream could tell them apart."""
    ids = collections.defaultdict(list)
    for c in categories:
        ids[c["name"]].append(c["id"])
    shared = {name: found for name, found in ids.items() if len(found) > 1}
    if shared:
        listed = ", ".join(f"{name!r} (ids {', '.join(map(str, found))})" for name, found in shared.items())
        raise ValueError(f"{source}: duplicate category names {listed}; each class needs a name of its own")


def _check_segmentation(segm, aid, size_hw, source: str) -> None:
    """A list of polygons, each a list of numbers [x1, y1, x2, y2, ...], or an RLE dict of the image's size."""
    if isinstance(segm, list):
        for poly in segm:
            if not (isinstance(poly, list) and all(_is_number(v) for v in poly)):
                raise ValueError(f"{source}: annotation {aid} has a polygon that is not a flat list of "
                                 f"x, y numbers: {str(poly)[:60]}")
    elif isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise ValueError(f"{source}: annotation {aid}: RLE segmentation needs 'counts' and 'size'")
        if list(segm["size"]) != list(size_hw):
            raise ValueError(f"{source}: annotation {aid}: RLE size {segm['size']} differs from its image's "
                             f"(height, width) {list(size_hw)}")
    else:
        raise ValueError(f"{source}: annotation {aid}: segmentation must be polygons or RLE, "
                         f"got {type(segm).__name__}")


def polygon_problem(poly: list, h: int, w: int) -> str | None:
    """Why a polygon [x1, y1, x2, y2, ...] cannot be used, or None when it can."""
    if len(poly) % 2:
        return "with an odd number of coordinates"
    if len(poly) < 6:
        return "with fewer than 3 points"
    if not all(math.isfinite(v) for v in poly):
        return "with NaN or infinite coordinates"
    if mask_utils.area(mask_utils.frPyObjects([poly], h, w))[0] == 0:
        return "of zero area"
    return None


def clean_coco_dict(data: dict) -> collections.Counter:
    """Drop what cannot be trained on (module docstring) from data["annotations"], and fill in `iscrowd` and `area`.

    Expects a dict that passed `validate_coco_dict`. The list is replaced; the annotation dicts in it are never
    changed (a changed one is a copy), so a `ground_truth_dict` of the same data keeps the file as given.
    Returns what was dropped, as a Counter of (what, why) pairs, e.g. ("polygons", "with fewer than 3 points"): 2
    (`describe_dropped` puts it in words)."""
    dropped = collections.Counter()
    images = {img["id"]: img for img in data["images"]}
    keypoints_of = keypoint_slots(data)
    kept = []
    for ann in data["annotations"]:
        img = images[ann["image_id"]]
        h, w = img["height"], img["width"]
        if not all(math.isfinite(v) for v in ann["bbox"]):
            dropped["annotations", "with a NaN or infinite bbox"] += 1
            continue
        if isinstance(ann["segmentation"], list):
            polygons = []
            for poly in ann["segmentation"]:
                problem = polygon_problem(poly, h, w)
                if problem:
                    dropped["polygons", problem] += 1
                else:
                    polygons.append(poly)
            if not polygons:
                dropped["annotations", "with no valid polygon left"] += 1
                continue
            if len(polygons) != len(ann["segmentation"]):
                ann = dict(ann, segmentation=polygons)
        kept.append(_filled_in(ann, h, w, keypoints_of.get(ann["category_id"], 0)))
    data["annotations"] = kept
    return dropped


def keypoint_slots(data: dict) -> dict[int, int]:
    """{category id: K} for the categories that name keypoints (all name the same K: `keypoint_count`)."""
    K = keypoint_count(data, "")
    return {c["id"]: K for c in data["categories"] if c.get("keypoints") is not None}


def _filled_in(ann: dict, h: int, w: int, num_keypoints: int = 0) -> dict:
    """The annotation with `iscrowd` (0) and `area` (its mask's pixel count, as in the official files) where an
    export left them out, and for a category with `num_keypoints` keypoint names `keypoints` (all unlabelled) and
    `num_keypoints` (the labelled ones: pycocotools ignores people with none); a copy then, else the dict itself."""
    filled = {}
    if "iscrowd" not in ann:
        filled["iscrowd"] = 0
    if "area" not in ann:
        filled["area"] = float(mask_utils.area(to_rle(ann["segmentation"], h, w)))
    keypoints = ann.get("keypoints")
    if num_keypoints and keypoints is None:  # none labelled
        keypoints = filled["keypoints"] = [0] * (3 * num_keypoints)
    if keypoints is not None and "num_keypoints" not in ann:
        filled["num_keypoints"] = sum(v > 0 for v in keypoints[2::3])
    return {**filled, **ann} if filled else ann


def ground_truth_dict(data: dict) -> tuple[dict, collections.Counter]:
    """The evaluation ground truth of a checked COCO dict: the file as given, every annotation, crowd regions and
    zero-area polygons included. Returns (the new dict, what was changed as a Counter like clean_coco_dict's).

    Only what pycocotools cannot read is changed (it raises, crashes or hangs on these, or scores them at random):
    - polygons of fewer than 3 points (no pixel inside, as pycocotools rasterizes any degenerate polygon) or with
      NaN or infinite coordinates are left out of their annotation; an annotation left with no polygon (CVAT's
      rectangles, `"segmentation": []`) gets an empty mask: an object for box AP, a miss for mask AP;
    - annotations whose bbox holds NaN or infinity are left out (pycocotools gives them IoU 1 with any box).
    `iscrowd` and `area` are filled in where missing. `data` is not changed."""
    changed = collections.Counter()
    images = {img["id"]: img for img in data["images"]}
    keypoints_of = keypoint_slots(data)
    kept = []
    for ann in data["annotations"]:
        h, w = images[ann["image_id"]]["height"], images[ann["image_id"]]["width"]
        if not all(math.isfinite(v) for v in ann["bbox"]):
            changed["annotations", "with a NaN or infinite bbox, left out"] += 1
            continue
        segm = ann["segmentation"]
        if isinstance(segm, list):
            readable = [p for p in segm if len(p) >= 6 and all(math.isfinite(v) for v in p)]
            changed["polygons", "with fewer than 3 points or NaN or infinite coordinates"] += len(segm) - len(readable)
            if not readable:
                changed["annotations", "with no polygon left, kept with an empty mask"] += 1
            if len(readable) != len(segm) or not readable:
                ann = dict(ann, segmentation=readable or {"size": [h, w], "counts": [h * w]})  # RLE: all zeros
        kept.append(_filled_in(ann, h, w, keypoints_of.get(ann["category_id"], 0)))
    return {**data, "annotations": kept}, +changed


def describe_dropped(counts: collections.Counter) -> str:
    """{("polygons", "of zero area"): 2, ...} -> "2 polygons (2 of zero area)", one part per kind."""
    parts = []
    for kind in dict.fromkeys(k for k, _ in counts):
        reasons = [(why, n) for (k, why), n in counts.items() if k == kind]
        total = sum(n for _, n in reasons)
        parts.append(f"{total} {kind} (" + ", ".join(f"{n} {why}" for why, n in reasons) + ")")
    return ", ".join(parts)


def to_rle(segm, h: int, w: int) -> dict:
    """Polygons, uncompressed RLE or compressed RLE -> one compressed RLE (as pycocotools' annToRLE)."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, h, w)
    return segm
