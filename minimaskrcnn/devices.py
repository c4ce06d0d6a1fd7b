"""Which device a model runs on, and in which precision: shared by training, evaluation, predict and the
pretrained weights, so it lives below all of them (training/runtime.py adds processes and seeds on top).

    pick_device("auto")        -> cuda:0 when there is a GPU, else cpu
    amp_dtype("bf16", device)  -> torch.bfloat16, the autocast dtype of TrainConfig.amp / evaluate(amp=)
"""
from __future__ import annotations

import torch

AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}  # TrainConfig.amp's choices
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device_name(what: str, name) -> None:
    """ValueError naming `what` (e.g. "TrainConfig.device") unless `name` is "auto" or a device torch knows, of
    a type we run on. Whether that device is present is checked when it is picked (`pick_device`)."""
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


def amp_dtype(amp: str, device: torch.device):
    """The autocast dtype of an AMP setting ("off", "fp16", "bf16"; None: full precision). fp16 needs CUDA, where
    training pairs it with a GradScaler."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {', '.join(AMP_DTYPES)}; got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device (use 'bf16' or 'off' on the CPU)")
    return AMP_DTYPES[amp]
