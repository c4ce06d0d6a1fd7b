"""The datasets of a training run: the ones its TrainConfig's data record names (data/sources.py), the training
set with its augmentation."""
from __future__ import annotations

from ..data import RandomHorizontalFlip
from ..data.sources import build
from .config import TrainConfig


def build_datasets(cfg: TrainConfig):
    """(train set, held-out set or None) as cfg.data describes them. The training images are flipped at random
    when cfg.flip (their keypoints swapped left for right, where they have any), and COCO-format training data leaves out images without objects, as detectron2 does."""
    train = build(cfg.data.train, skip_empty=True)
    if cfg.flip:  # a mirror image swaps left and right keypoints: the dataset's flip_pairs say which (none: no keypoints)
        train.transforms = RandomHorizontalFlip(0.5, getattr(train, "flip_pairs", None))
    return train, build(cfg.data.val) if cfg.data.val is not None else None
