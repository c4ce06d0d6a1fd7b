"""Checks of label_anchors: which anchors are objects (Faster R-CNN Sec. 3.1.2; Mask R-CNN Sec. 3.1).

The RPN's targets: an anchor is positive when its best IoU with a ground-truth box is
>= fg_iou_thresh (0.7), background when it is < bg_iou_thresh (0.3), ignored in between. The
low-quality rule: each ground truth's best anchors, ties included, are positive too, even below 0.7,
so that every object has one ("the anchor/anchors with the highest IoU overlap with a ground-truth
box", Faster R-CNN). The result is one int64 per anchor: the matched ground-truth index (>= 0) for a
positive, -1 for background, -2 for ignored (torchvision's Matcher codes).

The reference is a loop over boxes with Python floats.

Shape glossary:
  T: anchors; G: ground-truth boxes
"""
from __future__ import annotations

from functools import partial

import torch

from .core import Component, mistake
from .nms import _iou

BACKGROUND, IGNORED = -1, -2


def label_loops(anchors, gt_boxes, fg_iou_thresh=0.7, bg_iou_thresh=0.3, *, low_quality=True, ties=True,
                to="own_best", fg_at_equal=True, bg_at_equal=False, codes=(BACKGROUND, IGNORED)):
    """(T, 4) anchors, (G, 4) ground truth -> (T,) int64: gt index, -1 background, -2 ignored.
    The keywords switch on known mistakes."""
    A, G = anchors.tolist(), gt_boxes.tolist()
    iou = [[_iou(g, a) for a in A] for g in G]  # iou[i][j]: ground truth i, anchor j
    best_gt = [max(range(len(G)), key=lambda i: (iou[i][j], -i)) if G else 0 for j in range(len(A))]
    out = []
    for j in range(len(A)):
        v = iou[best_gt[j]][j] if G else 0.0
        if G and (v > fg_iou_thresh or (fg_at_equal and v == fg_iou_thresh)):
            out.append(best_gt[j])
        elif v < bg_iou_thresh or (bg_at_equal and v == bg_iou_thresh):
            out.append(codes[0])
        else:
            out.append(codes[1])
    for i in range(len(G) if low_quality else 0):  # after the thresholds, so that they cannot undo it
        top = max(iou[i], default=0.0)
        winners = [j for j in range(len(A)) if iou[i][j] == top] if ties else [iou[i].index(top)]
        for j in winners if top > 0 else ():  # (a ground truth overlapping no anchor: left out)
            out[j] = best_gt[j] if to == "own_best" else i
    return torch.tensor(out, dtype=torch.int64)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


# --- label_anchors --------------------------------------------------------------------------------

LABEL_ANCHORS = Component("label_anchors", "the RPN's anchor labels, with the low-quality rule (Faster R-CNN "
                          "Sec. 3.1.2; Mask R-CNN Sec. 3.1)", {"label_anchors": label_loops}, [
    mistake("a ground truth whose best anchor has IoU < fg_iou_thresh gets no positive anchor: add the low-quality "
            "rule, each ground truth's best anchors are positive, applied after the thresholds so that they "
            "cannot undo it", label_anchors=partial(label_loops, low_quality=False)),
    mistake("only one of a ground truth's equally best anchors is positive; every anchor that reaches its best "
            "IoU is (ties included: 'the anchor/anchors with the highest IoU')",
            label_anchors=partial(label_loops, ties=False)),
    mistake("your background and ignored codes are swapped: background (IoU < bg_iou_thresh) is -1, ignored "
            "(in between) is -2", label_anchors=partial(label_loops, codes=(IGNORED, BACKGROUND))),
    mistake("an anchor with IoU exactly fg_iou_thresh is positive in torchvision's Matcher: IoU >= fg_iou_thresh",
            label_anchors=partial(label_loops, fg_at_equal=False)),
    mistake("an anchor with IoU exactly bg_iou_thresh is ignored, not background: background is IoU < "
            "bg_iou_thresh", label_anchors=partial(label_loops, bg_at_equal=True)),
    mistake("your low-quality anchor is matched to the ground truth it is the best anchor of; torchvision "
            "matches it to its own best ground truth (the largest IoU in its column)",
            label_anchors=partial(label_loops, to="this_gt")),
])


