"""Which data a run trained on: a record that goes into every checkpoint, and the dataset rebuilt from it.

`evaluate` (`evaluation_set`) and `train --resume` read a checkpoint's record, so that a model trained on your own export is
evaluated on your own held-out images, not silently on the synthetic shapes, and a resumed run continues on
the data it started with. A record is a plain dict (checkpoints load with weights_only=True):

    {"kind": "coco", "annotations": "/abs/path/labels.json", "images": "/abs/path/images"}
    {"kind": "shapes", "num_images": 2000, "image_size": 128, "seed": 0}   (and "keypoints": True with keypoints)
    {"kind": "custom", "name": "MyDataset(...)"}      any other dataset: it cannot be rebuilt from a record
"""
from __future__ import annotations

from pathlib import Path

from .. import paths
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
        record = {"kind": "shapes", "num_images": dataset.num_images, "image_size": dataset.image_size,
                  "seed": dataset.seed}
        return {**record, "keypoints": True} if dataset.keypoints else record
    return {"kind": "custom", "name": repr(dataset)[:200]}


def rebuild(record: dict, transforms=None, skip_empty: bool = False):
    """The dataset a record describes (ValueError for a "custom" one, which only its own code can build)."""
    kind = record.get("kind")
    if kind == "coco":
        return CocoDataset(ann_file=record["annotations"], image_dir=record["images"], skip_empty=skip_empty,
                           transforms=transforms)
    if kind == "shapes":
        return ShapesDataset(record["num_images"], record["image_size"], seed=record["seed"], transforms=transforms,
                             keypoints=record.get("keypoints", False))
    raise ValueError(f"the data was a dataset object given to train() ({record.get('name', '?')}), which cannot "
                     f"be rebuilt from a checkpoint: pass it again (train(..., train_set=...)), or name COCO-format "
                     f"data with --annotations and --images")


def evaluation_set(state: dict, checkpoint, annotations=None, images=None, data=None, split: str = "val2017",
                   num_images: int = 200):
    """The dataset `evaluate` scores a checkpoint (its dict `state`) on: `annotations` with `images` (a COCO-format
    JSON and its folder), else `data` ("shapes", or a COCO root and its `split`), else the held-out set recorded
    in the checkpoint, else a one-line error saying how to name one."""
    if (annotations is None) != (images is None):
        raise ValueError("--annotations and --images go together: a COCO-format JSON and its image folder")
    if annotations is not None:
        return CocoDataset(ann_file=annotations, image_dir=images)
    trained = state.get("train_config") or {}
    if data == "shapes":  # with keypoints when the checkpoint's model predicts them
        keypoints = bool(((state.get("model_config") or {}).get("roi_heads") or {}).get("num_keypoints"))
        return ShapesDataset(num_images, trained.get("image_size", 128), seed=trained.get("data_seed", 0) + 1,
                             keypoints=keypoints)
    if data is not None:
        return CocoDataset(paths.coco_root(data), split)
    record = (state.get("data") or {}).get("val")
    if record is not None:
        return rebuild(record)
    raise ValueError(f"checkpoint {checkpoint} records no held-out set: name the data to evaluate on with "
                     f"--annotations and --images, or --data (and --split)")
