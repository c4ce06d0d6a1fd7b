"""What every notebook shares: its setup cell's device and threads, the folder its runs go to, and the export of
its key figures for slides (`make figures`). Nothing of the model is here.

The first code cell of every notebook (the same cell in each; `notebooks/nbtools.py setup` writes it) installs the
package when it is missing, as on Colab, and then calls `setup()`:

    device = setup()   # cuda when there is a GPU; else the CPU, with one thread

The notebooks train and evaluate on `device`; the cells that take one image apart stage by stage stay on the CPU,
where every tensor they draw already is.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import paths
from .devices import pick_device

FIGURE_DPI = 200  # slides: a 5-inch-wide figure becomes 1000 pixels (the notebooks show 80 dpi inline)


def setup(verbose: bool = True) -> torch.device:
    """The device the notebook trains and runs its models on: the GPU when there is one, else the CPU.

    On the CPU, torch uses one thread: the notebooks' small convolutions gain little from a second thread, and
    threads that wait for each other make every step slower on a busy laptop. A GPU keeps torch's default."""
    device = pick_device("auto")
    if device.type == "cpu":
        torch.set_num_threads(1)
    if verbose:
        threads = f", {torch.get_num_threads()} thread" if device.type == "cpu" else ""
        print(f"minimaskrcnn on {device}{threads}; runs go to {runs_dir().name}/ "
              f"({'the clone' if in_clone() else 'the current folder'})")
    return device


def in_clone() -> bool:
    """True when the package is imported from a clone of the repository, False when it is installed
    (site-packages); paths.REPO_ROOT says which."""
    return paths.REPO_ROOT is not None


def runs_dir() -> Path:
    """Where the notebooks write their runs and look for `make demo`'s runs/demo: `paths.runs_dir()`, the clone's
    runs/ (which git ignores), or runs/ in the current folder when installed (never inside site-packages)."""
    return paths.runs_dir()


def export_figures(name: str, folder: str | os.PathLike, figures=None) -> list[Path]:
    """Save the open matplotlib figures (or `figures`) as folder/name.png at FIGURE_DPI and folder/name.svg;
    several figures get -1, -2, ... after the name. Returns the paths written. `make figures` appends a call to
    this to each notebook cell tagged "figure:<name>" (see notebooks/nbtools.py)."""
    import matplotlib.pyplot as plt

    figures = [plt.figure(n) for n in plt.get_fignums()] if figures is None else list(figures)
    if not figures:
        raise ValueError(f"the cell tagged figure:{name} drew no figure")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, fig in enumerate(figures):
        stem = name if len(figures) == 1 else f"{name}-{i + 1}"
        for ext in ("png", "svg"):
            written.append(folder / f"{stem}.{ext}")
            fig.savefig(written[-1], dpi=FIGURE_DPI, bbox_inches="tight")
    return written
