"""Where and how a run computes: processes (DistributedDataParallel under torchrun), device, seeds, AMP.

All of it lives here, in the training side, never in the model: the model only maps (images, targets) to
losses, or images to detections.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist

AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}


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


DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device_name(what: str, name) -> None:
    """ValueError naming `what` (e.g. "TrainConfig.device") unless `name` is "auto" or a device torch knows, of a type we run on.
    Whether that device is present is checked when the run starts (`pick_device`)."""
    try:
        ok = name == "auto" or torch.device(name).type in DEVICE_TYPES
    except (RuntimeError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"{what} must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'; got {name!r}")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto": this process's GPU when there is one, else the CPU; otherwise the device named."""
    check_device_name("the device", name)
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def amp_dtype(amp: str, device: torch.device):
    """The autocast dtype of TrainConfig.amp (None: full precision); fp16 needs CUDA's GradScaler."""
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("TrainConfig.amp='fp16' needs a CUDA device (use 'bf16' or 'off' on the CPU)")
    return AMP_DTYPES[amp]


def grad_scaler(enabled: bool):
    """fp16's loss scaler (a pass-through when not enabled)."""
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)
