"""The optimizer and the learning-rate schedule (Sec. 3.1, "Training").

The lr is a pure function of the step (`lr_at`), so a resumed run needs no scheduler state: the step is it.
"""
from __future__ import annotations

import math

import torch

from .config import TrainConfig


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


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW, over the parameters that get gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
