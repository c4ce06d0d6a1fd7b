"""What can go wrong inside a training step, caught where it happens and said in one line: a NaN or infinite
loss (stopped before it reaches the weights), and an error while loading a batch (a corrupt image), also in a
DataLoader worker process. And what is refused before a run starts: an `out` holding another run, a held-out set
with other classes, data that changed under a resumed run."""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from .. import paths
from ..checkpoint import read_checkpoint
from ..data.sources import RunData, check_same_classes, check_unchanged


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


def check_fresh_run(cfg, move: bool) -> None:
    """A fresh run never replaces another's files (paths.make_room): ValueError when cfg.out holds a run (a
    checkpoint or a metrics.jsonl) and cfg.overwrite is not set; with it and `move`, that run's files go into
    cfg.out/replaced-<time>/. A resumed run continues the run in its folder."""
    if cfg.resume or not paths.holds_run(cfg.out) or (cfg.overwrite and not move):
        return
    instead = f"continue it with `train --resume {Path(cfg.out) / 'last.pt'}`, or choose another --out"
    paths.make_room(cfg.out, paths.run_files(cfg.out), cfg.overwrite, instead)


def check_run_data(cfg, train_set, val_set) -> None:
    """Before a model is built for the data (cfg.data: its records, as described now): the held-out set has the
    training set's classes, else it would be scored under another label mapping (in `evaluate`'s words); a
    resumed run's COCO-format files have not changed since its checkpoint (their fingerprints, data/sources.py)."""
    if hasattr(val_set, "class_names") and hasattr(train_set, "class_names"):
        check_same_classes(val_set, train_set.class_names, train_set.num_classes,
                           "the held-out set must have the training set's classes: the run trains on")
    recorded = read_checkpoint(cfg.resume).get("data") if cfg.resume else None
    if recorded:
        check_unchanged(RunData.from_dict(recorded), cfg.data, cfg.resume)
