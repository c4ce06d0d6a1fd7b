"""Where and how a run computes: processes (DistributedDataParallel under torchrun) and what they agree on at
each step (the losses, whether to stop), seeds and the random generators' state, the fp16 loss scaler. (Devices
and AMP dtypes, which inference shares, are in devices.py.)

All of it lives here, in the training side, never in the model: the model only maps (images, targets) to
losses, or images to detections.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist


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


def average_losses_and_stop(losses: dict, stop: bool, world: int) -> tuple[dict[str, float], bool]:
    """(the loss components as floats, averaged over the processes; whether any process was asked to stop).

    One all-reduce per step carries both, so that every process logs the same values, sees a NaN at the same
    step, and all stop after the same step when one of them got a signal."""
    flag = next(iter(losses.values())).new_tensor(float(stop), dtype=torch.float32)
    vec = torch.stack([v.detach().float() for v in losses.values()] + [flag])  # (components + 1,)
    if world > 1:
        dist.all_reduce(vec)
        vec /= world
    *components, stopping = vec.tolist()
    return dict(zip(losses, components)), stopping > 0


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def process_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process `rank` (of a distributed run) from step `step` on: replicas draw different anchors
    and RoIs, and a run resumed without a process's saved generators still gets a stream of its own."""
    return seed + 1000 * rank + step


def grad_scaler(enabled: bool):
    """fp16's loss scaler (a pass-through when not enabled)."""
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def rng_state() -> dict:
    """Every random generator a training step draws from (torch CPU and CUDA, numpy, Python), as
    tensors and plain values so the checkpoint loads with weights_only=True."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured (CUDA states only when there are as many devices)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
