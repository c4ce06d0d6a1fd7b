"""Every label of every figure is at least 8 pt: a static read of the package's plotting code and of the
notebooks' code cells for font sizes set below that (fontsize=, labelsize=, size= of text, rcParams)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = re.compile(r"\b(fontsize|labelsize|font\.size|legend\.fontsize|[xy]tick\.labelsize)\b\W{1,6}(\d+(?:\.\d+)?)")
NAMED = re.compile(r"\b(fontsize|labelsize)\s*=\s*[\"'](xx-small|x-small|small)[\"']")


def too_small(text: str) -> list[str]:
    found = [f"{m.group(1)} {m.group(2)}" for m in SMALL.finditer(text) if float(m.group(2)) < 8]
    return found + [f"{m.group(1)} {m.group(2)}" for m in NAMED.finditer(text)]


def test_the_scan_finds_small_labels():
    assert too_small('ax.set_title("x", fontsize=7); ax.tick_params(labelsize=8)') == ["fontsize 7"]
    assert too_small('plt.rcParams["font.size"] = 6.5') == ["font.size 6.5"]
    assert too_small('ax.legend(fontsize="x-small")') == ["fontsize x-small"]
    assert too_small('ax.text(0, 0, "a", fontsize=8, size=12)') == []


@pytest.mark.parametrize("path", sorted((ROOT / "minimaskrcnn").rglob("*.py")), ids=lambda p: p.name)
def test_package_labels_are_at_least_8_pt(path):
    assert too_small(path.read_text()) == []


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_labels_are_at_least_8_pt(path):
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert too_small(code) == []


# ------------------------------------------------ `make figures`: the notebooks' cells tagged figure:<name>

def load_nbtools():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nbtools", ROOT / "notebooks" / "nbtools.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_figure_tags_name_about_15_distinct_figures():
    import nbformat

    nbtools = load_nbtools()
    names = [name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
             for _, name in nbtools.figure_cells(nbformat.read(p, as_version=4))]
    assert 12 <= len(names) <= 20 and len(set(names)) == len(names), names
    assert {"roadmap", "mask-round-trip-vs-size", "mask-round-trip-photos", "mask-loss-gradients",
            "gain-vs-stride"} <= set(names)


def test_export_runs_up_to_the_last_figure_cell_and_writes_png_and_svg(tmp_path):
    import nbformat
    from PIL import Image

    nbtools = load_nbtools()
    cells = [nbformat.v4.new_markdown_cell("# a notebook"),
             nbformat.v4.new_code_cell("import matplotlib.pyplot as plt"),
             nbformat.v4.new_code_cell("raise RuntimeError('a solution cell ran')", metadata={"tags": ["solution"]}),
             nbformat.v4.new_code_cell("fig, ax = plt.subplots(figsize=(2, 1))\nax.plot([0, 1])",
                                       metadata={"tags": ["figure:one"]}),
             nbformat.v4.new_code_cell("for _ in range(2):\n    plt.subplots(figsize=(1, 1))",
                                       metadata={"tags": ["figure:two"]}),
             nbformat.v4.new_code_cell("raise RuntimeError('a cell after the last figure ran')")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(nb, tmp_path / "99_test.ipynb")
    written = nbtools.export_notebook(tmp_path / "99_test.ipynb", tmp_path / "out")
    assert [p.name for p in written] == ["one.png", "one.svg", "two-1.png", "two-1.svg", "two-2.png", "two-2.svg"]
    with Image.open(tmp_path / "out" / "one.png") as png:
        assert round(png.info["dpi"][0]) >= 200 and 300 <= png.width <= 400  # 2 inches at 200 dpi, cropped tight
    assert (tmp_path / "out" / "one.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="must tag a code cell"):
        bad = nbformat.v4.new_code_cell("", metadata={"tags": ["figure:A b"]})
        nbtools.figure_cells(nbformat.v4.new_notebook(cells=[bad]))


def test_export_figures_refuses_a_cell_that_drew_nothing(tmp_path):
    import matplotlib.pyplot as plt

    from minimaskrcnn.notebook import export_figures

    plt.close("all")
    with pytest.raises(ValueError, match="figure:empty drew no figure"):
        export_figures("empty", tmp_path)
