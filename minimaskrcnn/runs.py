"""No run replaces another's files: the one rule that `train`, `demo`, `evaluate --out` and `ablate --out` (and the
Python `train()` and `run_study()`) follow before they write.

A folder that holds what an earlier run wrote (a checkpoint, a metrics.jsonl, results) is refused, in one line
that names it and says what to do instead. With overwrite (`--overwrite`), those files are moved aside, never
deleted, into a new folder beside them:

    runs/F/replaced-20261206-2334/      last.pt, metrics.jsonl, loss_curve.png, ... of the run that was there

Only what a run writes is moved (RUN_FILES); anything else in the folder stays where it is.
"""
from __future__ import annotations

import time
from pathlib import Path

# what the package's commands write into a run folder; the first two mark it as holding a run
RUN_MARKS = ("metrics.jsonl", "*.pt")
RUN_FILES = RUN_MARKS + ("loss_curve.png", "results.json", "results_*.json", "predictions.png")


def run_files(folder, patterns=RUN_FILES) -> list[str]:
    """The names in `folder` that match `patterns` (sorted; [] when the folder does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted({p.name for pattern in patterns for p in folder.glob(pattern)})


def holds_run(folder) -> bool:
    """True when `folder` holds a run: a checkpoint (*.pt) or a metrics.jsonl."""
    return bool(run_files(folder, RUN_MARKS))


def make_room(folder, names, overwrite: bool, instead: str) -> Path | None:
    """Make sure nothing in `folder` named in `names` (relative paths: files or folders) is replaced.

    None of them exist: returns None. Some do: ValueError "<folder> already holds <names>: <instead>, or give
    --overwrite ..." unless `overwrite`; with it, moves them into a new <folder>/replaced-<date>-<time>/ (their
    relative paths kept), says so in one line, and returns that folder."""
    folder = Path(folder)
    there = [name for name in names if (folder / name).exists()]
    if not there:
        return None
    listed = ", ".join(there[:4]) + (f" and {len(there) - 4} more" if len(there) > 4 else "")
    if not overwrite:
        raise ValueError(f"{folder} already holds {listed}, which this would replace: {instead}, or give --overwrite "
                         f"(overwrite=True in Python) to move those files into {folder}/replaced-<time>/")
    aside = new_folder(folder, "replaced-" + time.strftime("%Y%m%d-%H%M%S"))
    for name in there:
        (aside / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).rename(aside / name)
    print(f"moved {listed} to {aside}/ (--overwrite)")
    return aside


def new_folder(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ... when it exists; created."""
    for k in range(1, 1000):
        path = parent / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"{parent} holds too many {name}* folders")
