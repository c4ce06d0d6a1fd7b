"""The training engine: the paper's schedule, checkpoints, AMP, DistributedDataParallel and COCO evaluation.

Sec. 3.1, "Training": SGD with momentum 0.9 and weight decay 1e-4, lr 0.02 for a minibatch of 16
images (2 per GPU on 8 GPUs), lowered 10x at 120k of 160k iterations. With another batch size the lr
follows the linear scaling rule lr = 0.02 * batch / 16, with a linear warmup over the first iterations
(Goyal et al., 2017). All plumbing lives here, never in the model: the model only maps
(images, targets) to a dict of losses (train) or to detections (eval).

Reproducibility, and why `--resume` continues exactly:
- The data order is a DistributedSampler shuffle seeded with (seed, epoch); the sampler yields
  (epoch, index) pairs and can start mid-epoch, so a resumed run sees the same remaining images.
- Each sample's augmentation draws from a generator seeded with (seed, epoch, index), not from the
  global one, so it does not depend on workers or on where a run was resumed.
- The model's own random draws (anchor and RoI sampling) use the global generators, whose states
  are saved in every checkpoint with the model, optimizer, GradScaler, step and sampler position.
- The lr is a pure function of the step (`lr_at`), so the "scheduler state" is the step itself.

Glossary: B images per step per process, W processes (world size), global batch B * W.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm.auto import tqdm

from . import config as config_lib
from . import paths
from .checkpoint import copy_checkpoint, load_checkpoint, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import CocoDataset, RandomHorizontalFlip, ShapesDataset, collate
from .data.sources import describe
from .evaluation import detections_to_coco, evaluate_coco, format_table


@dataclass
class TrainConfig:
    # data
    config: str = "cpu_small"  # model preset (config.PRESETS): "cpu_small", "r50_fpn", "r50_c4"
    # "shapes" (synthetic), a COCO root folder, "annotations" (the files named below) or "custom" (a dataset
    # object given to train(), which a resumed run must be given again)
    data: str = "shapes"
    split: str = "train2017"  # COCO split to train on
    val_split: str | None = "val2017"  # COCO split evaluated at the end (None: no evaluation)
    annotations: str | None = None  # your own data: a COCO-format JSON (a CVAT, Labelme, Roboflow export) ...
    images: str | None = None  # ... and the folder of its images; together they replace data and split
    val_annotations: str | None = None  # a held-out set in the same form (with annotations: else no evaluation)
    val_images: str | None = None
    num_images: int = 2000  # synthetic training images (data="shapes")
    num_val_images: int = 200  # held-out synthetic images, drawn with another seed
    image_size: int = 128  # synthetic image side, pixels
    data_seed: int = 0  # seed of the synthetic training images (held-out ones: data_seed + 1)
    min_size: int | None = None  # override of the model's transform.min_size (shorter side, pixels)
    max_size: int | None = None  # override of transform.max_size (longer side cap, pixels)
    flip: bool = True  # random horizontal flips, the paper's only augmentation
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


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained model (unwrapped from DistributedDataParallel)
    step: int  # steps done
    out: Path  # the run folder
    metrics: dict | None  # COCO metrics of the last evaluation (None without a held-out set)
    seconds: float  # wall time of this call


def resolve(cfg: TrainConfig, num_images: int, world_size: int = 1) -> TrainConfig:
    """cfg with lr and iters filled in; validates the choices (ValueError naming the field)."""
    checks = {"optimizer": ("sgd", "adamw"), "schedule": ("step", "cosine"), "amp": ("off", "fp16", "bf16")}
    for name, allowed in checks.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(cfg, name)!r}")
    for name in ("batch_size", "iters", "log_every", "ckpt_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(cfg, name)}")
    pairs = (("annotations", "images"), ("val_annotations", "val_images"))
    for a, b in pairs:
        if (getattr(cfg, a) is None) != (getattr(cfg, b) is None):
            raise ValueError(f"TrainConfig.{a} and TrainConfig.{b} go together (a COCO JSON and its image folder)")
    global_batch = cfg.batch_size * world_size
    if num_images < global_batch:
        raise ValueError(f"the training set has {num_images} images, fewer than one global batch "
                         f"({cfg.batch_size} per process x {world_size}); lower batch_size")
    iters = math.ceil(cfg.epochs * num_images / global_batch) if cfg.epochs else cfg.iters
    lr = cfg.lr
    if lr is None:  # Sec. 3.1: 0.02 for 16 images, scaled linearly (Goyal et al.)
        lr = 0.02 * global_batch / 16 if cfg.optimizer == "sgd" else 1e-3
    return dataclasses.replace(cfg, iters=iters, lr=lr, milestones=tuple(cfg.milestones))


def resume_config(path, **overrides) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with, with `overrides` applied and resume=path: continue
    a run without repeating its settings (as `train --resume` does)."""
    stored = read_checkpoint(path).get("train_config") or {}
    stored = {k: v for k, v in stored.items() if k != "stop_at"}  # where the last call stopped, not this one
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known})
    return dataclasses.replace(cfg, **overrides, resume=str(path))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based) for a resolved cfg: linear warmup from
    warmup_factor * lr to lr over warmup_iters, times the step decay (gamma per milestone passed) or a
    cosine from lr to 0 over iters."""
    if cfg.schedule == "step":
        lr = cfg.lr * cfg.gamma ** sum(step >= round(m * cfg.iters) for m in cfg.milestones)
    else:
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, cfg.iters) / cfg.iters))
    if step < cfg.warmup_iters:
        alpha = step / cfg.warmup_iters
        lr *= cfg.warmup_factor * (1 - alpha) + alpha
    return lr


class ResumableSampler(Sampler):
    """This process's share of DistributedSampler's (seed, epoch) shuffle, as (epoch, index) pairs,
    starting `skip` indices into the epoch (set_position), so a resumed run continues the order."""

    def __init__(self, dataset, seed: int, rank: int = 0, world_size: int = 1):
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.epoch, self.skip = 0, 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        self.inner.set_epoch(self.epoch)
        return ((self.epoch, i) for i in itertools.islice(iter(self.inner), self.skip, None))

    def __len__(self) -> int:
        return len(self.inner) - self.skip


class SeededSamples(torch.utils.data.Dataset):
    """dataset[index] with its random augmentation drawn from a generator seeded by (seed, epoch, index)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):  # leaves the global CPU generator as it was
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
            return self.dataset[index]


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
    """cfg with its data fields saying what the datasets really are (`data.sources.describe`), so that the
    train_config stored in a checkpoint rebuilds the same data on resume, also when the datasets were given to
    train() directly: COCO-format data becomes annotations / images, shapes their sizes and seed, and any other
    dataset data="custom"."""
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


