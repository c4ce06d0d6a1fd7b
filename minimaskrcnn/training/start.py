"""The model a run starts with: built from its preset for the data (`build_model`), and the weights it starts from
(TrainConfig.init; transfer.py does the loading): checked, loaded right after the model is built, reported once.
A resumed run skips this: its weights, and the record of what they started from, are in its checkpoint, so
`--resume` never downloads again."""
from __future__ import annotations

import torch.distributed as dist

from ..transfer import load_into
from .config import TrainConfig, build_model_config, check_init, init_of


def build_model(cfg: TrainConfig, train_set, model=None, model_config=None, rank: int = 0, world: int = 1):
    """(model, its config, the init record) of a run: `model` when given, else the preset cfg.config for the data's
    classes (and keypoint types), with its init loaded unless the run resumes (its checkpoint holds the weights)."""
    given = model is not None
    if model is None:
        from ..model import MaskRCNN

        model = MaskRCNN(model_config or build_model_config(cfg, train_set.num_classes,
                                                            getattr(train_set, "num_keypoints", 0)))
    model_config = model_config or getattr(model, "config", None)
    record = None if cfg.resume else start_from_init(cfg, model, train_set, given, rank, world)
    return model, model_config, record


def start_from_init(cfg: TrainConfig, model, train_set, given: bool, rank: int = 0, world: int = 1) -> dict | None:
    """Load the run's init into `model` and print the report (process 0); the record a checkpoint keeps, None when
    nothing was asked (a model given to `train` starts from cfg.init only when that is set). With several
    processes, process 0 downloads first and the others then read its cache."""
    init = cfg.init if given else init_of(cfg)
    if init is None:
        return None
    check_init(init, model.config, model.config.backbone.trainable_layers)
    names = getattr(train_set, "class_names", None)
    downloads = world > 1 and init in ("imagenet", "coco")
    if downloads and rank != 0:
        dist.barrier()  # wait for process 0's download
    report = load_into(model, init, list(names)[1:] if names else None, progress=cfg.progress)
    if downloads and rank == 0:
        dist.barrier()
    if rank == 0:
        print(report, flush=True)
    return report.record()
