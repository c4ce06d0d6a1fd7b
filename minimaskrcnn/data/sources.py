"""Which data a run trained on: a record that goes into every checkpoint, and the dataset rebuilt from it.

`evaluate` and `train --resume` read a checkpoint's record, so that a model trained on your own export is
evaluated on your own held-out images, not silently on the synthetic shapes, and a resumed run continues on
the data it started with. A record is a plain dict (checkpoints load with weights_only=True):

    {"kind": "coco", "annotations": "/abs/path/labels.json", "images": "/abs/path/images"}
    {"kind": "shapes", "num_images": 2000, "image_size": 128, "seed": 0}
    {"kind": "custom", "name": "MyDataset(...)"}      any other dataset: it cannot be rebuilt from a record
"""
from __future__ import annotations

from pathlib import Path

from .coco import CocoDataset
from .shapes import ShapesDataset


def describe(dataset) -> dict | None:
    """The record of a dataset (None for None). Paths are made absolute: a record outlives the folder it was
    written from."""
    if dataset is None:
        return None
    if isinstance(dataset, CocoDataset):
        return {"kind": "coco", "annotations": str(Path(dataset.ann_file).resolve()),
                "images": str(Path(dataset.image_dir).resolve())}
    if isinstance(dataset, ShapesDataset):
        return {"kind": "shapes", "num_images": dataset.num_images, "image_size": dataset.image_size,
                "seed": dataset.seed}
    return {"kind": "custom", "name": repr(dataset)[:200]}


def rebuild(record: dict, transforms=None, skip_empty: bool = False):
    """The dataset a record describes (ValueError for a "custom" one, which only its own code can build)."""
    kind = record.get("kind")
    if kind == "coco":
        return CocoDataset(ann_file=record["annotations"], image_dir=record["images"], skip_empty=skip_empty,
                           transforms=transforms)
    if kind == "shapes":
        return ShapesDataset(record["num_images"], record["image_size"], seed=record["seed"], transforms=transforms)
    raise ValueError(f"the data was a dataset object given to train() ({record.get('name', '?')}), which cannot "
                     f"be rebuilt from a checkpoint: pass it again (train(..., train_set=...)), or name COCO-format "
                     f"data with --annotations and --images")
