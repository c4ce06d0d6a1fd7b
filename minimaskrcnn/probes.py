"""Geometry probes of the RoI ops (notebooks 03 and 08): where RoIAlign reads its samples, which cells
RoIPool's bins cover, how far each bin's features come from the bin, and what that does to a mask that goes
through a pooler and back into the image (no training involved).

The "physical" frame of a feature map of stride s: feature cell i covers image pixels [i*s, (i+1)*s), so its
centre is at image coordinate (i + 0.5) * s. This is the frame `viz.draw_feature_grid` draws, and the one in
which RoIAlign with aligned=True samples exactly where the RoI is (Detectron2's argument). Each probe uses the
op's own sampling or rounding rule, never a copy of it.

Glossary: K RoIs; P, Q output height and width (bins); Gy, Gx sampling points per bin; N objects of an
image; H, W image size; M the RoI output side (14, the mask branch's).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .config import RoIHeadsConfig
from .ops import box_area
from .poolers import pool_level
from .transform import paste_masks, resize_boxes, resize_image, resize_masks, resized_size


def roialign_sample_points(box, output_size: int, spatial_scale: float, sampling_ratio: int = 2,
                           aligned: bool = True) -> torch.Tensor:
    """Where ops.roi_align reads its bilinear samples for one RoI, in image pixels of the physical frame.

    box: (4,) (x1, y1, x2, y2) image pixels; spatial_scale: 1 / stride. Follows roi_align's own
    conventions (RoIs at least 1x1 cell when not aligned, adaptive grid for sampling_ratio <= 0), then
    maps feature coordinate c to image coordinate (c + 0.5) / spatial_scale: with aligned=True the points
    sit inside the RoI where they should, with aligned=False half a cell further right and down.
    Returns (P * Gy * Q * Gx, 2) float32 (x, y), P = Q = output_size.
    """
    from .ops.roi_align import sample_grid  # the op's own sampling rule, not a copy of it

    rois = torch.cat([torch.zeros(1), torch.as_tensor(box, dtype=torch.float32).reshape(4)])[None]  # (1, 5)
    (ys, valid_y), (xs, valid_x) = sample_grid(rois, spatial_scale, (output_size, output_size), sampling_ratio,
                                               aligned)  # (1, P, Gy), (1, Q, Gx)
    ys, xs = ys[valid_y], xs[valid_x]  # (P*Gy,), (Q*Gx,)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (P*Gy, Q*Gx)
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


def box_sizes(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) (x1, y1, x2, y2) pixels -> (N,) sqrt(w * h) in pixels, the size FPN's level choice (Eq. 1) uses."""
    return box_area(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)).sqrt()


def scaled_to(image_size: tuple[int, int], min_size: int | None, max_size: int = 1333) -> tuple[int, int]:
    """(H, W) after the model's resizing (shorter side min_size, longer at most max_size); as is for None."""
    return tuple(image_size) if min_size is None else resized_size(tuple(image_size), min_size, max_size)


def object_sizes(dataset, min_size: int | None = None, max_size: int = 1333) -> torch.Tensor:
    """sqrt(w * h) of every object's box in `dataset` (CocoDataset, ShapesDataset), in pixels of the image
    resized as the model resizes it (`transform.resized_size`: the paper's min_size=800, max_size=1333),
    or as stored when min_size is None. Returns (total objects,) float32."""
    sizes = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        size = tuple(image.shape[-2:])
        sizes.append(box_sizes(resize_boxes(target["boxes"], size, scaled_to(size, min_size, max_size))))
    return torch.cat(sizes)


class MaskRoundTrip(NamedTuple):
    iou: torch.Tensor  # (N,) mask IoU of the round trip with the original mask
    cells: torch.Tensor  # (N,) object size in feature cells: sqrt(w * h) of its box / stride
    masks: torch.Tensor  # (N, H, W) bool, the masks that came back


