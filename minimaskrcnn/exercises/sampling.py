"""Checks of sample_rois: the RoI heads' minibatch of foreground and background RoIs (Mask R-CNN Sec. 3.1).

An RoI is foreground when its IoU with a ground-truth box is >= 0.5 ("at least 0.5", Sec. 3.1),
labelled with the class of the box it overlaps most, background (label 0) otherwise. At most
int(batch_size * positive_fraction) foreground RoIs are picked at random (1:3 with 0.25), and
background ones fill the rest of the batch, as many as there are. The ground-truth boxes join the
proposals as candidates (Detectron and torchvision do; the paper does not say).

Randomness is made checkable without fixing how a student draws: cases whose answer does not depend
on the draw (copies of one box, fewer candidates than the batch, counts), and a property that runs the
function under 40 seeds of torch's global generator and counts which RoIs were ever picked.
The reference is a loop over boxes with Python floats; its draws use torch's global generator.

Shape glossary:
  P: proposals; G: ground-truth boxes; R: sampled RoIs
"""
from __future__ import annotations

from functools import partial

import torch

from .core import Component, mistake
from .nms import _iou


def sample_loops(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25, *, add_gt=True,
                 fg_at_equal=True, label="class", best=True, pick="random", negatives="fill"):
    """-> rois (R, 4), labels (R,) int64 (0 background), matched (R,) int64 (0 for background).
    The keywords switch on known mistakes."""
    candidates = proposals.tolist() + (gt_boxes.tolist() if add_gt else [])
    G, classes = gt_boxes.tolist(), gt_labels.tolist()
    labels, matched = [], []
    for c in candidates:
        ious = [_iou(g, c) for g in G]
        first = next((i for i, v in enumerate(ious) if v >= 0.5), 0)
        i = (max(range(len(G)), key=lambda k: (ious[k], -k)) if best else first) if G else 0
        foreground = bool(G) and (ious[i] > 0.5 or (fg_at_equal and ious[i] == 0.5))
        labels.append((classes[i] if label == "class" else 1) if foreground else 0)
        matched.append(i if foreground else 0)
    positive = [k for k, lb in enumerate(labels) if lb > 0]
    negative = [k for k, lb in enumerate(labels) if lb == 0]
    quota = int(batch_size * positive_fraction)
    num_pos = min(len(positive), quota)
    num_neg = min(len(negative), batch_size - (num_pos if negatives == "fill" else quota))
    if pick == "random":
        positive = [positive[k] for k in torch.randperm(len(positive)).tolist()]
        negative = [negative[k] for k in torch.randperm(len(negative)).tolist()]
    elif pick == "with_replacement":
        positive = [positive[k] for k in torch.randint(len(positive), (num_pos,)).tolist()] if positive else []
        negative = [negative[k] for k in torch.randint(len(negative), (num_neg,)).tolist()] if negative else []
    keep = positive[:num_pos] + negative[:num_neg]
    rois = torch.tensor([candidates[k] for k in keep], dtype=proposals.dtype).reshape(-1, 4)
    return (rois, torch.tensor([labels[k] for k in keep], dtype=torch.int64),
            torch.tensor([matched[k] for k in keep], dtype=torch.int64))


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


SAMPLE_ROIS = Component("sample_rois", "the RoI heads' 1:3 minibatch of foreground and background RoIs (Mask R-CNN "
                        "Sec. 3.1)", {"sample_rois": sample_loops}, [
    mistake("an RoI with IoU exactly 0.5 is foreground: the paper's 'IoU of at least 0.5' is >= 0.5",
            sample_rois=partial(sample_loops, fg_at_equal=False)),
    mistake("a foreground RoI's label is the class of its ground truth, gt_labels[matched], not 1",
            sample_rois=partial(sample_loops, label="one")),
    mistake("your label comes from the first ground truth with IoU >= 0.5; it is the one the RoI overlaps most",
            sample_rois=partial(sample_loops, best=False)),
    mistake("your sample always picks the same RoIs, the first ones: pick them at random (torch.randperm(n)[:k])",
            sample_rois=partial(sample_loops, pick="first")),
    mistake("your sample picks some RoIs twice: draw without replacement (torch.randperm(n)[:k], not torch.randint)",
            sample_rois=partial(sample_loops, pick="with_replacement")),
    mistake("background RoIs fill what the foreground ones leave, batch_size - num_pos of them (as many as there "
            "are), not batch_size * (1 - positive_fraction)", sample_rois=partial(sample_loops, negatives="fixed")),
    mistake("the ground-truth boxes join the proposals as candidates (Detectron, torchvision): add them before "
            "labelling", sample_rois=partial(sample_loops, add_gt=False)),
])


