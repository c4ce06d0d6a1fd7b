"""Plotting helpers for the notebooks, the CLI's `predict` and the demo.

Everything here draws on a matplotlib Axes and returns it; nothing here computes detection results or probes
an op (`probes.py` does). Boxes are (x1, y1, x2, y2) in image pixels; matplotlib's image frame puts pixel
(0, 0)'s centre at (0, 0), so a pixel-edge coordinate x is drawn at x - 0.5.

Glossary: N boxes or masks, H, W image size.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

# A qualitative palette: the i-th class (or instance) gets colour i mod len.
PALETTE = np.array(plt.get_cmap("tab10").colors + plt.get_cmap("Set2").colors)


def color(i: int) -> np.ndarray:
    """RGB in [0, 1] for class or instance number i."""
    return PALETTE[int(i) % len(PALETTE)]


def to_numpy_image(image) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] (or an (H, W, 3) array) -> (H, W, 3) float array in [0, 1]."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)  # (3, H, W) -> (H, W, 3)
        image = image.numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    return np.clip(image, 0.0, 1.0)


def show_image(ax, image, title: str | None = None):
    """Draw an image without axes ticks."""
    ax.imshow(to_numpy_image(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_boxes(ax, boxes, colors=None, labels=None, linewidth=1.5, linestyle="-", alpha=1.0):
    """Draw boxes (N, 4), (x1, y1, x2, y2) pixels; `labels` is an optional list of N strings."""
    boxes = torch.as_tensor(boxes).detach().cpu().float().reshape(-1, 4)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        c = color(i) if colors is None else (colors[i] if len(np.shape(colors)) > 1 else colors)
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=c,
                               linewidth=linewidth, linestyle=linestyle, alpha=alpha))
        if labels is not None and labels[i]:
            ax.text(x1 - 0.5, y1 - 1.5, labels[i], fontsize=8, color="white", va="bottom",
                    bbox=dict(facecolor=c, alpha=0.8, pad=1, edgecolor="none"))
    return ax


def overlay_masks(image, masks, colors=None, alpha: float = 0.5, threshold: float = 0.5) -> np.ndarray:
    """Blend binary (or probability, thresholded) masks (N, H, W) onto an image; returns (H, W, 3)."""
    out = to_numpy_image(image).copy()
    masks = torch.as_tensor(masks).detach().cpu().float()
    if masks.ndim == 4:  # (N, 1, H, W) -> (N, H, W)
        masks = masks[:, 0]
    for i, m in enumerate(masks.numpy() >= threshold):
        c = color(i) if colors is None else colors[i]
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(c)
    return out


def draw_detections(ax, image, detections: dict, class_names=None, score_thresh: float = 0.5,
                    mask_threshold: float = 0.5):
    """Draw one image's detections: masks, boxes and "label score" tags.

    detections: "boxes" (D, 4) pixels, "labels" (D,) int64, "scores" (D,), optionally "masks" (D, H, W)
    probabilities. Only detections scoring at least `score_thresh` are drawn; colours follow the class.
    """
    keep = torch.as_tensor(detections["scores"]).cpu() >= score_thresh
    labels = torch.as_tensor(detections["labels"]).cpu()[keep]
    colors = [color(int(lab)) for lab in labels]
    shown = image
    if "masks" in detections and keep.any():
        shown = overlay_masks(image, torch.as_tensor(detections["masks"]).cpu()[keep], colors,
                              threshold=mask_threshold)
    show_image(ax, shown)
    names = [class_names[int(lab)] if class_names else str(int(lab)) for lab in labels]
    scores = torch.as_tensor(detections["scores"]).cpu()[keep].tolist()
    tags = [f"{n} {s:.2f}" for n, s in zip(names, scores)]
    draw_boxes(ax, torch.as_tensor(detections["boxes"]).cpu()[keep], colors, tags)
    return ax


def detections_grid(images, detections, class_names=None, score_thresh: float = 0.5, cols: int = 4,
                    path=None, size: float = 2.5):
    """A grid of images with their detections; saved as PNG when `path` is given. Returns the figure."""
    rows = max(1, (len(images) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, det in zip(axes.flat, images, detections):
        draw_detections(ax, image, det, class_names, score_thresh)
    fig.tight_layout()
    separate_labels(fig)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def separate_labels(fig, steps: int = 4) -> int:
    """Move each box label (a text with a background, as draw_boxes writes) that overlaps an earlier label or
    the panel's title down or up, a label's height at a time, to the nearest free place; hide the labels that
    find none within `steps` heights. Call it once the layout is final: it measures in display pixels.
    Returns how many box labels are hidden."""
    for ax in fig.axes:
        placed = [ax.title.get_window_extent()] if ax.get_title() else []
        for text in [t for t in ax.texts if t.get_visible() and t.get_bbox_patch() is not None]:
            box = text.get_window_extent().padded(2)  # the text's background reaches about 2 px out
            shifts = [0.0] + [sign * k * box.height for k in range(1, steps + 1) for sign in (-1, 1)]
            dy = next((d for d in shifts if not any(box.translated(0, d).overlaps(b) for b in placed)), None)
            if dy is None:
                text.set_visible(False)
                continue
            if dy:  # dy is in display pixels (y up); the label keeps its x
                x, y = text.get_position()
                y = ax.transData.inverted().transform(ax.transData.transform((x, y)) + (0.0, dy))[1]
                text.set_position((x, y))
            placed.append(box.translated(0, dy))
    return sum(not t.get_visible() for ax in fig.axes for t in ax.texts if t.get_bbox_patch() is not None)


def draw_feature_grid(ax, height: int, width: int, stride: float, color_="0.6", linewidth=0.5):
    """Draw the cell boundaries of an (height, width) feature map of the given stride, in image pixels."""
    for i in range(height + 1):
        ax.axhline(i * stride - 0.5, color=color_, linewidth=linewidth)
    for j in range(width + 1):
        ax.axvline(j * stride - 0.5, color=color_, linewidth=linewidth)
    return ax


def draw_bins(ax, box, output_size: int, stride: float = 1.0, edgecolor="tab:blue", linewidth=0.8):
    """Draw the output_size x output_size bins of an RoI `box` given in feature-map cells
    ((x1, y1, x2, y2), continuous), scaled to image pixels by `stride`."""
    x1, y1, x2, y2 = [float(v) for v in box]
    bw, bh = (x2 - x1) / output_size, (y2 - y1) / output_size
    for i in range(output_size):
        for j in range(output_size):
            ax.add_patch(Rectangle(((x1 + j * bw) * stride - 0.5, (y1 + i * bh) * stride - 0.5),
                                   bw * stride, bh * stride, fill=False, edgecolor=edgecolor,
                                   linewidth=linewidth))
    return ax


def plot_loss_curves(records: list[dict], out_path=None, keys=None):
    """Plot the loss components of a training log's records ({"step": .., "loss_*": ..} each), e.g.
    `training.read_records(run / "metrics.jsonl")`."""
    records = [r for r in records if "step" in r]
    keys = keys or sorted({k for r in records for k in r if k.startswith("loss")})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if k in r]
        if pts:
            ax.plot(*zip(*pts), label=k, linewidth=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if out_path is not None:
        fig.savefig(out_path, dpi=100)
    return fig


# ---------------------------------- COCO annotations as stored, and per-channel activations (notebooks 06, 07)


def draw_polygons(ax, polygons, color_=None, linewidth: float = 1.2, alpha: float = 0.35, vertices: bool = True):
    """Draw one COCO polygon segmentation: a list of flat [x1, y1, x2, y2, ...] lists in pixel-edge
    coordinates (the frame of COCO boxes), each filled with `alpha` and outlined; `vertices` marks the points."""
    from matplotlib.patches import Polygon

    c = color(0) if color_ is None else color_
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2) - 0.5  # (P, 2), pixel-edge -> imshow frame
        ax.add_patch(Polygon(xy, closed=True, facecolor=(*c, alpha), edgecolor=c, linewidth=linewidth))
        if vertices:
            ax.plot(xy[:, 0], xy[:, 1], ".", color=c, markersize=2.5)
    return ax


def crowd_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO segmentation given as RLE (compressed or not) or polygons."""
    import warnings

    from pycocotools import mask as mask_utils

    from .data.coco_json import to_rle

    with warnings.catch_warnings():  # pycocotools' decode trips a numpy-2 DeprecationWarning per call
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(to_rle(annotation["segmentation"], height, width)).astype(bool)


