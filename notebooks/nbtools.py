"""Tools for the notebooks as files: their shared opening, the students' copies, the figures for slides.

    python notebooks/nbtools.py setup [NB ...]           the setup cell, the Colab link, collapsed solutions
    python notebooks/nbtools.py student [--out student]  copies without the cells tagged "solution" (make student)
    python notebooks/nbtools.py figures [--out figures]  the cells tagged "figure:<name>" as PNG and SVG (make figures)

`setup` writes, into each notebook given (default: all of notebooks/):
- as the first code cell, SETUP_SOURCE: it installs the package when it is missing (Colab), then
  `device = minimaskrcnn.notebook.setup()` picks CUDA when there is a GPU, else one CPU thread;
- under the title of the first markdown cell, an "Open in Colab" badge that points at the notebook in REPOSITORY
  (a placeholder until the project is published: change REPOSITORY and run `setup` again);
- on every cell tagged "solution", the JupyterLab metadata that collapses it (input and output), so that a
  student sees the answer only by clicking.
It changes nothing else and can run again on a notebook that has them (tests/test_notebook_files.py checks that
every notebook has them).

`figures` runs each notebook that has figure cells in a fresh kernel, from its first cell to its last figure cell
(nothing after it: no training run unless a figure needs one), and saves what each figure cell draws at
minimaskrcnn.notebook.FIGURE_DPI (200) as PNG and as SVG. The figures are the notebooks' own: the tool adds one
line to the tagged cells, a call to minimaskrcnn.notebook.export_figures, and nothing else.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent
REPOSITORY = "OWNER/minimaskrcnn"  # placeholder: the GitHub owner/name once the project is published
BRANCH = "main"
SETUP_SOURCE = f'''\
# Setup, the same in every notebook: install minimaskrcnn when it is missing (Colab), then pick the device
try:
    import minimaskrcnn
except ImportError:
    %pip install --quiet "minimaskrcnn @ git+https://github.com/{REPOSITORY}"
from minimaskrcnn.notebook import setup

device = setup()  # CUDA when there is a GPU; else the CPU, with one thread'''
SETUP_MARK = SETUP_SOURCE.splitlines()[0]
COLLAPSED = {"source_hidden": True, "outputs_hidden": True}  # JupyterLab's (and Notebook 7's) cell metadata
FIGURE_TAG = re.compile(r"^figure:([a-z0-9][a-z0-9_-]*)$")


def colab_url(filename: str) -> str:
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{filename}"


def colab_badge(filename: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(filename)})"


def notebook_paths(names=None) -> list[Path]:
    """The notebooks named (default: every notebooks/NN_*.ipynb); a missing one stops with its name."""
    paths = [Path(n) for n in names] if names else sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"nbtools: no such notebook: {', '.join(missing)}")
    return paths


# ------------------------------------------------------------------------------------------------------------ setup

def first_cell(nb, cell_type: str):
    return next((c for c in nb.cells if c.cell_type == cell_type), None)


def apply_setup(nb, filename: str):
    """The setup cell, the Colab badge and collapsed solutions, in place; returns nb."""
    code = first_cell(nb, "code")
    if code is not None and code.source.startswith(SETUP_MARK):
        code.source = SETUP_SOURCE
    else:
        cell = nbformat.v4.new_code_cell(SETUP_SOURCE)
        cell.id = f"{filename[:2]}-setup"
        at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(at, cell)
    md = first_cell(nb, "markdown")
    if md is None:
        raise ValueError(f"{filename} has no markdown cell to put the Colab badge in (it goes under the title)")
    lines = [line for line in md.source.splitlines() if not line.startswith("[![Open In Colab]")]
    title = lines[:1] if lines and lines[0].startswith("#") else []  # the badge goes under the title
    rest = lines[len(title):]
    while rest and not rest[0].strip():
        rest = rest[1:]
    md.source = "\n".join(title + ([""] if title else []) + [colab_badge(filename), ""] + rest)
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            cell.metadata.setdefault("jupyter", {}).update(COLLAPSED)
    return nb


# ---------------------------------------------------------------------------------------------------------- student

def student_copy(nb):
    """A copy of nb without the cells tagged "solution"."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if "solution" not in c.metadata.get("tags", [])]
    return nb


def make_student(out: Path, names=None) -> list[Path]:
    """Write the student copy of each notebook into out/ (same file names)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebook_paths(names):
        nb = nbformat.read(path, as_version=4)
        nbformat.write(student_copy(nb), out / path.name)
        written.append(out / path.name)
    return written


# ---------------------------------------------------------------------------------------------------------- figures

def figure_cells(nb) -> list[tuple[int, str]]:
    """(cell index, figure name) of every cell tagged figure:<name>."""
    found = []
    for i, cell in enumerate(nb.cells):
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("figure:"):
                match = FIGURE_TAG.match(tag)
                if match is None or cell.cell_type != "code":
                    raise ValueError(f"cell {i}: {tag!r} must tag a code cell, as figure:<lowercase-name>")
                found.append((i, match.group(1)))
    return found


def export_notebook(path: Path, out: Path, timeout: int = 600) -> list[Path]:
    """Run path's code cells up to its last figure cell in a fresh kernel, saving each figure cell's figures
    into out/ (see minimaskrcnn.notebook.export_figures). Returns the files written."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    tagged = dict(figure_cells(nb))
    if not tagged:
        return []
    last = max(tagged)
    run = copy.deepcopy(nb)
    run.cells = []
    for i, cell in enumerate(nb.cells[:last + 1]):
        if cell.cell_type != "code" or "solution" in cell.metadata.get("tags", []):
            continue
        cell = copy.deepcopy(cell)
        cell.outputs = []
        if i in tagged:
            cell.source += (f"\nimport minimaskrcnn.notebook as _nb\n"
                            f"_nb.export_figures({tagged[i]!r}, {str(out.resolve())!r})")
        run.cells.append(cell)
    NotebookClient(run, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    return sorted(p for name in tagged.values() for p in out.glob(f"{name}*.*")
                  if re.fullmatch(rf"{re.escape(name)}(-\d+)?\.(png|svg)", p.name))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup", help="the setup cell, the Colab badge, collapsed solutions")
    s.add_argument("notebooks", nargs="*")
    s = sub.add_parser("student", help="copies without the solution cells")
    s.add_argument("--out", default="student")
    s.add_argument("notebooks", nargs="*")
    s = sub.add_parser("figures", help="the figure cells as PNG and SVG")
    s.add_argument("--out", default="figures")
    s.add_argument("notebooks", nargs="*")
    args = p.parse_args(argv)
    if args.command == "setup":
        for path in notebook_paths(args.notebooks):
            nbformat.write(apply_setup(nbformat.read(path, as_version=4), path.name), path)
            print(f"{path.name}: setup cell, Colab badge, solutions collapsed")
    elif args.command == "student":
        written = make_student(Path(args.out), args.notebooks)
        print(f"{len(written)} student notebooks, without their solution cells, in {args.out}/")
    else:
        total = 0
        for path in notebook_paths(args.notebooks):
            start = time.perf_counter()
            written = export_notebook(path, Path(args.out))
            total += len(written)
            if written:
                print(f"{path.name}: {len(written)} files in {time.perf_counter() - start:.0f} s")
        print(f"{total} files (PNG at 200 dpi and SVG) in {args.out}/")


if __name__ == "__main__":
    sys.exit(main())
