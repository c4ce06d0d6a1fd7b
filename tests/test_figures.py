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
