"""Where the data lives: the default COCO root and how to override it.

Precedence: an explicit path (the CLI's `--data` flag, relative to the current folder like any path) > the
environment variable MINIMASKRCNN_COCO > `<repo>/data/coco` once it holds annotations (the full COCO, fetched by
`python -m minimaskrcnn download`; a download still under way does not count) > `<repo>/data/coco_sample`, the
24 + 20 real COCO images shipped with the repository (see its README.md), so that a fresh clone has real data. A COCO root has the official layout:

    root/annotations/instances_{split}.json     e.g. instances_val2017.json
    root/{split}/*.jpg                          e.g. val2017/000000397133.jpg
"""
from __future__ import annotations

import os
from pathlib import Path

COCO_ENV = "MINIMASKRCNN_COCO"
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
SAMPLE_ROOT = DATA_DIR / "coco_sample"


def coco_root(override: str | os.PathLike | None = None) -> Path:
    """The COCO root folder: `override` if given, else $MINIMASKRCNN_COCO, else <repo>/data/coco once it holds
    annotations, else the shipped sample <repo>/data/coco_sample.

    Nothing is checked here (a download may be about to create it); see `coco_root_problems`.
    """
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(COCO_ENV, "")
    if env:
        return Path(env).expanduser()
    full = DATA_DIR / "coco"
    return full if (full / "annotations").is_dir() else SAMPLE_ROOT


def download_root(override: str | os.PathLike | None = None) -> Path:
    """Where `download` puts the official COCO: `override`, else $MINIMASKRCNN_COCO, else <repo>/data/coco
    (never the shipped sample, which coco_root falls back to)."""
    if (override is not None and str(override) != "") or os.environ.get(COCO_ENV, ""):
        return coco_root(override)
    return DATA_DIR / "coco"


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
