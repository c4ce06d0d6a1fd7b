"""The paper's ablations (Table 2; Table 4 for keypoints) in miniature: the studies, variants and paper's numbers.

Each study trains the CPU-sized model on the synthetic shapes once per variant and seed, with the same data,
schedule and seeds for every variant, so that the variant is the only difference (`run.py`); `report.py` turns
the runs into statistics, verdicts and tables, `plots.py` into figures.

The studies, after Table 2 of the paper:
  roi_layer     2c: RoIPool, RoIWarp, RoIAlign (max) and RoIAlign (avg), RoIs pooled at stride 16
  large_stride  2d: RoIPool against RoIAlign, RoIs pooled at stride 32
  mask_loss     2b: per-class sigmoid (binary loss) against multinomial softmax
  agnostic      Sec. 4.2: class-specific against class-agnostic masks
  mask_head     2e: the FCN mask head against an MLP
  aligned       not in the paper: RoIAlign with aligned=False against aligned=True
  strides       not in the paper: RoIPool against RoIAlign at strides 4 and 8, which with 2c and 2d
                shows RoIAlign's gain against the stride (STRIDE_SERIES, plots.plot_gain_against_stride)
  keypoint_mask Table 4 (Sec. 5): keypoints alone against keypoints with the mask branch, on the shapes
                with keypoints (their corners, vertices and extreme points), scored by keypoint AP (OKS)

The paper's numbers are COCO mask AP of ResNet-50 models (C4 for 2b/2c, C5 for 2d, FPN for 2e), and COCO
keypoint AP of people for Table 4; ours are on 128 x 128 synthetic shapes with a small from-scratch model.
Compare directions, not values.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data.sources import RunData

METRICS = ("AP", "AP50", "AP75")
TASKS = ("mask", "box", "keypoints")  # what a run's AP is measured on: COCOeval's segm, bbox and keypoints


@dataclass(frozen=True)
class Variant:
    name: str  # used in file names, e.g. "roialign_avg"
    label: str  # as in the paper's table, e.g. "RoIAlign (avg)"
    overrides: dict  # RoIHeadsConfig fields this variant sets
    paper: dict = field(default_factory=dict)  # {"mask": (AP, AP50, AP75), "box": ..., "keypoints": ...}; None
    # where not given


@dataclass(frozen=True)
class Claim:
    """A study's headline effect, to check on our data: `better` minus `worse` on `metric` (e.g. "mask_AP75") is
    positive beyond the seeds' spread, or, for a `close` claim, within the study's close_within AP points."""
    better: str  # variant names
    worse: str
    metric: str
    close: bool = False


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    paper_setting: str  # the paper's backbone for this table
    variants: tuple
    common: dict = field(default_factory=dict)  # RoIHeadsConfig fields every variant sets
    expectation: str = ""  # the paper's headline effect, in words
    claim: Claim | None = None  # the headline effect to check (None: none)
    close_within: float = 2.0  # AP points within which a close claim holds (the paper's gap: 0.6)
    tasks: tuple = ("mask", "box")  # the APs its table shows; the first is set beside the paper's and drawn
    train: dict = field(default_factory=dict)  # TrainConfig fields every run sets (the keypoint study: its model
    # preset and data), over the demo's recipe


# Optimizer steps per run: the demo's full schedule. At half of it (450 steps) the runs were still on
# the steep part of the learning curve, and three seeds of one variant spread from 0.13 to 0.44 mask AP,
# which hid every effect; a study of 4 variants x 3 seeds still fits in an hour on a 2-core CPU. Shorter
# runs get no verdict (report.verdict): they did not train long enough to show anything.
ABLATION_ITERS = 900


STRIDE_16, STRIDE_32 = {"pool_levels": ("p4",)}, {"pool_levels": ("p5",)}


ALIGN_AVG = {"pooler": "align", "pool_mode": "avg"}


# The keypoint study trains the keypoint preset on the demo's shapes with their keypoints (same images, masks
# and boxes as the demo's; data/shapes.py adds the keypoints).
KEYPOINT_SHAPES = {"config": "cpu_small_keypoints", "data": RunData.shapes(2000, 200, 128, keypoints=True)}


STUDIES = {s.name: s for s in (
    Study("roi_layer", "RoI layer (Table 2c), stride 16", "ResNet-50-C4", (
        Variant("roipool", "RoIPool", {"pooler": "pool"}, {"mask": (26.9, 48.8, 26.4)}),
        Variant("roiwarp", "RoIWarp (avg)", {"pooler": "warp"}, {"mask": (27.1, 48.9, 27.1)}),
        Variant("roialign_max", "RoIAlign (max)", {"pooler": "align", "pool_mode": "max"}, {"mask": (30.2, 51.0, 31.8)}),
        Variant("roialign_avg", "RoIAlign (avg)", ALIGN_AVG, {"mask": (30.3, 51.2, 31.5)}),
    ), STRIDE_16, "RoIAlign beats RoIPool and RoIWarp by about 3 AP, most of it at AP75; max and avg tie.",
        Claim("roialign_avg", "roipool", "mask_AP75")),
    Study("large_stride", "RoIPool vs RoIAlign at stride 32 (Table 2d)", "ResNet-50-C5", (
        Variant("roipool", "RoIPool", {"pooler": "pool"}, {"mask": (23.6, 46.5, 21.6), "box": (28.2, 52.7, 26.9)}),
        Variant("roialign", "RoIAlign", ALIGN_AVG, {"mask": (30.9, 51.8, 32.1), "box": (34.0, 55.3, 36.4)}),
    ), STRIDE_32, "At stride 32 the gap grows: +7.3 mask AP, +10.5 AP75, and +5.8 box AP.",
        Claim("roialign", "roipool", "mask_AP75")),
    Study("mask_loss", "Multinomial vs independent masks (Table 2b)", "ResNet-50-C4", (
        Variant("softmax", "softmax (multinomial)", {"mask_loss": "softmax"}, {"mask": (24.8, 44.1, 25.1)}),
        Variant("sigmoid", "sigmoid (binary, ours)", {"mask_loss": "sigmoid"}, {"mask": (30.3, 51.2, 31.5)}),
    ), {}, "Decoupling masks from classes (sigmoid) beats the softmax by 5.5 mask AP.",
        Claim("sigmoid", "softmax", "mask_AP")),
    Study("agnostic", "Class-specific vs class-agnostic masks (Sec. 4.2)", "ResNet-50-C4", (
        Variant("specific", "class-specific", {"class_agnostic_masks": False}, {"mask": (30.3, None, None)}),
        Variant("agnostic", "class-agnostic", {"class_agnostic_masks": True}, {"mask": (29.7, None, None)}),
    ), {}, "A single class-agnostic mask is nearly as good: 29.7 against 30.3 mask AP.",
        Claim("specific", "agnostic", "mask_AP", close=True)),
    Study("mask_head", "Mask branch: MLP vs FCN (Table 2e)", "ResNet-50-FPN", (
        Variant("mlp", "MLP (2 fc layers)", {"mask_head": "mlp"}, {"mask": (31.5, 53.7, 32.8)}),
        Variant("fcn", "FCN (convs + deconv)", {"mask_head": "fcn"}, {"mask": (33.6, 55.2, 35.3)}),
    ), {}, "The FCN, which keeps the mask's spatial layout, beats the MLP by 2.1 mask AP.",
        Claim("fcn", "mlp", "mask_AP")),
    Study("aligned", "RoIAlign: aligned=False vs aligned=True (not in the paper)", "-", (
        Variant("unaligned", "aligned=False (paper, torchvision)", {"aligned": False}),
        Variant("aligned", "aligned=True (half-pixel shift)", {"aligned": True}),
    ), ALIGN_AVG, "Not in the paper. Detectron2 reports aligned=True as slightly better.",
        Claim("aligned", "unaligned", "mask_AP75")),
    Study("strides", "RoIPool vs RoIAlign at strides 4 and 8 (not in the paper)", "-", (
        Variant("roipool_s4", "RoIPool, stride 4", {"pooler": "pool", "pool_levels": ("p2",)}),
        Variant("roialign_s4", "RoIAlign, stride 4", {**ALIGN_AVG, "pool_levels": ("p2",)}),
        Variant("roipool_s8", "RoIPool, stride 8", {"pooler": "pool", "pool_levels": ("p3",)}),
        Variant("roialign_s8", "RoIAlign, stride 8", {**ALIGN_AVG, "pool_levels": ("p3",)}),
    ), {}, "Not in the paper as such; with 2c (stride 16) and 2d (stride 32) it gives RoIAlign's gain "
           "against the stride, which the paper finds grows from 16 to 32.",
        Claim("roialign_s8", "roipool_s8", "mask_AP75")),
    # Table 4 (COCO test-dev, R50-FPN): keypoint AP, AP50, AP75; Table 5 (minival, same data for both): person
    # box AP 50.7 and 52.0, keypoint AP 64.2 and 64.7.
    Study("keypoint_mask", "Keypoints alone vs with the mask branch (Table 4)", "ResNet-50-FPN, people", (
        Variant("keypoints", "keypoint-only", {"mask_branch": False},
                {"keypoints": (62.7, 87.0, 68.4), "box": (50.7, None, None)}),
        Variant("keypoints_mask", "keypoint & mask", {"mask_branch": True},
                {"keypoints": (63.1, 87.3, 68.7), "box": (52.0, None, None)}),
    ), {}, "Training the mask branch beside the keypoints helps them a little: 63.1 against 62.7 keypoint AP "
           "(test-dev; 64.7 against 64.2 on minival, and 52.0 against 50.7 person box AP).",
        Claim("keypoints_mask", "keypoints", "keypoints_AP"), tasks=("keypoints", "box", "mask"),
        train=KEYPOINT_SHAPES),
)}


# RoIPool and RoIAlign (avg) at each stride, from the studies that hold them: (stride, study, RoIPool
# variant, RoIAlign variant). All use the same recipe and seeds, so the rows can be set side by side.
STRIDE_SERIES = ((4, "strides", "roipool_s4", "roialign_s4"), (8, "strides", "roipool_s8", "roialign_s8"),
                 (16, "roi_layer", "roipool", "roialign_avg"), (32, "large_stride", "roipool", "roialign"))


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    return STUDIES[name]


def select_variants(study: Study, names=None) -> Study:
    """The study with only the variants named (all of them when names is None), in the study's order."""
    if names is None:
        return study
    known = [v.name for v in study.variants]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"study {study.name}: unknown variants {unknown}; choose from {known}")
    return dataclasses.replace(study, variants=tuple(v for v in study.variants if v.name in names))


def paper_value(variant: Variant, metric: str) -> float | None:
    """The paper's number for a variant's `metric` (e.g. "mask_AP75"), or None where it gives none."""
    task, m = metric.split("_", 1)
    values = variant.paper.get(task)
    return None if values is None else values[METRICS.index(m)]
