"""What each kind of synthetic shape looks like (data/shapes.py draws them): its mask on the pixel grid, and for
the default kinds its keypoints, with the layout, flip pairs, skeleton and OKS sigmas of those keypoints.

The default kinds are the demo's square, circle and triangle; star, ring and cross are new classes for the
fine-tuning study (benchmarks/transfer.py). Masks take the pixel centres' coordinates (xx, yy) and keep the
pixels whose centre lies inside the shape.
"""
from __future__ import annotations

import numpy as np

from .keypoints import flip_pairs_from_names

DEFAULT_KINDS = ("square", "circle", "triangle")
# Every kind the generator draws; a dataset's class k (1..) is its kinds[k - 1]. Star: five points, the inner
# vertices at 0.382 of the outer radius (a regular pentagram's outline). Ring: the inner radius half the outer
# (a hole of a quarter of the disc's area). Cross: two bars a third of the size wide.
KINDS = (*DEFAULT_KINDS, "star", "ring", "cross")
STAR_INNER = 0.381966  # cos(72 deg) / cos(36 deg): the inner vertices of a regular pentagram
KEYPOINT_NAMES = ["square_top_left", "square_top_right", "square_bottom_right", "square_bottom_left",
                  "circle_top", "circle_right", "circle_bottom", "circle_left",
                  "triangle_apex", "triangle_bottom_right", "triangle_bottom_left"]
SLOTS = {1: slice(0, 4), 2: slice(4, 8), 3: slice(8, 11)}  # label -> its keypoint slots
SKELETON = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (8, 9), (9, 10), (10, 8)]  # outlines
FLIP_PAIRS = flip_pairs_from_names(KEYPOINT_NAMES)  # [(0, 1), (2, 3), (5, 7), (9, 10)]
# OKS sigma of every shape keypoint (COCO's people: 0.025 for eyes .. 0.107 for hips, the spread of human clicks).
# These points are exact, so what is left is the pixel grid: a shape is drawn on whole pixels, and its outline in
# the image is only known to half a pixel on each axis (0.7 pixel). With OKS = exp(-d^2 / (2 area (2 sigma)^2)),
# sigma = 0.05 lets that error cost the smallest shapes (triangles of side 0.15 * 128 = 19 pixels, area 184
# pixels^2) 0.13 of OKS (0.87), where COCO's sharpest sigma, 0.025, would cost 0.42: AP would then measure the
# rasterization. At 0.05 a keypoint off by 12% of sqrt(area) still scores 0.5, and one off by 3%, 0.95.
KEYPOINT_SIGMAS = (0.05,) * len(KEYPOINT_NAMES)


def shape_mask(label: int, cx: float, cy: float, size: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """(S, S) bool mask of one shape of the default kinds (label 1 square, 2 circle, 3 triangle); xx, yy are
    pixel-centre coordinates (S, S); size is the side (square, triangle) or diameter (circle) in pixels,
    (cx, cy) the centre of the shape's box."""
    if label not in (1, 2, 3):
        raise ValueError(f"label must be 1 (square), 2 (circle) or 3 (triangle), got {label}")
    return kind_mask(DEFAULT_KINDS[label - 1], cx, cy, size, xx, yy)


def kind_mask(kind: str, cx: float, cy: float, size: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """(S, S) bool mask of one shape of `kind` (KINDS), arguments as shape_mask: size is the side (square,
    triangle, cross) or the outer diameter (circle, ring, star: the circle through its points)."""
    half = size / 2
    if kind == "square":
        return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= half ** 2
    if kind == "triangle":  # upright: apex at the top, base at the bottom of its box
        top = cy - half
        return (yy >= top) & (yy <= cy + half) & (np.abs(xx - cx) <= (yy - top) / 2)
    if kind == "ring":  # a disc with a hole of half its radius
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2
        return (r2 <= half ** 2) & (r2 >= (half / 2) ** 2)
    if kind == "cross":  # a plus sign: a vertical and a horizontal bar, each size/3 wide
        dx, dy = np.abs(xx - cx), np.abs(yy - cy)
        return ((dx <= size / 6) & (dy <= half)) | ((dy <= size / 6) & (dx <= half))
    if kind == "star":
        return inside_polygon(star_vertices(cx, cy, size), xx, yy)
    raise ValueError(f"unknown shape kind {kind!r}; known: {', '.join(KINDS)}")


def star_vertices(cx: float, cy: float, size: float) -> np.ndarray:
    """(10, 2) vertices (x, y) of a five-pointed star, one point straight up: outer radius size / 2, inner
    radius STAR_INNER of it, alternating, 36 degrees apart."""
    angles = np.deg2rad(-90 + 36 * np.arange(10))  # image y points down: -90 degrees is up
    radii = np.where(np.arange(10) % 2 == 0, size / 2, size / 2 * STAR_INNER)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def inside_polygon(vertices: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Bool mask of the points (xx, yy) inside the polygon `vertices` (V, 2), by the even-odd rule: a point is
    inside when a ray to its right crosses the outline an odd number of times."""
    inside = np.zeros(np.shape(xx), dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0)):
        spans = (y1 > yy) != (y2 > yy)  # the edge crosses the point's row
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x1 + (yy - y1) * (x2 - x1) / (y2 - y1)
        inside ^= spans & (xx < x_cross)
    return inside


def shape_keypoints(label: int, cx: float, cy: float, size: float) -> np.ndarray:
    """(n, 2) keypoints (x, y) of one shape, in the order of its slots (module docstring); arguments as shape_mask."""
    h = size / 2
    points = {1: [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)],  # square corners
              2: [(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)],  # circle: top, right, bottom, left
              3: [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]}  # triangle: apex, base right, base left
    return np.array(points[label], dtype=np.float64)


def instance_keypoints(shape: tuple, above: list, image_size: int) -> np.ndarray:
    """(11, 3) float32 keypoints (x, y, v) of one shape (label, cx, cy, size), its own class's slots filled: v = 2,
    or 1 where a shape of `above` (each (label, cx, cy, size)) covers the point, or 0 (and x = y = 0) outside
    the image_size x image_size image. The other slots are (0, 0, 0), not labelled."""
    points = shape_keypoints(*shape)  # (n, 2)
    px, py = points[:, 0], points[:, 1]
    hidden = np.zeros(len(points), dtype=bool)
    for other in above:
        hidden |= shape_mask(*other, px, py)
    inside = (px >= 0) & (px <= image_size) & (py >= 0) & (py <= image_size)
    v = np.where(inside, np.where(hidden, 1, 2), 0)
    out = np.zeros((len(KEYPOINT_NAMES), 3), dtype=np.float32)
    out[SLOTS[shape[0]]] = np.stack([px * (v > 0), py * (v > 0), v], axis=1)
    return out


def check_kinds(kinds) -> tuple[str, ...]:
    """kinds as a tuple of known, distinct kind names (a "star,ring" string too), else a one-line ValueError."""
    kinds = tuple(k.strip() for k in kinds.split(",")) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        got = ", ".join(map(str, kinds)) or "none"
        raise ValueError(f"shape kinds must be distinct names among {', '.join(KINDS)}; got {got}")
    return kinds