def _seeded(functions, x, seed=0):
    """sample_rois(**x) with torch's generator seeded (and restored after): a known mistake's replay then
    draws what the same code drew."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        return functions.sample_rois(*x.values())
    finally:
        torch.set_rng_state(state)


def _rows(result) -> torch.Tensor:
    """(rois, labels, matched) -> (R, 6) float64 rows (x1, y1, x2, y2, label, matched or -1 for background)."""
    rois, labels, matched = result
    matched = torch.where(labels > 0, matched, -1)
    return torch.cat([rois.double(), labels[:, None].double(), matched[:, None].double()], dim=1)


def _is_gt(rows, gt_boxes) -> torch.Tensor:
    """(R,) bool: the row's box is one of the ground-truth boxes."""
    return (rows[:, None, :4] == gt_boxes.double()[None]).all(dim=2).any(dim=1)


def sampled(keep_gt: bool = False):
    """A measure that does not depend on the order: the sampled rows, sorted; without the rows that are
    ground-truth boxes unless keep_gt (so that the core does not depend on whether they joined)."""
    def measure(functions, x):
        rows = _rows(_seeded(functions, x))
        rows = rows if keep_gt else rows[~_is_gt(rows, x["gt_boxes"])]
        return torch.tensor(sorted(rows.tolist()), dtype=torch.float64).reshape(-1, 6)
    return measure


def counts(*what):
    """A measure: how many sampled rows are `what`: "pos" / "neg" (foreground / background, ground-truth boxes
    included), "pos_proposals" / "neg_proposals" (not counting them), "all"."""
    def measure(functions, x):
        rows = _rows(_seeded(functions, x))
        proposal = ~_is_gt(rows, x["gt_boxes"])
        kinds = {"pos": rows[:, 4] > 0, "neg": rows[:, 4] == 0, "pos_proposals": (rows[:, 4] > 0) & proposal,
                 "neg_proposals": (rows[:, 4] == 0) & proposal, "all": torch.ones(len(rows), dtype=torch.bool)}
        return torch.tensor([int(kinds[w].sum()) for w in what])
    return measure


def ever_picked(functions, x, seeds=40):
    """A measure: under `seeds` seeds of torch's generator, how many distinct foreground and background
    proposals were ever picked, and whether one call ever picked an RoI twice (1) or not (0)."""
    state = torch.get_rng_state()
    try:
        picked, twice = {True: set(), False: set()}, 0
        for seed in range(seeds):
            torch.manual_seed(seed)
            rows = _rows(functions.sample_rois(*x.values()))
            boxes = [tuple(r[:5]) for r in rows.tolist()]
            twice |= int(len(set(boxes)) < len(boxes))
            for r, gt in zip(boxes, _is_gt(rows, x["gt_boxes"]).tolist()):
                if not gt:
                    picked[r[4] > 0].add(r)
        return torch.tensor([len(picked[True]), len(picked[False]), twice])
    finally:
        torch.set_rng_state(state)


GT, CLASS = [[0.0, 0, 10, 10]], [2]  # one 10 x 10 ground truth of class 2: (0, 0, 10, h) has IoU h / 10 with it
FAR = [20.0, 20, 30, 30]  # a background proposal, apart from the ground truth


def _case(proposals, batch_size=32, gt=GT, classes=CLASS):
    return {"proposals": _t(proposals), "gt_boxes": _t(gt), "gt_labels": torch.tensor(classes, dtype=torch.int64),
            "batch_size": batch_size, "positive_fraction": 0.25}


@SAMPLE_ROIS.core("an RoI is foreground when its IoU with a ground-truth box is >= 0.5, labelled with its class "
                  "(matched: its index); background otherwise (label 0) (hand-computed)")
def _(t):
    t.expect("ground truth (0, 0, 10, 10) of class 2; proposals with IoU 0.5, 0.8, 0.4 and 0; batch 32, so all "
             "are kept (rows x1, y1, x2, y2, label, matched; -1: background; sorted)",
             _case([[0, 0, 10, 20], [0, 0, 10, 8], [0, 0, 10, 4], FAR]),
             [[0.0, 0, 10, 4, 0, -1], [0, 0, 10, 8, 2, 0], [0, 0, 10, 20, 2, 0], [*FAR, 0, -1]], measure=sampled())


