"""The road map: the paper's Fig. 1 (with Fig. 4's FPN heads) drawn as boxes and arrows, each box naming the
package modules that implement that stage and the notebooks that show it.

    image -> backbone (ResNet + FPN) -> RPN -> RoIAlign -> box head: class, box
                                                       -> mask head: 4 convs, deconv, K masks -> pasted mask
                                                       -> keypoint head: 8 convs, deconv, K heatmaps -> keypoints
                                                          (Sec. 5: beside the mask head or instead of it)

The map is data (`STAGES`, `ARROWS`), so `tests/test_roadmap.py` can check that every module and notebook it
names exists; `draw_roadmap` only draws it. Positions are in map units, y upwards; the text is sized for
SCALE inches per unit, the figure `draw_roadmap` makes. Paper: Mask R-CNN, https://arxiv.org/abs/1703.06870
("Sec." without a paper's name means this one).
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

XLIM, YLIM = (0.0, 14.6), (-0.2, 7.85)  # the map's extent, map units
SCALE = 0.8  # inches per map unit: at the notebooks' 80 dpi the map is about 930 pixels wide
BOX_W, BOX_H = 2.35, 1.75  # a stage's box
LINE = 0.24  # from one line of a box's text to the next
FONT = 8  # points, every text of the map (titles 9)

# One colour per part of the system, with the same meaning in every box, arrow and the legend.
KINDS = {
    "input and output": ("#eeeeee", "#555555"),
    "first stage: backbone and RPN": ("#dbe9f6", "#1f77b4"),
    "second stage: RoI heads": ("#fde5cc", "#c85f00"),
    "training, evaluation, exercises": ("#dcf0dc", "#2a8a2a"),
}


@dataclass(frozen=True)
class Stage:
    """One box of the map."""
    key: str  # name used by ARROWS
    title: str  # what the paper calls it
    paper: str  # where in the paper
    modules: tuple  # paths under minimaskrcnn/ that implement it ("ops/roi_align.py", "training/")
    notebooks: tuple  # notebook numbers that show it ("01" for notebooks/01_*.ipynb)
    x: float  # centre of the box, map units
    y: float
    kind: str  # a key of KINDS


IO, FIRST, SECOND, TRAIN = KINDS
COLUMNS = (1.2, 4.0, 6.8, 9.6, 12.4)  # x of the five columns
TOP, MIDDLE, LOW, BOTTOM = 6.55, 4.6, 2.65, 0.7  # y of the rows

STAGES = (
    Stage("image", "image", "Sec. 3.1: resize (800), pad", ("transform.py", "data/"), ("02", "06"),
          COLUMNS[0], MIDDLE, IO),
    Stage("backbone", "backbone: ResNet+FPN", "Sec. 3, Architecture", ("resnet.py", "fpn.py"),
          ("02", "07"), COLUMNS[1], MIDDLE, FIRST),
    Stage("rpn", "RPN: scores, deltas", "Sec. 3 (Faster R-CNN)", ("rpn.py", "ops/nms.py"), ("02", "07"),
          COLUMNS[2], MIDDLE, FIRST),
    Stage("anchors", "anchors, IoU, boxes", "Faster R-CNN Eq. 2", ("anchors.py", "ops/boxes.py", "matching.py"),
          ("01", "09"), COLUMNS[2], LOW, FIRST),
    Stage("roialign", "RoIAlign", "Sec. 3 RoIAlign, Table 2c", ("ops/roi_align.py", "poolers.py", "ops/roi_pool.py"),
          ("03", "09"), COLUMNS[3], MIDDLE, SECOND),
    Stage("box_head", "box head: 2 FCs, class, box", "Fig. 4; Sec. 3.1 (1:3 RoIs)", ("box_head.py", "roi_heads.py"),
          ("02", "07"), COLUMNS[4], TOP, SECOND),
    Stage("mask_head", "mask head: 4 convs, deconv, K masks", "Fig. 4; Sec. 3.1 Inference",
          ("mask_head.py", "roi_heads.py", "transform.py"), ("04", "07"), COLUMNS[4], MIDDLE, SECOND),
    Stage("keypoint_head", "keypoint head: 8 convs, K heatmaps", "Sec. 5, Table 4",
          ("keypoint_head.py", "roi_heads.py"), ("11",), COLUMNS[4], LOW, SECOND),
    Stage("losses", "L_cls, L_box, L_mask, L_kp", "Sec. 3 loss; Sec. 5", ("losses.py", "roi_heads.py"),
          ("02", "04", "11"), COLUMNS[3], LOW, SECOND),
    Stage("training", "training", "Sec. 3.1, Training", ("training/", "model.py", "transfer.py"), ("05", "06", "10"),
          COLUMNS[0], BOTTOM, TRAIN),
    Stage("evaluation", "COCO box / mask / keypoint AP", "Sec. 4; Sec. 5 (OKS)", ("evaluation.py",),
          ("05", "06", "11"), COLUMNS[1], BOTTOM, TRAIN),
    Stage("ablations", "ablations", "Sec. 4.2, Tables 2 and 4", ("ablation/",), ("08",), COLUMNS[2], BOTTOM, TRAIN),
    Stage("exercises", "write the ops", "Sec. 3; Faster R-CNN", ("exercises/",), ("09",),
          COLUMNS[3], BOTTOM, TRAIN),
)

# (from, to, label on the arrow): the flow of Fig. 1
ARROWS = (
    ("image", "backbone", ""),
    ("backbone", "rpn", "P2-P6"),
    ("anchors", "rpn", ""),
    ("rpn", "roialign", "RoIs"),
    ("roialign", "box_head", "7x7"),
    ("roialign", "mask_head", "14x14"),
    ("roialign", "keypoint_head", "14x14"),
)
OUTPUTS = (("box_head", "detections"), ("mask_head", "28x28 masks"),  # arrows out of the map's right side
           ("keypoint_head", "56x56 heatmaps"))


def stage(key: str) -> Stage:
    """The stage called `key`."""
    return next(s for s in STAGES if s.key == key)


def box_lines(s: Stage) -> list[tuple[str, dict]]:
    """The lines of text of a stage's box, top to bottom, with their text properties."""
    lines = [(t, dict(fontsize=FONT + 1, fontweight="bold")) for t in textwrap.wrap(s.title, 22)]
    lines.append((s.paper, dict(fontsize=FONT, style="italic", color="0.25")))
    lines += [(t, dict(fontsize=FONT, family="monospace")) for t in textwrap.wrap(", ".join(s.modules), 28)]
    lines.append(("notebooks " + ", ".join(s.notebooks), dict(fontsize=FONT, fontweight="bold",
                                                             color=KINDS[s.kind][1])))
    return lines


