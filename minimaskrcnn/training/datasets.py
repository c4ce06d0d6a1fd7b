"""The datasets of a training run: the ones its TrainConfig's data record names (data/sources.py), the training
set with its augmentation."""
from __future__ import annotations

from ..data import RandomHorizontalFlip
from ..data.sources import build
from .config import TrainConfig


def build_datasets(cfg: TrainConfig):
    """(train set, held-out set or None) as cfg.data describes them. The training images are flipped at random
    when cfg.flip, and COCO-format training data leaves out images without objects, as detectron2 does. A flip
    swaps left and right keypoints by the dataset's own flip_pairs (a mirrored left eye is a right eye, Sec. 5)."""
    train = build(cfg.data.train, skip_empty=True)
    if cfg.flip:
        train.transforms = RandomHorizontalFlip(0.5, train.flip_pairs if train.num_keypoints else None)
    return train, build(cfg.data.val) if cfg.data.val is not None else None