@SAMPLE_ROIS.core("the label and the matched index come from the ground truth the RoI overlaps most")
def _(t):
    t.expect("ground truths (0, 0, 10, 10) of class 1 and (5, 0, 15, 10) of class 3; proposal 0 overlaps them by "
             "0.54 and 0.67, proposal 1 by 0.82 and 0.43, proposal 2 by 0.43 and 0.82",
             _case([[3, 0, 13, 10], [1, 0, 11, 10], [4, 0, 14, 10]], gt=[[0, 0, 10, 10], [5, 0, 15, 10]],
                   classes=[1, 3]),
             [[1.0, 0, 11, 10, 1, 0], [3, 0, 13, 10, 3, 1], [4, 0, 14, 10, 3, 1]], measure=sampled())


@SAMPLE_ROIS.core("1:3: with enough of both, int(batch_size * positive_fraction) foreground RoIs and the rest of "
                  "the batch background")
def _(t):
    t.expect("12 copies of a foreground proposal (IoU 0.8), 30 of a background one; batch 16, fraction 0.25: "
             "(foreground, background) = (4, 12)", _case([[0, 0, 10, 8]] * 12 + [FAR] * 30, 16), [4, 12],
             measure=counts("pos", "neg"), exact=True)
    t.expect("the same with batch 64: 16 foreground, 48 background", _case([[0, 0, 10, 8]] * 40 + [FAR] * 80, 64),
             [16, 48], measure=counts("pos", "neg"), exact=True)


@SAMPLE_ROIS.core("fewer foreground RoIs than the quota: all are kept, and background ones fill the rest of the batch "
                  "(as many as there are)")
def _(t):
    t.expect("2 foreground proposals, 30 background ones, batch 16: (foreground proposals, batch) = (2, 16)",
             _case([[0, 0, 10, 8], [0, 0, 10, 9]] + [FAR] * 30, 16), [2, 16], measure=counts("pos_proposals", "all"),
             exact=True)
    t.expect("2 foreground proposals, 3 background ones, batch 16: all 5 are kept",
             _case([[0, 0, 10, 8], [0, 0, 10, 9], FAR, [40, 0, 50, 10], [0, 40, 10, 50]], 16), [2, 3],
             measure=counts("pos_proposals", "neg_proposals"), exact=True)


@SAMPLE_ROIS.core("the picks are random: under 40 seeds every foreground and background proposal is picked some "
                  "time, and no call picks an RoI twice")
def _(t):
    t.expect("6 distinct foreground proposals (IoU 0.6 to 0.85), 10 distinct background ones, batch 8: (distinct "
             "foreground picked, distinct background picked, an RoI twice in one call)",
             _case([[0, 0, 10, 6 + h / 2] for h in range(6)] + [[20 + k, 20, 30 + k, 30] for k in range(10)], 8),
             [6, 10, 0], measure=ever_picked, exact=True)


@SAMPLE_ROIS.core("no ground truth: every RoI is background")
def _(t):
    t.expect("3 proposals, (0, 4) gt_boxes, batch 32", _case([[0, 0, 10, 10], [5, 5, 9, 9], FAR], gt=[], classes=[]),
             [[0.0, 0, 10, 10, 0, -1], [5, 5, 9, 9, 0, -1], [*FAR, 0, -1]], measure=sampled())


@SAMPLE_ROIS.convention("the ground-truth boxes join the proposals as candidates, so each object has a perfect RoI "
                        "(Detectron, torchvision)")
def _(t):
    t.expect("no proposals, ground truths (0, 0, 10, 10) of class 1 and (20, 0, 30, 10) of class 2",
             _case([], gt=[[0, 0, 10, 10], [20, 0, 30, 10]], classes=[1, 2]),
             [[0.0, 0, 10, 10, 1, 0], [20, 0, 30, 10, 2, 1]], measure=sampled(keep_gt=True))


@SAMPLE_ROIS.convention("labels and matched are int64 (torch.long)")
def _(t):
    case = _case([[0, 0, 10, 8], FAR])
    for i, name in ((1, "labels"), (2, "matched")):
        t.expect_dtype(name, case, torch.int64, measure=lambda f, x, i=i: _seeded(f, x)[i])
