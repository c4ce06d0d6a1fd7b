"""The data of a training run: built from its TrainConfig, and recorded back into it.

`build_datasets` makes the training and held-out sets that a TrainConfig names: your own COCO-format files, a
COCO root and its splits, or the synthetic shapes. `recorded_data` goes the other way: it makes the TrainConfig
say what the datasets really are, so that the train_config stored in a checkpoint rebuilds the same data on
`--resume`, also when the datasets were given to `train()` directly (see `data/sources.py`).
"""
from __future__ import annotations

import dataclasses

from .. import paths
from ..data import CocoDataset, RandomHorizontalFlip, ShapesDataset
from ..data.sources import describe
from .config import TrainConfig


def build_datasets(cfg: TrainConfig):
    """(train set, held-out set or None) for cfg: your own COCO-format files, a COCO root, or the shapes."""
    flip = RandomHorizontalFlip(0.5) if cfg.flip else None
    if cfg.data == "annotations" and cfg.annotations is None:
        raise ValueError('TrainConfig.data="annotations" needs TrainConfig.annotations and images')
    if cfg.data == "custom" and cfg.annotations is None:
        raise ValueError("this run trained on a dataset object given to train(), which cannot be rebuilt: pass it "
                         "again (train(cfg, train_set=...)), or name COCO-format files with annotations / images")
    if cfg.annotations is not None:  # detectron2 also drops training images without objects
        train = CocoDataset(ann_file=cfg.annotations, image_dir=cfg.images, skip_empty=True, transforms=flip)
        val = (CocoDataset(ann_file=cfg.val_annotations, image_dir=cfg.val_images)
               if cfg.val_annotations is not None else None)
        return train, val
    if cfg.data == "shapes":
        train = ShapesDataset(cfg.num_images, cfg.image_size, seed=cfg.data_seed, transforms=flip)
        val = ShapesDataset(cfg.num_val_images, cfg.image_size, seed=cfg.data_seed + 1) if cfg.num_val_images else None
        return train, val
    root = paths.coco_root(cfg.data)
    train = CocoDataset(root, cfg.split, skip_empty=True, transforms=flip)
    val = CocoDataset(root, cfg.val_split) if cfg.val_split else None
    return train, val


def recorded_data(cfg: TrainConfig, train_set, val_set) -> TrainConfig:
    """cfg with its data fields saying what the datasets really are (`data.sources.describe`): COCO-format data
    becomes annotations / images, shapes their sizes and seed, and any other dataset data="custom"."""
    train, val = describe(train_set), describe(val_set)
    fields = {"data": "custom", "annotations": None, "images": None}
    if train["kind"] == "coco":
        fields.update(data="annotations", annotations=train["annotations"], images=train["images"])
    elif train["kind"] == "shapes":
        fields.update(data="shapes", num_images=train["num_images"], image_size=train["image_size"],
                      data_seed=train["seed"])
    val_fields = {"val_annotations": None, "val_images": None}
    if val is not None and val["kind"] == "coco":
        val_fields.update(val_annotations=val["annotations"], val_images=val["images"])
    elif val is not None and val["kind"] == "shapes":
        val_fields.update(num_val_images=val["num_images"])
    elif val is None:
        val_fields.update(val_split=None, num_val_images=0)
    return dataclasses.replace(cfg, **fields, **val_fields)