def build_model_config(cfg: TrainConfig, num_classes: int) -> config_lib.ModelConfig:
    """The preset cfg.config for num_classes, with the image size overrides applied."""
    model_cfg = config_lib.get_config(cfg.config, num_classes)
    sizes = {k: v for k, v in (("min_size", cfg.min_size), ("max_size", cfg.max_size)) if v is not None}
    return dataclasses.replace(model_cfg, transform=dataclasses.replace(model_cfg.transform, **sizes))


def init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank). Under torchrun (WORLD_SIZE > 1) joins the process group through
    env:// (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE): NCCL on GPUs, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", init_method="env://")
    return (dist.get_rank(), dist.get_world_size(), local_rank) if dist.is_initialized() else (0, 1, 0)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def oom_hint(cfg: TrainConfig, where: str) -> str:
    return (f"CUDA out of memory {where} (batch_size={cfg.batch_size}, min_size={cfg.min_size}, "
            f"max_size={cfg.max_size}): lower --batch-size, or the image size with --min-size / --max-size, "
            f"or turn on --amp")


def _amp_dtype(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("TrainConfig.amp='fp16' needs a CUDA device (use 'bf16' or 'off' on the CPU)")
    return {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.amp]


def _log_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _drop_log_after(path: Path, step: int) -> None:
    """On resume, forget records a crashed run wrote after the checkpoint it resumes from."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in lines))


@dataclass
class Progress:
    """Where a run is; saved in every checkpoint."""
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current pass over the training set
    batch: int = 0  # batches of this epoch done (the sampler's resume position)
    sums: dict = dataclasses.field(default_factory=dict)  # loss sums since the last log record
    count: int = 0  # steps in those sums
    last_loss: float = math.inf  # mean total loss of the last log record
    best: float = -math.inf  # best score so far: held-out AP, or minus the training loss


def _loss_values(losses: dict, step: int, world: int, last_ckpt: Path) -> dict:
    """Loss components as floats, averaged over processes; FloatingPointError when one is NaN or Inf.

    Checked before backward, so the poisoned step never reaches the weights or a checkpoint. The
    average is taken on every step so that every process sees the same values and stops together."""
    vec = torch.stack([v.detach().float() for v in losses.values()])  # (number of components,)
    if world > 1:
        dist.all_reduce(vec)
        vec /= world
    values = dict(zip(losses, vec.tolist()))
    for name, v in values.items():
        if not math.isfinite(v):
            kept = f"the last good checkpoint {last_ckpt} is left as it was" if last_ckpt.exists() \
                else "no checkpoint had been written yet"
            raise FloatingPointError(f"loss component {name!r} is {v} at step {step}; training stopped "
                                     f"before this step's update, {kept}. Try a lower lr or gradient clipping.")
    return values


def _grad_scaler(enabled: bool):
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def train(cfg: TrainConfig, model_config=None, model=None, train_set=None, val_set=None) -> TrainResult:
    """Train as `cfg` says, writing cfg.out/{metrics.jsonl, last.pt, best.pt, loss_curve.png}.

    model_config, model, train_set, val_set replace what cfg would build (a tweaked preset, a toy model
    in a test, your own dataset); the model must map (images, targets) to an object with `.losses`.
    Raises FloatingPointError when a loss is NaN or Inf (naming the step and component; the last good
    checkpoint is left intact), torch.cuda.OutOfMemoryError with a hint, and KeyboardInterrupt on Ctrl-C
    after saving last.pt.
    """
    start = time.perf_counter()
    owns_group = not dist.is_initialized()
    rank, world, local_rank = init_distributed()
    device = pick_device(cfg.device, local_rank)
    seed_everything(cfg.seed)  # the same on every process: identical initial weights
    if train_set is None:
        train_set, built_val = build_datasets(cfg)
        val_set = built_val if val_set is None else val_set
    cfg = recorded_data(resolve(cfg, len(train_set), world), train_set, val_set)
    amp_dtype = _amp_dtype(cfg, device)
    if model is None:
        from .model import MaskRCNN

        model_config = model_config or build_model_config(cfg, train_set.num_classes)
        model = MaskRCNN(model_config)
    model_config = model_config or getattr(model, "config", None)
    model.to(device).train()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg)
    scaler = _grad_scaler(cfg.amp == "fp16")
    out = Path(cfg.out)
    log_path, last_ckpt = out / "metrics.jsonl", out / "last.pt"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    p = Progress()
    if cfg.resume:
        state = load_checkpoint(cfg.resume, model, model_config, optimizer, scaler if cfg.amp == "fp16" else None)
        p = Progress(**state["progress"])
        rngs = state.get("rng") or []
        if rank < len(rngs):
            set_rng_state(rngs[rank])
        else:  # a Ctrl-C checkpoint of a distributed run holds rank 0's generators only
            seed_everything(cfg.seed + 1000 * rank + p.step)
        if rank == 0:
            _drop_log_after(log_path, p.step)
    else:
        if rank == 0 and log_path.exists():
            log_path.unlink()  # a fresh run starts a fresh log (a resumed one keeps its steps, above)
        if world > 1:
            seed_everything(cfg.seed + 1000 * rank)  # replicas sample different anchors and RoIs

    def checkpoint_state(rngs: list) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "model_config": config_lib.to_dict(model_config) if model_config is not None else None,
                "train_config": dataclasses.asdict(cfg), "progress": dataclasses.asdict(p), "rng": rngs,
                # the data it trained on, and the held-out set `evaluate` uses by default (data/sources.py)
                "data": {"train": describe(train_set), "val": describe(val_set)},
                # what predict and evaluate need to name classes and map them back to COCO ids
                "class_names": list(getattr(train_set, "class_names", [])),
                "label_to_cat_id": dict(getattr(train_set, "label_to_cat_id", {}))}

    def save(score: float | None) -> None:
        rngs = [rng_state()]
        if world > 1:  # every process's generators, so each continues its own stream
            rngs = [None] * world
            dist.all_gather_object(rngs, rng_state())
        if rank != 0:
            return
        improved = score is not None and score > p.best
        p.best = score if improved else p.best
        save_checkpoint(last_ckpt, checkpoint_state(rngs))
        if improved:
            copy_checkpoint(last_ckpt, out / "best.pt")

    def held_out_eval() -> dict | None:
        metrics = None
        if rank == 0:
            metrics = evaluate(model, val_set, cfg.batch_size, device, out / "results.json", amp=cfg.amp,
                               progress=cfg.progress)
            _log_line(log_path, {"step": p.step, "eval": metrics})
        if world > 1:
            dist.barrier()
        return metrics

    stop = min(cfg.stop_at or cfg.iters, cfg.iters)
    sampler = ResumableSampler(train_set, cfg.seed, rank, world)
    samples = SeededSamples(train_set, cfg.seed)
    bar = tqdm(total=cfg.iters, initial=p.step, desc="train", dynamic_ncols=True,
               disable=not cfg.progress or rank != 0)
    rngs_now, updating, tic, metrics = rng_state(), False, time.perf_counter(), None
    try:
        while p.step < stop:
            sampler.set_position(p.epoch, p.batch * cfg.batch_size)
            loader = DataLoader(samples, cfg.batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
                                num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed))  # not the global one
            for images, targets in one_line_errors(loader, p.step + 1):
                images = [im.to(device, non_blocking=True) for im in images]
                targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
                lr = lr_at(p.step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                try:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        losses = net(images, targets).losses
                    values = _loss_values(losses, p.step + 1, world, last_ckpt)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(sum(losses.values())).backward()
                    updating = True  # from here until the update is done, the weights are in flux
                    if cfg.grad_clip:
                        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    updating = False
                except torch.cuda.OutOfMemoryError as e:
                    raise torch.cuda.OutOfMemoryError(f"{oom_hint(cfg, f'at step {p.step + 1}')}\n{e}") from e
                p.step, p.batch, p.count = p.step + 1, p.batch + 1, p.count + 1
                for k, v in values.items():
                    p.sums[k] = p.sums.get(k, 0.0) + v
                rngs_now = rng_state()
                bar.update(1)
                bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}" for k, v in values.items()}, refresh=False)

                if p.step % cfg.log_every == 0 or p.step == stop:
                    now = time.perf_counter()
                    means = {k: s / p.count for k, s in p.sums.items()}
                    p.last_loss = sum(means.values())
                    if rank == 0:
                        _log_line(log_path, {"step": p.step, "epoch": p.epoch, "lr": lr, "loss": p.last_loss,
                                             **means, "sec_per_iter": (now - tic) / p.count})
                    p.sums, p.count, tic = {}, 0, now
                evaluating = bool(val_set is not None and cfg.eval_every and p.step % cfg.eval_every == 0)
                if evaluating:
                    metrics = held_out_eval()
                if evaluating or p.step % cfg.ckpt_every == 0 or p.step == stop:
                    if cfg.eval_every and val_set is not None:  # best by held-out AP...
                        score = _ap(metrics) if evaluating and rank == 0 else None
                    else:  # ... or, without held-out evaluations, by the training loss
                        score = -p.last_loss
                    save(score)
                if p.step >= stop:
                    break
            else:  # the epoch ran out before `stop`
                p.epoch, p.batch = p.epoch + 1, 0
    except KeyboardInterrupt:
        if rank == 0 and not updating:  # the weights are those after step p.step: save them
            save_checkpoint(last_ckpt, checkpoint_state([rngs_now]))
            print(f"\ninterrupted at step {p.step}: saved {last_ckpt}; continue with --resume {last_ckpt}")
        elif rank == 0:
            print(f"\ninterrupted during an update; {last_ckpt} is left as it was")
        raise
    except FloatingPointError:  # a NaN loss: the last good checkpoint stays as it was (see _loss_values)
        raise
    except Exception as e:  # a corrupt image, a full disk...: keep the steps done so far, then stop
        if rank != 0 or updating:
            raise
        save_checkpoint(last_ckpt, checkpoint_state([rngs_now]))
        raise with_message(e, f"{e}; saved {last_ckpt} at step {p.step}: fix the problem and continue with "
                              f"--resume {last_ckpt}") from e
    finally:
        bar.close()

    if p.step >= cfg.iters and val_set is not None and not (cfg.eval_every and p.step % cfg.eval_every == 0):
        metrics = held_out_eval()
    if rank == 0 and log_path.exists():
        import matplotlib.pyplot as plt

        from .viz import plot_loss_curves

        plt.close(plot_loss_curves(log_path, out / "loss_curve.png"))
    if world > 1 and owns_group:
        dist.destroy_process_group()
    return TrainResult(model, p.step, out, metrics, time.perf_counter() - start)


def with_message(e: Exception, message: str) -> Exception:
    """An exception of e's type with another message (RuntimeError where that type cannot take one)."""
    try:
        return type(e)(message)
    except Exception:
        return RuntimeError(message)


def one_line_errors(loader, step: int):
    """The batches of `loader`. An error while loading one (a corrupt image, a bad annotation) is raised as its
    own one-line message, also from a DataLoader worker process, which would wrap it in a whole traceback
    ("Caught ValueError in DataLoader worker process 0. Original Traceback ...")."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            if "Original Traceback" in str(e):  # "ValueError: cannot decode ..." -> "cannot decode ..."
                last = last.split(": ", 1)[-1]
            raise with_message(e, f"{last} (loading the images of step {step})") from None
        yield batch
        step += 1


def _ap(metrics: dict) -> float:
    """The headline number: mask AP when there is one, else box AP."""
    return metrics["segm"]["AP"] if "segm" in metrics else metrics["bbox"]["AP"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, batch_size: int = 2, device=None, out_json=None,
             num_workers: int = 0, amp: str = "off", progress: bool = True, verbose: bool = True) -> dict:
    """COCO box and mask AP of `model` on `dataset` (which has .coco and .label_to_cat_id).

    Runs the model in eval mode, turns each batch's detections into COCO results at once (full-size
    masks are large), writes them to out_json (the evaluation server's format) when given, prints the
    COCO table when verbose, and returns {"bbox": {"AP", ...}, "segm": {...}} (see evaluation.py).
    """
    model = getattr(model, "module", model)
    device = device or next(model.parameters()).device
    device = torch.device(device)
    amp_dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    cfg = getattr(model, "config", None)
    mask_threshold = cfg.roi_heads.mask_threshold if cfg is not None else 0.5
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    results, image_ids = [], []
    try:
        for images, targets in tqdm(loader, desc="evaluate", dynamic_ncols=True, disable=not progress):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                detections = model([im.to(device) for im in images]).detections
            detections = [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in d.items()}
                          for d in detections]
            ids = [int(t["image_id"]) for t in targets]
            results += detections_to_coco(detections, ids, dataset.label_to_cat_id, mask_threshold)
            image_ids += ids
    except torch.cuda.OutOfMemoryError as e:
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory during evaluation (batch_size={batch_size}): "
                                          f"lower the batch size or the image size\n{e}") from e
    finally:
        model.train(was_training)
    metrics = evaluate_coco(dataset.coco, results, out_json, image_ids=image_ids)
    if verbose:
        print(format_table(metrics))
    return metrics