def labels_only(functions, inputs):
    """A measure that keeps positive / background / ignored (1 / -1 / -2) and drops which ground truth."""
    m = functions.label_anchors(*inputs.values())
    return torch.where(m >= 0, 1, m) if isinstance(m, torch.Tensor) else m


GT = [[0.0, 0, 10, 10]]  # one 10 x 10 ground truth: an anchor (0, 0, 10, h) has IoU h / 10 with it


@LABEL_ANCHORS.core("an anchor whose best IoU is >= fg_iou_thresh is positive (its ground truth's index), < "
                    "bg_iou_thresh background (-1), in between ignored (-2) (hand-computed)")
def _(t):
    t.expect("ground truth (0, 0, 10, 10); anchors with IoU 1, 0.8, 0.5, 0.2 and 0 (thresholds 0.7, 0.3)",
             {"anchors": _t([[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 5], [0, 0, 10, 2], [20, 20, 30, 30]]),
              "gt_boxes": _t(GT), "fg_iou_thresh": 0.7, "bg_iou_thresh": 0.3}, [0, 0, -2, -1, -1], exact=True)


@LABEL_ANCHORS.core("a positive anchor is matched to the ground truth it overlaps most")
def _(t):
    t.expect("ground truths (0, 0, 10, 10) and (5, 0, 15, 10); anchor 0 has IoU 0.43 and 0.82 with them, anchor 2 "
             "0.82 and 0.43", {"anchors": _t([[4, 0, 14, 10], [0, 0, 10, 10], [1, 0, 11, 10]]),
                               "gt_boxes": _t([[0, 0, 10, 10], [5, 0, 15, 10]]), "fg_iou_thresh": 0.7,
                               "bg_iou_thresh": 0.3}, [1, 0, 0], exact=True)


@LABEL_ANCHORS.core("low-quality rule: a ground truth's best anchor is positive even below fg_iou_thresh (and below "
                    "bg_iou_thresh), so that every object gets one")
def _(t):
    t.expect("ground truth (0, 0, 10, 10); its best anchor has IoU 0.6 (between the thresholds), the other 0.2",
             {"anchors": _t([[0, 0, 10, 6], [0, 0, 10, 2]]), "gt_boxes": _t(GT), "fg_iou_thresh": 0.7,
              "bg_iou_thresh": 0.3}, [0, -1], exact=True)
    t.expect("the same ground truth; its best anchor has IoU 0.2, the other 0.02",
             {"anchors": _t([[0, 0, 10, 2], [8, 8, 18, 18]]), "gt_boxes": _t(GT), "fg_iou_thresh": 0.7,
              "bg_iou_thresh": 0.3}, [0, -1], exact=True)


@LABEL_ANCHORS.core("low-quality rule, ties: every anchor that reaches a ground truth's best IoU is positive")
def _(t):
    t.expect("ground truth (0, 0, 10, 10); its top and bottom halves both have IoU 0.5, a third anchor 0.2",
             {"anchors": _t([[0, 0, 10, 5], [0, 5, 10, 10], [0, 0, 10, 2]]), "gt_boxes": _t(GT),
              "fg_iou_thresh": 0.7, "bg_iou_thresh": 0.3}, [0, 0, -1], exact=True)


@LABEL_ANCHORS.core("no ground truth: every anchor is background (-1)")
def _(t):
    t.expect("three anchors, (0, 4) gt_boxes", {"anchors": _t([[0, 0, 10, 10], [5, 5, 9, 9], [20, 0, 30, 10]]),
                                                "gt_boxes": _t([]), "fg_iou_thresh": 0.7, "bg_iou_thresh": 0.3},
             [-1, -1, -1], exact=True)


