"""Drawing keypoints and their skeletons (Sec. 5, the paper's Fig. 7): COCO's people or the shapes' corners.

A skeleton is a list of pairs (i, j) of 0-based keypoint indices (the dataset's `ds.skeleton`: data/keypoints.py;
COCO's files count from 1, `COCO_PERSON_SKELETON` of data/keypoints.py is 0-based). A keypoint is drawn when its third
number reaches `threshold`: for ground truth (x, y, v) that is the visibility (v = 0 not labelled, 1 hidden, 2
visible; threshold 1 draws the labelled ones), for predictions the model's keypoint score (its heatmap logit,
"keypoint_scores"). A limb is drawn when both its ends are. Coordinates are pixel-edge image pixels, like the
boxes; matplotlib's image frame puts pixel (0, 0)'s centre at (0, 0), so a point x is drawn at x - 0.5.

Glossary: N instances, K keypoint types.
"""
from __future__ import annotations

import torch

from .data.keypoints import COCO_PERSON_SKELETON  # noqa: F401 (drawn with draw_keypoints(..., skeleton=...))
from .viz import color, draw_detections


def draw_keypoints(ax, keypoints, skeleton=None, scores=None, threshold: float = 1.0, colors=None,
                   markersize: float = 4.0, linewidth: float = 1.5):
    """Draw N instances' keypoints, and their skeleton's limbs, on `ax`.

    keypoints: (N, K, 3) or (K, 3) (x, y, v) image pixels (ground truth) or (x, y, 1) (predictions);
    scores: (N, K) per-keypoint scores that replace the third column for the threshold (predictions'
    "keypoint_scores"), or None; threshold: a keypoint is drawn when its v (or score) >= threshold;
    skeleton: pairs (i, j) of 0-based indices, a limb drawn when both ends are; colors: one per instance
    (default: instance i gets colour i). Returns the Axes.
    """
    keypoints = torch.as_tensor(keypoints).detach().cpu().double()
    keypoints = keypoints.reshape(-1, *keypoints.shape[-2:])  # (K, 3) -> (1, K, 3)
    shown = keypoints[..., 2] if scores is None else torch.as_tensor(scores).detach().cpu().double()
    shown = (shown >= threshold).reshape(keypoints.shape[:2])  # (N, K) bool
    for n, (points, keep) in enumerate(zip(keypoints.numpy(), shown.numpy())):
        c = color(n) if colors is None else colors[n]
        xy = points[:, :2] - 0.5  # (K, 2), pixel-edge -> imshow frame
        for i, j in skeleton or []:
            if keep[i] and keep[j]:
                ax.plot(xy[[i, j], 0], xy[[i, j], 1], "-", color=c, linewidth=linewidth, alpha=0.9)
        if keep.any():
            ax.plot(xy[keep, 0], xy[keep, 1], "o", color=c, markersize=markersize, markeredgecolor="white",
                    markeredgewidth=0.6, linestyle="none")
    return ax


def draw_keypoint_detections(ax, image, detections: dict, class_names=None, skeleton=None,
                             score_thresh: float = 0.5, keypoint_thresh: float = 0.0, mask_threshold: float = 0.5):
    """draw_detections (masks, boxes, tags) plus each shown detection's keypoints and skeleton: those whose
    "keypoint_scores" (heatmap logits) reach `keypoint_thresh`. `detections` as the model returns them, with
    "keypoints" (D, K, 3) and "keypoint_scores" (D, K) for a keypoint model (else draw_detections alone).
    Returns the Axes."""
    draw_detections(ax, image, detections, class_names, score_thresh, mask_threshold)
    if "keypoints" not in detections:
        return ax
    keep = torch.as_tensor(detections["scores"]).cpu() >= score_thresh
    labels = torch.as_tensor(detections["labels"]).cpu()[keep]
    draw_keypoints(ax, torch.as_tensor(detections["keypoints"]).cpu()[keep], skeleton,
                   torch.as_tensor(detections["keypoint_scores"]).cpu()[keep], keypoint_thresh,
                   [color(int(lab)) for lab in labels])
    return ax


def keypoint_grid(images, detections, class_names=None, skeleton=None, score_thresh: float = 0.5, cols: int = 4,
                  path=None, size: float = 2.5):
    """detections_grid with keypoints: a grid of images, their detections and skeletons; saved as PNG when
    `path` is given. Returns the figure."""
    import matplotlib.pyplot as plt

    from .viz import separate_labels

    rows = max(1, (len(images) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, det in zip(axes.flat, images, detections):
        draw_keypoint_detections(ax, image, det, class_names, skeleton, score_thresh)
    fig.tight_layout()
    separate_labels(fig)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
