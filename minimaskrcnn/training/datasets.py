"""The datasets of a training run: the ones its TrainConfig's data record names (data/sources.py), the training
set with its augmentation."""
from __future__ import annotations

from ..data import RandomHorizontalFlip
from ..data.sources import build
from .config import TrainConfig


def build_datasets(cfg: TrainConfig):
    """(train set, held-out set or None) as cfg.data describes them. The training images are flipped at random
    when cfg.flip, and COCO-format training data leaves out images without objects, as detectron2 does."""
    flip = RandomHorizontalFlip(0.5) if cfg.flip else None
    train = build(cfg.data.train, transforms=flip, skip_empty=True)
    return train, build(cfg.data.val) if cfg.data.val is not None else None
