"""Carve a smaller COCO out of full annotations: by image count, by category names, or both.

    make_subset("data/coco/annotations/instances_train2017.json",
                "data/coco_small/annotations/instances_train2017.json", num_images=500,
                categories=["person", "dog"], images_dir="data/coco/train2017",
                out_images_dir="data/coco_small/train2017", link="symlink")

The result is a consistent COCO file: only the chosen images, only their annotations (of the chosen
categories, crowd ones included, since evaluation needs them), and the categories list. A subset by count
alone keeps the full categories list, so its labels (and a model trained on it) match the full dataset's.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .coco_json import load_coco_json


def _category_ids(data: dict, categories, source: str) -> set[int]:
    """Category names (or ids) -> the set of COCO category ids; unknown ones named in a ValueError."""
    by_name = {c["name"]: c["id"] for c in data["categories"]}
    ids = {c["id"] for c in data["categories"]}
    chosen, unknown = set(), []
    for c in categories:
        if c in by_name:
            chosen.add(by_name[c])
        elif isinstance(c, int) and c in ids:
            chosen.add(c)
        else:
            unknown.append(c)
    if unknown:
        raise ValueError(f"{source}: unknown categories {unknown}; available: {sorted(by_name)}")
    return chosen


def make_subset(ann_file, out_file, num_images: int | None = None, categories=None, seed: int = 0,
                images_dir=None, out_images_dir=None, link: str = "copy") -> dict:
    """Write a COCO subset of ann_file to out_file; returns {"out_file", "images", "annotations", "categories"}.

    num_images: draw this many images at random (seeded) from those eligible; None keeps all eligible.
    categories: names (or ids) to keep; images then need at least one non-crowd instance of them.
        None keeps every category and every image (negatives included).
    images_dir / out_images_dir: also copy the chosen image files ("copy", "symlink" or "hardlink").
    Nothing is written unless every check passes (all source images present, out_file != ann_file).
    """
    ann_file, out_file = Path(ann_file), Path(out_file)
    if out_file.resolve() == ann_file.resolve():
        raise ValueError(f"out_file {out_file} would overwrite the source annotations")
    if link not in ("copy", "symlink", "hardlink"):
        raise ValueError(f"link must be 'copy', 'symlink' or 'hardlink', got {link!r}")
    if (images_dir is None) != (out_images_dir is None):
        raise ValueError("give both images_dir and out_images_dir to copy images, or neither")
    data = load_coco_json(ann_file)

    if categories is not None:
        cat_ids = _category_ids(data, categories, str(ann_file))
        anns = [a for a in data["annotations"] if a["category_id"] in cat_ids]
        with_instance = {a["image_id"] for a in anns if not a["iscrowd"]}
        eligible = [img for img in data["images"] if img["id"] in with_instance]
        cats = [c for c in data["categories"] if c["id"] in cat_ids]
    else:
        anns, eligible, cats = data["annotations"], data["images"], data["categories"]

    if num_images is not None:
        if not 1 <= num_images <= len(eligible):
            raise ValueError(f"num_images={num_images}, but {ann_file} has {len(eligible)} eligible images")
        pick = np.random.default_rng(seed).choice(len(eligible), size=num_images, replace=False)
        eligible = [eligible[i] for i in sorted(pick)]  # keep the source order
    if not eligible:
        raise ValueError(f"empty subset: no image of {ann_file} has an instance of {categories}")
    image_ids = {img["id"] for img in eligible}

    copies = []
    if images_dir is not None:
        copies = [(Path(images_dir) / img["file_name"], Path(out_images_dir) / img["file_name"]) for img in eligible]
        missing = [str(src) for src, _ in copies if not src.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image file(s) of the subset are missing, e.g. {missing[:3]}")

    subset = {key: value for key, value in data.items() if key not in ("images", "annotations", "categories")}
    subset.update(images=eligible, annotations=[a for a in anns if a["image_id"] in image_ids], categories=cats)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    tmp.write_text(json.dumps(subset))
    tmp.replace(out_file)  # atomic: a reader never sees half a file
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if link == "symlink":
            dst.symlink_to(src.resolve())
        elif link == "hardlink":
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)
    return {"out_file": out_file, "images": len(eligible), "annotations": len(subset["annotations"]),
            "categories": len(cats)}
