"""Where the data lives, read from here and nowhere else: the shipped sample, the data folder, the COCO root.

The package works the same from a clone and from an installed wheel (`pip install`, Colab); only where it writes
differs, and it never writes into site-packages.

- The **COCO sample** (24 train2017 + 20 val2017 real COCO images, 4.3 MB, credits in its README.md) ships
  inside the package as package data: `SAMPLE_ROOT` = minimaskrcnn/data/coco_sample, read only.
- The **data folder** (`data_dir()`), where `download` puts the full COCO and where the default COCO root is
  looked for, in this order:
    1. $MINIMASKRCNN_HOME, when set (a clone too);
    2. `<clone>/data`, when running from a clone (`REPO_ROOT`: the package's parent folder holds this project's
       pyproject.toml and its .git or Makefile; an editable install, `make`'s, counts as a clone);
    3. the user's cache, as torch.hub keeps its own: $XDG_CACHE_HOME/minimaskrcnn, else ~/.cache/minimaskrcnn.
- The **COCO root** (`coco_root()`, what `train`, `evaluate` and CocoDataset read): an explicit path (the CLI's
  `--data`, relative to the current folder like any path) > $MINIMASKRCNN_COCO > `data_dir()/coco` once it holds
  annotations (a download still under way does not count) > the shipped sample. `download_root()` is the same
  without the sample: a download never goes into the package.
- **Pretrained weights** (`pretrained.cache_dir`): `--cache` > $MINIMASKRCNN_CACHE > torch.hub's folder
  ($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints), which is a user folder already and
  where torchvision keeps the same file, so weights it downloaded are reused.
- **Run outputs** (`train --out`, `predict --out`, ...) are paths like any other, relative to the current folder;
  the notebooks' own runs go to `runs_dir()`: <clone>/runs, or ./runs when installed.
- **No run replaces another's files** (`make_room`): `train`, `demo`, `evaluate --out` and `ablate --out` (and the
  Python `train()` and `run_study()`) refuse a folder that holds what an earlier run wrote (a checkpoint, a
  metrics.jsonl, results) in one line naming it; with overwrite (`--overwrite`) those files are moved aside, never
  deleted, into <folder>/replaced-<date>-<time>/. Only what a run writes is moved (RUN_FILES).

A COCO root has the official layout:

    root/annotations/instances_{split}.json     e.g. instances_val2017.json
    root/{split}/*.jpg                          e.g. val2017/000000397133.jpg
"""
from __future__ import annotations

import os
import time
from pathlib import Path

COCO_ENV = "MINIMASKRCNN_COCO"
HOME_ENV = "MINIMASKRCNN_HOME"
PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_ROOT = PACKAGE_DIR / "data" / "coco_sample"


def clone_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The clone the package runs from (its parent folder), or None for an installed package: the parent must
    hold this project's pyproject.toml and a .git (a folder, or a worktree's file) or the project's Makefile."""
    root = package_dir.parent
    try:
        ours = 'name = "minimaskrcnn"' in (root / "pyproject.toml").read_text()
    except (OSError, UnicodeDecodeError):  # no pyproject.toml: site-packages, a zip, ...
        return None
    return root if ours and ((root / ".git").exists() or (root / "Makefile").is_file()) else None


REPO_ROOT = clone_root()  # None when installed: then nothing may be written next to the package


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/minimaskrcnn, else ~/.cache/minimaskrcnn (torch.hub's rule for its own folder)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "minimaskrcnn"


def data_dir() -> Path:
    """Where the package's data goes: $MINIMASKRCNN_HOME > <clone>/data > the user's cache (module docstring)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    return REPO_ROOT / "data" if REPO_ROOT is not None else user_cache_dir()


def coco_root(override: str | os.PathLike | None = None) -> Path:
    """The COCO root folder: `override` if given, else $MINIMASKRCNN_COCO, else data_dir()/coco once it holds
    annotations, else the shipped sample SAMPLE_ROOT.

    Nothing is checked here (a download may be about to create it); see `coco_root_problems`.
    """
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(COCO_ENV, "")
    if env:
        return Path(env).expanduser()
    full = data_dir() / "coco"
    return full if (full / "annotations").is_dir() else SAMPLE_ROOT


def download_root(override: str | os.PathLike | None = None) -> Path:
    """Where `download` puts the official COCO: `override`, else $MINIMASKRCNN_COCO, else data_dir()/coco
    (never the shipped sample, which coco_root falls back to)."""
    if (override is not None and str(override) != "") or os.environ.get(COCO_ENV, ""):
        return coco_root(override)
    return data_dir() / "coco"


def runs_dir() -> Path:
    """Where the notebooks and the in-model check keep runs, and look for `make demo`'s runs/demo: the clone's runs/
    (git ignores it) from a clone, else runs/ in the current folder (never inside site-packages)."""
    return REPO_ROOT / "runs" if REPO_ROOT is not None else Path.cwd() / "runs"


def ann_file(root: str | os.PathLike, split: str) -> Path:
    """root/annotations/instances_{split}.json"""
    return Path(root) / "annotations" / f"instances_{split}.json"


def coco_root_problems(root: str | os.PathLike, splits=("train2017", "val2017")) -> list[str]:
    """What is missing for `splits` under a COCO root, as readable lines (empty list: all there)."""
    root = Path(root)
    if not root.is_dir():
        return [f"COCO root {root} does not exist"]
    problems = []
    for split in splits:
        if not ann_file(root, split).is_file():
            problems.append(f"missing annotation file {ann_file(root, split)}")
        if not (root / split).is_dir():
            problems.append(f"missing image folder {root / split}")
    return problems


def writable_folder(folder: str | os.PathLike) -> Path:
    """The folder, created if missing, after checking that a file can be written in it; ValueError naming it
    otherwise (a read-only folder, a file in the way). Called before work whose results would be lost."""
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise ValueError(f"cannot write to the folder {folder}: {e.strerror or e}") from e
    return folder


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