def _edge_point(s: Stage, towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from s's centre towards a point leaves s's box."""
    dx, dy = towards[0] - s.x, towards[1] - s.y
    scale = min(BOX_W / 2 / abs(dx) if dx else float("inf"), BOX_H / 2 / abs(dy) if dy else float("inf"))
    return s.x + dx * scale, s.y + dy * scale


def draw_stage(ax, s: Stage):
    """Draw one stage's box and its lines; returns (the box patch, the list of Text artists)."""
    face, edge = KINDS[s.kind]
    box = ax.add_patch(FancyBboxPatch((s.x - BOX_W / 2, s.y - BOX_H / 2), BOX_W, BOX_H, facecolor=face,
                                      edgecolor=edge, linewidth=1.4, boxstyle="round,pad=0,rounding_size=0.1"))
    top = s.y + BOX_H / 2 - 0.15
    return box, [ax.text(s.x, top - i * LINE, text, ha="center", va="top", **props)
                 for i, (text, props) in enumerate(box_lines(s))]


def draw_arrow(ax, start, end, colour, label: str = "") -> None:
    """An arrow from `start` to `end` (map units), with an optional label above its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.4, color=colour))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.06, label, ha="center", va="bottom",
                fontsize=FONT, color="0.2")


def draw_roadmap(ax=None):
    """Draw the map on `ax` and return it. ax=None makes a figure of SCALE inches per map unit, the size the
    text is made for (on a smaller Axes the text overflows its boxes)."""
    if ax is None:
        fig = plt.figure(figsize=((XLIM[1] - XLIM[0]) * SCALE, (YLIM[1] - YLIM[0]) * SCALE))
        ax = fig.add_axes((0, 0, 1, 1))
    # Fig. 1's model: what model.py's MaskRCNN.forward runs
    right = COLUMNS[4] + BOX_W / 2 + 0.15
    ax.add_patch(Rectangle((0.0, 1.65), right, 6.15, fill=False, linestyle="--", edgecolor="0.55"))
    ax.text(0.1, 7.6, "model.py: MaskRCNN.forward, the paper's Fig. 1 with the FPN heads of Fig. 4 "
            "(Mask R-CNN, arXiv:1703.06870)", fontsize=FONT + 1, va="center", color="0.25")
    for a, b, label in ARROWS:
        a, b = stage(a), stage(b)
        draw_arrow(ax, _edge_point(a, (b.x, b.y)), _edge_point(b, (a.x, a.y)), KINDS[b.kind][1], label)
    for key, label in OUTPUTS:
        s = stage(key)
        draw_arrow(ax, (s.x + BOX_W / 2, s.y), (XLIM[1] - 0.05, s.y), KINDS[IO][1])
        ax.text(right + 0.08, s.y + 0.06, label, fontsize=FONT, va="bottom", color="0.2")
    for s in STAGES:
        draw_stage(ax, s)
    ax.legend(handles=[Patch(facecolor=f, edgecolor=e, label=k) for k, (f, e) in KINDS.items()], fontsize=FONT,
              loc="center", bbox_transform=ax.transData, bbox_to_anchor=(COLUMNS[4] + 0.5, BOTTOM), frameon=False)
    ax.set_xlim(*XLIM)
    ax.set_ylim(*YLIM)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
