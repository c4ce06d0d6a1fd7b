"""Plotting helpers for the notebooks, the CLI's `predict` and the demo.

Everything here draws on a matplotlib Axes and returns it; nothing here computes detection results.
Boxes are (x1, y1, x2, y2) in image pixels; matplotlib's image frame puts pixel (0, 0)'s centre at (0, 0),
so a pixel-edge coordinate x is drawn at x - 0.5.

Glossary: N boxes or masks, H, W image size.
"""
from __future__ import annotations

import json
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
            ax.text(x1 - 0.5, y1 - 1.5, labels[i], fontsize=7, color="white", va="bottom",
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
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


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


def plot_loss_curves(log_path, out_path=None, keys=None):
    """Plot the loss components of a JSON-lines training log (one {"step": .., "loss_*": ..} per line)."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
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
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if out_path is not None:
        fig.savefig(out_path, dpi=100)
    return fig
