"""The road map (roadmap.py) cannot go stale: every module and notebook it names exists, every notebook is on
it, the components of the paper's Fig. 1 are, and what it draws fits in its boxes at 8 pt or more."""
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from minimaskrcnn import roadmap  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def missing_references(stages) -> list[str]:
    """What the stages name that is not in the repository: a module path under minimaskrcnn/ (a folder when
    it ends in "/"), or a notebook number that is not exactly one notebooks/NN_*.ipynb."""
    missing = []
    for s in stages:
        for m in s.modules:
            path = ROOT / "minimaskrcnn" / m
            if not (path.is_dir() if m.endswith("/") else path.is_file()):
                missing.append(f"{s.key}: minimaskrcnn/{m}")
        for n in s.notebooks:
            if len(list((ROOT / "notebooks").glob(f"{n}_*.ipynb"))) != 1:
                missing.append(f"{s.key}: notebook {n}")
    return missing


def test_every_module_and_notebook_on_the_map_exists():
    assert missing_references(roadmap.STAGES) == []


def test_the_check_catches_a_stale_map():
    stale = replace(roadmap.STAGES[0], modules=("transform.py", "no_such_module.py", "ops/"), notebooks=("02", "99"))
    assert missing_references([stale]) == ["image: minimaskrcnn/no_such_module.py", "image: notebook 99"]


def test_every_notebook_is_on_the_map():
    numbers = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    on_map = {n for s in roadmap.STAGES for n in s.notebooks}
    assert numbers and numbers <= on_map, f"notebooks missing from the map: {sorted(numbers - on_map)}"


@pytest.mark.parametrize("module", ["transform.py", "resnet.py", "fpn.py", "anchors.py", "rpn.py",
                                    "ops/roi_align.py", "box_head.py", "mask_head.py", "roi_heads.py", "losses.py",
                                    "model.py"])
def test_the_components_of_fig_1_are_on_the_map(module):
    assert any(module in s.modules for s in roadmap.STAGES)


def test_arrows_join_stages_of_the_map():
    keys = [s.key for s in roadmap.STAGES]
    assert len(set(keys)) == len(keys)
    for a, b, _ in roadmap.ARROWS:
        assert a in keys and b in keys
    assert {"image", "backbone", "rpn", "roialign", "box_head", "mask_head"} <= {k for a in roadmap.ARROWS
                                                                                  for k in a[:2]}


def test_drawn_text_fits_its_box_at_8_pt_or_more():
    ax = roadmap.draw_roadmap()
    fig = ax.figure
    fig.set_dpi(80)  # the notebooks' dpi
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= 8
    drawn = " ".join(t.get_text() for t in texts)
    for s in roadmap.STAGES:
        for m in s.modules:
            assert m in drawn
        box, lines = roadmap.draw_stage(ax, s)
        outer = box.get_window_extent(renderer)
        for line in lines:
            inner = line.get_window_extent(renderer)
            assert outer.x0 < inner.x0 and inner.x1 < outer.x1 and outer.y0 < inner.y0 and inner.y1 < outer.y1, \
                f"{s.key}: {line.get_text()!r} overflows its box"
    plt.close(fig)