def _random_case(gen, n_anchors=12, n_gt=3):
    xy = torch.randint(0, 16, (n_anchors + n_gt, 2), generator=gen)
    boxes = torch.cat([xy, xy + torch.randint(3, 9, (n_anchors + n_gt, 2), generator=gen)], dim=1).float()
    return boxes[:n_anchors], boxes[n_anchors:]


def _unclear(anchors, gt, thresholds=(0.7, 0.3)) -> bool:
    """An IoU at a threshold (that would test float rounding, not the rule), or a ground truth that overlaps
    no anchor (the contract leaves it open: torchvision then makes every anchor positive, the package none)."""
    ious = [[_iou(g, a) for a in anchors.tolist()] for g in gt.tolist()]
    return any(abs(v - th) < 1e-4 for row in ious for v in row for th in thresholds) or min(map(max, ious)) == 0


@LABEL_ANCHORS.core("random anchors and ground truths: positive / background / ignored as a loop transcription says")
def _(t):
    gen = torch.Generator().manual_seed(0)
    done = 0
    while done < 3:
        anchors, gt = _random_case(gen)
        if _unclear(anchors, gt):
            continue
        t.expect(f"12 random anchors, {len(gt)} random ground truths (1 = positive, -1 background, -2 ignored)",
                 {"anchors": anchors, "gt_boxes": gt, "fg_iou_thresh": 0.7, "bg_iou_thresh": 0.3},
                 measure=labels_only, exact=True)
        done += 1


@LABEL_ANCHORS.convention("an IoU of exactly fg_iou_thresh is positive, exactly bg_iou_thresh is ignored (IoU >= fg "
                          "positive, < bg background: torchvision's Matcher)")
def _(t):
    t.expect("ground truth (0, 0, 10, 10), thresholds 0.75 and 0.25: anchors with IoU 1, 0.75, 0.5, 0.25 and 0.1",
             {"anchors": _t([[0, 0, 10, 10], [0, 0, 10, 7.5], [0, 0, 10, 5], [0, 0, 10, 2.5], [0, 0, 10, 1]]),
              "gt_boxes": _t(GT), "fg_iou_thresh": 0.75, "bg_iou_thresh": 0.25}, [0, 0, -2, -2, -1], exact=True)


@LABEL_ANCHORS.convention("a low-quality anchor is matched to its own best ground truth, which may not be the one it "
                          "is the best anchor of (torchvision's Matcher)")
def _(t):
    t.expect("ground truths (0, 0, 10, 10) and (6, 0, 16, 10); anchor 0 is the first's best (IoU 0.43) but overlaps "
             "the second more (0.67)", {"anchors": _t([[4, 0, 14, 10], [6, 0, 16, 10], [-6, 0, 4, 10]]),
                                        "gt_boxes": _t([[0, 0, 10, 10], [6, 0, 16, 10]]), "fg_iou_thresh": 0.7,
                                        "bg_iou_thresh": 0.3}, [1, 1, -1], exact=True)
    gen = torch.Generator().manual_seed(1)
    anchors, gt = _random_case(gen)
    while _unclear(anchors, gt):
        anchors, gt = _random_case(gen)
    t.expect("12 random anchors, 3 random ground truths", {"anchors": anchors, "gt_boxes": gt, "fg_iou_thresh": 0.7,
                                                            "bg_iou_thresh": 0.3}, exact=True)


@LABEL_ANCHORS.convention("the result is int64 (torch.long)")
def _(t):
    t.expect_dtype("two anchors, one ground truth", {"anchors": _t([[0, 0, 10, 10], [0, 0, 10, 2]]),
                                                     "gt_boxes": _t(GT), "fg_iou_thresh": 0.7, "bg_iou_thresh": 0.3},
                   torch.int64)
