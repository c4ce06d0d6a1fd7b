"""What can go wrong inside a training step, caught where it happens and said in one line: a NaN or infinite
loss (stopped before it reaches the weights), and an error while loading a batch (a corrupt image), also in a
DataLoader worker process."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist


def loss_values(losses: dict, step: int, world: int, last_ckpt: Path) -> dict:
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


def headline_ap(metrics: dict) -> float:
    """The headline number: mask AP when there is one, else box AP."""
    return metrics["segm"]["AP"] if "segm" in metrics else metrics["bbox"]["AP"]


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