def mask_round_trip(masks: torch.Tensor, boxes: torch.Tensor, stride: int, pooler: str = "align",
                    output_size: int = 14, sampling_ratio: int = 2, aligned: bool = True,
                    threshold: float = 0.5) -> MaskRoundTrip:
    """Ground-truth masks through a perfect backbone, an RoI pooler and the model's pasting, back to the image.

    masks: (N, H, W) {0, 1} at image resolution; boxes: (N, 4) (x1, y1, x2, y2) image pixels, the RoIs.
      1. the feature map of stride s: each mask averaged over s x s cells (zero-padded to a multiple of s),
         the fraction of each cell the object covers, what a perfect backbone would give;  (N, 1, H/s, W/s)
      2. each object's box pooled from its own map to M x M with `pooler` ("pool", "warp", "align"), through
         `poolers.pool_level`, the model's own dispatch; avg mode, `sampling_ratio` as the model's default;
      3. pasted into the image at the box with `transform.paste_masks`, as the model pastes its masks;
      4. thresholded at `threshold` (>=, as the evaluation binarizes), compared with the original mask.
    aligned=True by default: aligned=False reads every sample half a cell down and right, an offset a trained
    mask head learns to undo but this probe, which has no weights, would count as error.
    """
    masks = torch.as_tensor(masks)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    N, H, W = masks.shape
    truth = masks > 0  # (N, H, W)
    padded = F.pad(truth.float(), (0, -W % stride, 0, -H % stride))  # (N, H', W'), multiples of s
    features = F.avg_pool2d(padded[:, None], stride)  # (N, 1, H'/s, W'/s): coverage of each cell
    rois = torch.cat([torch.arange(N, dtype=torch.float32)[:, None], boxes], dim=1)  # (N, 5): object i, map i
    cfg = RoIHeadsConfig(pooler=pooler, sampling_ratio=sampling_ratio, aligned=aligned)
    pooled = pool_level(features, rois, output_size, stride, cfg)[:, 0]  # (N, M, M)
    back = paste_masks(pooled, boxes, (H, W)) >= threshold  # (N, H, W)
    inter = torch.count_nonzero((back & truth).flatten(1), dim=1)  # (N,)
    union = torch.count_nonzero(back.flatten(1), dim=1) + torch.count_nonzero(truth.flatten(1), dim=1) - inter
    return MaskRoundTrip(inter / union.clamp(min=1), box_sizes(boxes) / stride, back)


def resize_sample(image: torch.Tensor, target: dict, min_size: int | None, max_size: int = 1333):
    """One dataset item as the model's transform resizes it: image (3, H, W) bilinear, target "masks" (N, H, W)
    nearest neighbour, "boxes" (N, 4) scaled. Returns (image, masks, boxes); unchanged for min_size None."""
    old = tuple(image.shape[-2:])
    new = scaled_to(old, min_size, max_size)
    if new == old:
        return image, target["masks"], target["boxes"]
    return resize_image(image, new), resize_masks(target["masks"], new), resize_boxes(target["boxes"], old, new)


def round_trip_dataset(dataset, strides=(4, 8, 16, 32), poolers=("pool", "align"), min_size: int | None = None,
                       max_size: int = 1333, **kwargs) -> dict:
    """`mask_round_trip` for every object of every image of `dataset`, at every stride, with every pooler.

    Images are first resized to min_size / max_size (`resize_sample`; None: as stored). Returns
    {"size": (N,) sqrt(w * h) pixels at that scale, "image": (N,) index of each object's image,
    "iou": {(pooler, stride): (N,)}}; an object's size in cells at stride s is size / s. kwargs go to
    mask_round_trip.
    """
    sizes, images, ious = [], [], {(p, s): [] for p in poolers for s in strides}
    for i in range(len(dataset)):
        _, masks, boxes = resize_sample(*dataset[i], min_size, max_size)
        sizes.append(box_sizes(boxes))
        images.append(torch.full((len(boxes),), i))
        for p in poolers:
            for s in strides:
                ious[p, s].append(mask_round_trip(masks, boxes, s, p, **kwargs).iou)
    return {"size": torch.cat(sizes), "image": torch.cat(images), "iou": {k: torch.cat(v) for k, v in ious.items()}}


def binned_median(x: torch.Tensor, y: torch.Tensor, edges, min_count: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Median of y in each bin [edges[i], edges[i+1]) of x that holds at least min_count points.
    Returns (bin centres (geometric mean of the edges, for a log axis), medians), bins with too few left out."""
    edges = torch.as_tensor(edges, dtype=torch.float32)
    which = torch.bucketize(x, edges, right=True) - 1  # (N,) bin index, -1 or len(edges) - 1 outside
    keep = [b for b in range(len(edges) - 1) if int((which == b).sum()) >= min_count]
    centres = torch.stack([(edges[b] * edges[b + 1]).sqrt() for b in keep]) if keep else torch.zeros(0)
    medians = torch.stack([y[which == b].quantile(0.5) for b in keep]) if keep else torch.zeros(0)
    return centres, medians
