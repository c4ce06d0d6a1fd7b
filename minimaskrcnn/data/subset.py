"""Carve a smaller COCO out of full annotations: by image count, by category names, or both.

    make_subset("data/coco/annotations/instances_train2017.json",
                "data/coco_small/annotations/instances_train2017.json", num_images=500,
                categories=["person", "dog"], images_dir="data/coco/train2017",
                out_images_dir="data/coco_small/train2017", link="symlink")

The result is a consistent COCO file: only the chosen images, only their annotations (of the chosen
categories, crowd ones included, since evaluation needs them), and the categories list. A subset by count
alone keeps the full categories list, so its labels (and a model trained on it) match the full dataset's.

Nothing of the source is ever replaced or deleted: the destination image folder may not be the source's or
inside it once symlinks are followed (`out_images_dir` a symlink to `images_dir` is a common way to save disk),
and only new files are written; an image already at its destination (from an earlier subset: the same file,
a link to it, or a copy with the same bytes) is kept as it is.
"""
from __future__ import annotations

import filecmp
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


def check_outside_source(dst, source, what: str, source_name: str) -> None:
    """ValueError unless the folder `dst` lies outside the folder `source`, symlinks followed (neither needs to
    exist yet): a destination that is the source, or inside it, would write into (or delete from) the source.
    `what` starts the message, e.g. "out_images_dir "."""
    real_dst, real_source = Path(dst).resolve(), Path(source).resolve()
    if real_dst == real_source or real_dst.is_relative_to(real_source):
        followed = f" (it resolves to {real_dst})" if real_dst != Path(dst).absolute() else ""
        raise ValueError(f"{what}{dst}{followed} is {source_name} {source} or inside it: a subset never writes "
                         f"into its source; choose a folder outside it")


def _already_there(src: Path, dst: Path) -> bool:
    """True when dst is src already (the same file, or a link to it) or a copy with the same bytes; False when dst
    is free. ValueError when it is another file: a subset writes only new files."""
    if not dst.exists() and not dst.is_symlink():
        return False
    if dst.is_file() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)):
        return True
    raise ValueError(f"{dst} exists and differs from {src}: a subset writes only new files; move it away or "
                     f"choose another folder")


def make_subset(ann_file, out_file, num_images: int | None = None, categories=None, seed: int = 0,
                images_dir=None, out_images_dir=None, link: str = "copy") -> dict:
    """Write a COCO subset of ann_file to out_file; returns {"out_file", "images", "annotations", "categories"}.

    num_images: draw this many images at random (seeded) from those eligible; None keeps all eligible.
    categories: names (or ids) to keep; images then need at least one non-crowd instance of them.
        None keeps every category and every image (negatives included).
    images_dir / out_images_dir: also copy the chosen image files ("copy", "symlink" or "hardlink").
    Nothing is written unless every check passes (all source images present, out_file != ann_file, the
    destination folder outside the source's, no other file where an image goes).
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
        check_outside_source(out_images_dir, images_dir, "out_images_dir ", "the source image folder")
        copies = [(Path(images_dir) / img["file_name"], Path(out_images_dir) / img["file_name"]) for img in eligible]
        missing = [str(src) for src, _ in copies if not src.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image file(s) of the subset are missing, e.g. {missing[:3]}")
        copies = [(src, dst) for src, dst in copies if not _already_there(src, dst)]

    subset = {key: value for key, value in data.items() if key not in ("images", "annotations", "categories")}
    subset.update(images=eligible, annotations=[a for a in anns if a["image_id"] in image_ids], categories=cats)
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link == "symlink":
            dst.symlink_to(src.resolve())
        elif link == "hardlink":
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    tmp.write_text(json.dumps(subset))
    tmp.replace(out_file)  # atomic, and last: a reader never sees half a file, nor a file listing missing images
    return {"out_file": out_file, "images": len(eligible), "annotations": len(subset["annotations"]),
            "categories": len(cats)}