def draw_coco_annotations(ax, image, annotations: list[dict], class_names: dict | None = None,
                          crowd_color=(0.1, 0.1, 0.1), crowd_alpha: float = 0.6):
    """Draw one image's COCO annotations as stored in the JSON.

    Instances (iscrowd=0, polygons): filled outlines with their vertices, solid bbox, category tag.
    Crowd regions (iscrowd=1, RLE): the region darkened and hatched, dashed bbox tagged "crowd".
    annotations: COCO dicts with "bbox" [x, y, w, h] (pixels), "segmentation", "iscrowd", "category_id";
    class_names: {category id: name}. Returns the Axes.
    """
    shown = to_numpy_image(image).copy()
    h, w = shown.shape[:2]
    crowds = [a for a in annotations if a.get("iscrowd", 0)]
    for a in crowds:
        m = crowd_mask(a, h, w)
        shown[m] = (1 - crowd_alpha) * shown[m] + crowd_alpha * np.asarray(crowd_color)
    show_image(ax, shown)
    for i, a in enumerate(annotations):
        x, y, bw, bh = a["bbox"]
        name = class_names.get(a["category_id"], str(a["category_id"])) if class_names else str(a["category_id"])
        if a.get("iscrowd", 0):
            m = crowd_mask(a, h, w)
            ax.contourf(m.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
            draw_boxes(ax, [[x, y, x + bw, y + bh]], "black", [f"crowd: {name}"], linestyle="--")  # white text
        else:
            c = color(i)
            if isinstance(a["segmentation"], list):
                draw_polygons(ax, a["segmentation"], c)
            draw_boxes(ax, [[x, y, x + bw, y + bh]], c, [name], linewidth=1.0)
    return ax


def activation_grid(maps, num: int = 16, cols: int = 8, size: float = 1.1, title: str | None = None,
                    cmap: str = "viridis"):
    """A figure of `num` channels of one activation tensor (C, H, W): the channels with the largest mean
    activation, each with its own colour scale (the pattern matters, not the magnitude).
    Returns (figure, channel indices shown, most active first)."""
    maps = torch.as_tensor(maps).detach().cpu().float()
    if maps.ndim != 3:
        raise ValueError(f"maps must be (C, H, W), got shape {tuple(maps.shape)}")
    num = min(num, maps.shape[0])
    order = maps.mean(dim=(1, 2)).argsort(descending=True)[:num]  # (num,) channel indices
    rows = (num + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + (0.3 if title else 0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, c in zip(axes.flat, order.tolist()):
        ax.imshow(maps[c].numpy(), cmap=cmap, interpolation="nearest")
        ax.set_title(f"ch {c}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig, order.tolist()


# ---------------------------------- notebooks 01-04: anchors, per-level maps, RoIPool's bins (what probes.py computes)

ANCHOR_COLORS = {"positive": "limegreen", "ignored": "orange", "negative": "0.6"}


def draw_anchor_labels(ax, anchors, labels, num_negatives: int = 0, num_ignored: int | None = None, seed: int = 0,
                       linewidth: float = 1.0):
    """Draw labelled anchors: positives (label 1) green, ignored (-1) dashed orange, and a random
    `num_negatives` of the negatives (0) thin grey (all of them would hide the image).

    anchors: (T, 4) (x1, y1, x2, y2) image pixels; labels: (T,) int, 1 / 0 / -1 as rpn.label_anchors.
    num_ignored: draw only a random subset of that many ignored anchors (None: all of them).
    """
    anchors = torch.as_tensor(anchors).detach().cpu().float().reshape(-1, 4)
    labels = torch.as_tensor(labels).detach().cpu()
    generator = torch.Generator().manual_seed(seed)

    def some(label, n):  # indices of at most n random anchors with this label
        idx = torch.nonzero(labels == label).squeeze(1)
        return idx if n is None else idx[torch.randperm(idx.numel(), generator=generator)[:n]]

    draw_boxes(ax, anchors[some(0, num_negatives)], ANCHOR_COLORS["negative"], linewidth=0.5 * linewidth)
    draw_boxes(ax, anchors[some(-1, num_ignored)], ANCHOR_COLORS["ignored"], linewidth=linewidth, linestyle="--")
    draw_boxes(ax, anchors[labels == 1], ANCHOR_COLORS["positive"], linewidth=linewidth)
    return ax


def show_level_maps(maps: dict, cmap: str = "viridis", vmin=None, vmax=None, size: float = 2.2,
                    colorbar: bool = True, suptitle: str | None = None):
    """One panel per feature level: maps is {name: (H, W) tensor or array}, e.g. the objectness of each
    FPN level. vmin / vmax fix a common colour scale (default: each panel its own). Returns the figure."""
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps), size), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items()):
        m = torch.as_tensor(m).detach().cpu().float().numpy()
        im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name} {m.shape[0]}x{m.shape[1]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def save_thumbnail(fig, path, width: int = 240) -> None:
    """Save `fig` as a PNG about `width` pixels wide (the README's notebook thumbnails)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=width / fig.get_figwidth())


def draw_rects(ax, rects, edgecolor="tab:red", linewidth: float = 1.0, linestyle="-", facecolor="none",
               alpha: float = 1.0):
    """Draw (..., 4) rectangles (x1, y1, x2, y2) given as pixel edges (e.g. roipool_bins' output)."""
    for x1, y1, x2, y2 in torch.as_tensor(rects).reshape(-1, 4).tolist():
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, edgecolor=edgecolor, facecolor=facecolor,
                               linewidth=linewidth, linestyle=linestyle, alpha=alpha))
    return ax
