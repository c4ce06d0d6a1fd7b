"""The settings of a training run (Sec. 3.1, "Training"), and what follows from them.

The paper: SGD with momentum 0.9 and weight decay 1e-4, lr 0.02 for a minibatch of 16 images (2 per GPU on 8
GPUs), lowered 10x at 120k of 160k iterations. With another batch size the lr follows the linear scaling rule
lr = 0.02 * batch / 16, with a linear warmup over the first iterations (Goyal et al., 2017). `resolve` fills in
the lr and the step count that depend on the data and the number of processes.

Glossary: B images per step per process, W processes (world size), global batch B * W.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as config_lib
from ..checkpoint import read_checkpoint
from ..config import check_choice, check_fraction, check_number
from ..data.sources import Custom, RunData
from ..devices import AMP_DTYPES, check_device_name

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine")


@dataclass
class TrainConfig:
    # model and data
    config: str = "cpu_small"  # model preset (config.PRESETS): "cpu_small", "r50_fpn", "r50_c4", and with keypoints
    # (Sec. 5, on keypoint data) "cpu_small_keypoints", "keypoint_r50_fpn"
    # what the run trains on and is evaluated on (data/sources.py): RunData.shapes(num_images=2000,
    # num_val_images=200, image_size=128), RunData.coco(root, split, val_split) or RunData.files(annotations,
    # images, val_annotations, val_images); a run given dataset objects records them here
    data: RunData = field(default_factory=RunData.shapes)
    min_size: int | None = None  # override of the model's transform.min_size (shorter side, pixels)
    max_size: int | None = None  # override of transform.max_size (longer side cap, pixels)
    flip: bool = True  # random horizontal flips (Detectron's and torchvision's default; Sec. 3.1 names none)
    # optimization
    batch_size: int = 2  # images per step per process (paper: 2 per GPU, 16 in all)
    iters: int = 1000  # optimizer steps in all (paper: 160k at batch 16)
    epochs: float | None = None  # when set, iters = ceil(epochs * images / global batch)
    optimizer: str = "sgd"  # "sgd" (paper) or "adamw" (for the small from-scratch preset)
    lr: float | None = None  # base lr; None: SGD 0.02 * global batch / 16 (paper), AdamW 1e-3
    momentum: float = 0.9  # SGD momentum; paper: 0.9
    weight_decay: float = 1e-4  # paper: 1e-4 (AdamW: decoupled decay with this factor)
    warmup_iters: int = 1000  # linear warmup steps (Goyal et al.: 1000 at batch 16)
    warmup_factor: float = 0.001  # lr at step 0, as a fraction of the base lr
    schedule: str = "step"  # "step" (x gamma at each milestone) or "cosine" (to 0 at iters)
    milestones: tuple = (0.75,)  # fractions of iters where the lr drops; paper: 120k / 160k
    gamma: float = 0.1  # lr factor at each milestone; paper: 0.1
    grad_clip: float | None = None  # max L2 norm of all gradients together (None: no clipping)
    amp: str = "off"  # "off", "fp16" (autocast + GradScaler, CUDA) or "bf16" (autocast, no scaler)
    # plumbing
    device: str = "auto"  # "auto" (cuda:<local rank> when available, else cpu), "cpu", "cuda", ...
    seed: int = 0  # seeds model init, data order, augmentation and sampling
    out: str = "runs/train"  # folder for metrics.jsonl, last.pt, best.pt, loss_curve.png
    num_workers: int = 0  # DataLoader worker processes
    log_every: int = 20  # steps per JSON-lines record (losses averaged over them)
    ckpt_every: int = 500  # steps between checkpoints (and at the end)
    eval_every: int = 0  # steps between evaluations on the held-out set (0: only at the end)
    resume: str | None = None  # checkpoint to continue from
    stop_at: int | None = None  # end this run after this step (the schedule still spans iters)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self):
        """Every field checked once, here (dataclasses.replace and resume_config come through here too)."""
        own = "TrainConfig"
        check_choice(own, "config", self.config, tuple(config_lib.PRESETS))
        check_choice(own, "optimizer", self.optimizer, OPTIMIZERS)
        check_choice(own, "schedule", self.schedule, SCHEDULES)
        check_choice(own, "amp", self.amp, tuple(AMP_DTYPES))
        for name in ("flip", "progress"):
            check_choice(own, name, getattr(self, name), (False, True))
        if not isinstance(self.data, RunData):
            raise ValueError(f"{own}.data must be a RunData (data.sources: RunData.shapes(), RunData.coco(root) or "
                             f"RunData.files(annotations, images)); got {self.data!r}")
        for name in ("batch_size", "iters", "log_every", "ckpt_every"):
            check_number(own, name, getattr(self, name), 1, integer=True)
        for name in ("warmup_iters", "eval_every", "num_workers", "seed"):
            check_number(own, name, getattr(self, name), 0, integer=True)
        for name in ("min_size", "max_size"):  # at least one cell of the coarsest map, as TransformConfig
            if getattr(self, name) is not None:
                check_number(own, name, getattr(self, name), 32, integer=True)
        if self.min_size is not None and self.max_size is not None:
            check_number(own, "max_size", self.max_size, self.min_size, integer=True)
        for name in ("epochs", "lr", "grad_clip"):  # None: not set (no epochs, the paper's lr, no clipping)
            if getattr(self, name) is not None:
                check_number(own, name, getattr(self, name), 0, low_open=True)
        if self.stop_at is not None:
            check_number(own, "stop_at", self.stop_at, 1, integer=True)
        check_number(own, "momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_number(own, "weight_decay", self.weight_decay, 0.0)
        check_number(own, "warmup_factor", self.warmup_factor, 0.0, 1.0, low_open=True)
        check_number(own, "gamma", self.gamma, 0.0, low_open=True)
        self.milestones = tuple(self.milestones)
        for m in self.milestones:
            check_fraction(own, "milestones", m)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"{own}.milestones must be increasing fractions of iters; got {self.milestones}")
        check_device_name("TrainConfig.device", self.device)
        if self.resume is not None:
            check_beside(self.out, self.resume)


def check_beside(out, resume) -> None:
    """A resumed run writes beside the checkpoint it resumes from (`resume_config` sets out to its folder), not
    into the folder stored in it: a checkpoint copied elsewhere must not write into the run it came from."""
    if Path(out).resolve() != Path(resume).resolve().parent:
        raise ValueError(f"TrainConfig.out {out} is not the folder of {resume}: a resumed run writes beside the "
                         f"checkpoint it resumes from (copy the checkpoint into {out} to go on there)")


def resolve(cfg: TrainConfig, num_images: int, world_size: int = 1) -> TrainConfig:
    """cfg with lr and iters filled in for `num_images` training images and `world_size` processes."""
    global_batch = cfg.batch_size * world_size
    if num_images < global_batch:
        raise ValueError(f"the training set has {num_images} images, fewer than one global batch "
                         f"({cfg.batch_size} per process x {world_size}); lower batch_size")
    iters = math.ceil(cfg.epochs * num_images / global_batch) if cfg.epochs is not None else cfg.iters
    lr = cfg.lr
    if lr is None:  # Sec. 3.1: 0.02 for 16 images, scaled linearly (Goyal et al.)
        lr = 0.02 * global_batch / 16 if cfg.optimizer == "sgd" else 1e-3
    return dataclasses.replace(cfg, iters=iters, lr=lr)


def resume_config(path, **overrides) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with, with `overrides` applied and resume=path: continue
    a run without repeating its settings (as `train --resume` does).

    The run continues beside the checkpoint it resumes from (out = its folder, `check_beside`); another `out` is
    refused. Its data is the checkpoint's data record (a checkpoint from before there was one names none: its
    data must be given again)."""
    state = read_checkpoint(path)
    stored = state.get("train_config") or {}
    # stop_at: where the last call stopped, not this one; out and resume: where that call ran; data: the record
    # (the previous version also wrote its data fields here, which are not TrainConfig's anymore)
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"stop_at", "out", "resume", "data"}
    data = RunData.from_dict(state["data"]) if state.get("data") else RunData(Custom(f"(not recorded in {path})"))
    cfg = TrainConfig(**{k: v for k, v in stored.items() if k in known}, data=data)
    return dataclasses.replace(cfg, **{"out": str(Path(path).parent), **overrides}, resume=str(path))


