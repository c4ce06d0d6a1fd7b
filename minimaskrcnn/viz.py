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


# ------------------------------------------------------------------------------------------------
# COCO annotations as stored, and per-channel activations (notebooks 06 and 07)
# ------------------------------------------------------------------------------------------------


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

    segm = annotation["segmentation"]
    if isinstance(segm, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):  # uncompressed RLE, as crowd regions are stored
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    with warnings.catch_warnings():  # pycocotools' decode trips a numpy-2 DeprecationWarning per call
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


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
            draw_boxes(ax, [[x, y, x + bw, y + bh]], "white", [f"crowd: {name}"], linestyle="--")
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
        ax.set_title(f"ch {c}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig, order.tolist()


# ---------------------------------------------------------------------------------------------------
# Helpers of notebooks 01-04: anchors, per-level maps, and the geometry of RoIPool / RoIAlign.
#
# "Physical" frame of a feature map of stride s: feature cell i covers image pixels [i*s, (i+1)*s), so
# its centre is at image coordinate (i + 0.5) * s. This is the frame draw_feature_grid draws, and the
# one in which RoIAlign with aligned=True samples exactly where the RoI is (Detectron2's argument).
# ---------------------------------------------------------------------------------------------------

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
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def save_thumbnail(fig, path, width: int = 240) -> None:
    """Save `fig` as a PNG about `width` pixels wide (the README's notebook thumbnails)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=width / fig.get_figwidth())


def roialign_sample_points(box, output_size: int, spatial_scale: float, sampling_ratio: int = 2,
                           aligned: bool = True) -> torch.Tensor:
    """Where ops.roi_align reads its bilinear samples for one RoI, in image pixels of the physical frame.

    box: (4,) (x1, y1, x2, y2) image pixels; spatial_scale: 1 / stride. Follows roi_align's own
    conventions (RoIs at least 1x1 cell when not aligned, adaptive grid for sampling_ratio <= 0), then
    maps feature coordinate c to image coordinate (c + 0.5) / spatial_scale: with aligned=True the points
    sit inside the RoI where they should, with aligned=False half a cell further right and down.
    Returns (P * Gy * Q * Gx, 2) float32 (x, y), P = Q = output_size.
    """
    from .ops.roi_align import sample_points  # the op's own sampling rule, not a copy of it

    b = torch.as_tensor(box, dtype=torch.float32).reshape(4) * spatial_scale - (0.5 if aligned else 0.0)
    width, height = b[2] - b[0], b[3] - b[1]
    if not aligned:
        width, height = width.clamp(min=1.0), height.clamp(min=1.0)
    if sampling_ratio > 0:
        gy = gx = sampling_ratio
    else:
        gy, gx = int(torch.ceil(height / output_size)), int(torch.ceil(width / output_size))
    ys, _ = sample_points(b[1:2], height[None], output_size, torch.tensor([gy]), gy)  # (1, P, Gy)
    xs, _ = sample_points(b[0:1], width[None], output_size, torch.tensor([gx]), gx)  # (1, Q, Gx)
    yy, xx = torch.meshgrid(ys.reshape(-1), xs.reshape(-1), indexing="ij")  # (P*Gy, Q*Gx)
    return (torch.stack([xx, yy], dim=-1).reshape(-1, 2) + 0.5) / spatial_scale


def roipool_bins(box, output_size: int, spatial_scale: float, map_size: tuple[int, int]) -> torch.Tensor:
    """RoIPool's two quantizations of one RoI, as image-pixel rectangles in the physical frame.

    box: (4,) (x1, y1, x2, y2) image pixels; map_size: (H, W) of the feature map. The corners are rounded
    to cells, the rounded RoI is cut into output_size^2 bins whose edges are rounded outward (the
    op's own `bin_edges`), and a bin covering cells lo..hi-1 is drawn as pixels [lo * s, hi * s).
    Returns (P, Q, 4) float32 (x1, y1, x2, y2); P = Q = output_size.
    """
    from .ops.roi_pool import bin_edges
    from .ops.rois import round_half_away

    q = round_half_away(torch.as_tensor(box, dtype=torch.float32).reshape(1, 4) * spatial_scale)  # (1, 4) cells
    y_lo, y_hi = bin_edges(q[:, 1], q[:, 3], output_size, map_size[0])  # (1, P)
    x_lo, x_hi = bin_edges(q[:, 0], q[:, 2], output_size, map_size[1])  # (1, Q)
    P = Q = output_size
    bins = torch.stack([x_lo[0][None, :].expand(P, Q), y_lo[0][:, None].expand(P, Q),
                        x_hi[0][None, :].expand(P, Q), y_hi[0][:, None].expand(P, Q)], dim=-1)  # (P, Q, 4)
    return bins.float() / spatial_scale


def draw_rects(ax, rects, edgecolor="tab:red", linewidth: float = 1.0, linestyle="-", facecolor="none",
               alpha: float = 1.0):
    """Draw (..., 4) rectangles (x1, y1, x2, y2) given as pixel edges (e.g. roipool_bins' output)."""
    for x1, y1, x2, y2 in torch.as_tensor(rects).reshape(-1, 4).tolist():
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, edgecolor=edgecolor, facecolor=facecolor,
                               linewidth=linewidth, linestyle=linestyle, alpha=alpha))
    return ax


def coordinate_features(height: int, width: int, stride: float) -> torch.Tensor:
    """A (1, 4, height, width) feature map whose values are positions: channels x, -x, y, -y of each
    cell's centre in image pixels, ((j + 0.5) * stride, (i + 0.5) * stride) for cell (i, j).

    Pooled with an RoI op, it tells which image positions a bin read: for an average (RoIAlign, RoIWarp)
    channel 0 is the mean x read; for a max (RoIPool) channels 0 and 1 give the largest and smallest x.
    """
    x = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    y = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(y, x, indexing="ij")  # (H, W)
    return torch.stack([xx, -xx, yy, -yy])[None]  # (1, 4, H, W)


def bin_centre_offsets(pooled: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """How far each bin's features come from where the bin is, in image pixels.

    pooled: (K, 4, P, Q), an RoI op applied to `coordinate_features`; boxes: (K, 4) the RoIs in image
    pixels. The position read by a bin is ((ch0 - ch1) / 2, (ch2 - ch3) / 2): the mean position for an
    average, the midpoint of the pixels' centres for a max. Returns (K, P, Q, 2) (dx, dy) = read position
    minus the bin's true centre.
    """
    K, _, P, Q = pooled.shape
    read = torch.stack([(pooled[:, 0] - pooled[:, 1]) / 2, (pooled[:, 2] - pooled[:, 3]) / 2], dim=-1)  # (K, P, Q, 2)
    boxes = torch.as_tensor(boxes, dtype=pooled.dtype).reshape(K, 4)
    fy = (torch.arange(P, dtype=pooled.dtype) + 0.5) / P  # (P,) bin centres as fractions of the RoI
    fx = (torch.arange(Q, dtype=pooled.dtype) + 0.5) / Q
    cx = boxes[:, 0, None] + fx[None] * (boxes[:, 2] - boxes[:, 0])[:, None]  # (K, Q)
    cy = boxes[:, 1, None] + fy[None] * (boxes[:, 3] - boxes[:, 1])[:, None]  # (K, P)
    true = torch.stack([cx[:, None, :].expand(K, P, Q), cy[:, :, None].expand(K, P, Q)], dim=-1)  # (K, P, Q, 2)
    return read - true
