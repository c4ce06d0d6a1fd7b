"""What can go wrong inside a training step, caught where it happens and said in one line: a NaN or infinite
loss (stopped before it reaches the weights), and an error while loading a batch (a corrupt image), also in a
DataLoader worker process."""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch


def check_finite_losses(values: dict[str, float], step: int, last_ckpt: Path) -> None:
    """FloatingPointError naming the step and the component when a loss component is NaN or infinite.

    Checked before backward, so the poisoned step never reaches the weights or a checkpoint; `values` are
    averaged over the processes (runtime.average_losses_and_stop), so every process raises at the same step."""
    for name, v in values.items():
        if not math.isfinite(v):
            kept = f"the last good checkpoint {last_ckpt} is left as it was" if last_ckpt.exists() \
                else "no checkpoint had been written yet"
            raise FloatingPointError(f"loss component {name!r} is {v} at step {step}; training stopped "
                                     f"before this step's update, {kept}. Try a lower lr or gradient clipping.")


@contextlib.contextmanager
def out_of_memory_hint(cfg, where: str):
    """CUDA out of memory, re-raised with what to lower: the batch, the image size, or the precision."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as e:
        raise torch.cuda.OutOfMemoryError(
            f"CUDA out of memory {where} (batch_size={cfg.batch_size}, min_size={cfg.min_size}, "
            f"max_size={cfg.max_size}): lower --batch-size, or the image size with --min-size / --max-size, "
            f"or turn on --amp\n{e}") from e


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