def settings(cfg: TrainConfig) -> dict:
    """cfg's fields as plain values, for a checkpoint's "train_config": all but its data (a checkpoint holds the
    data record once, under "data")."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "data"}


def build_model_config(cfg: TrainConfig, num_classes: int, num_keypoints: int = 0) -> config_lib.ModelConfig:
    """The preset cfg.config for num_classes, with the image size overrides applied; a keypoint preset gets the
    data's `num_keypoints` types (ValueError naming the data when it has none: nothing to learn them from)."""
    model_cfg = config_lib.get_config(cfg.config, num_classes)
    if model_cfg.roi_heads.num_keypoints:
        if not num_keypoints:
            data = getattr(cfg.data.train, "annotations", None) or getattr(cfg.data.train, "name", cfg.data.train)
            raise ValueError(f"TrainConfig.config {cfg.config} learns keypoints but the data {data} has none: "
                             f"train it on keypoint data (--data shapes --keypoints, or COCO's "
                             f"person_keypoints_*.json with --annotations)")
        heads = dataclasses.replace(model_cfg.roi_heads, num_keypoints=num_keypoints)
        model_cfg = dataclasses.replace(model_cfg, roi_heads=heads)
    sizes = {k: v for k, v in (("min_size", cfg.min_size), ("max_size", cfg.max_size)) if v is not None}
    return dataclasses.replace(model_cfg, transform=dataclasses.replace(model_cfg.transform, **sizes))
