"""The shapes generator's other kinds (star, ring, cross): exact geometry against independent references
(matplotlib's point-in-polygon, the shoelace area, the annulus and cross areas), the classes they make, and
the data record and the flag that name them."""
import math

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from minimaskrcnn import cli
from minimaskrcnn.data import ShapesDataset
from minimaskrcnn.data.shapes import DEFAULT_KINDS, kind_mask
from minimaskrcnn.data.sources import RunData, Shapes, build, source_from_dict, source_to_dict

NEW = ("star", "ring", "cross")


def grid(size: int, step: float = 1.0):
    """Pixel-centre coordinates of a size x size image, sampled every `step` pixels."""
    axis = np.arange(0, size, step) + step / 2
    return np.meshgrid(axis, axis)  # xx, yy


def star_polygon(cx, cy, r_out, r_in):
    """Ten vertices of a point-up five-pointed star, written out here from the trigonometry."""
    points = []
    for k in range(10):
        r = r_out if k % 2 == 0 else r_in
        a = math.radians(-90 + 36 * k)
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def shoelace(points):
    return 0.5 * abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1])))


def test_star_matches_an_independent_point_in_polygon_and_its_area():
    xx, yy = grid(64)
    mask = kind_mask("star", 31.3, 30.7, 50.0, xx, yy)
    r_in = 25.0 * math.cos(math.radians(72)) / math.cos(math.radians(36))
    polygon = star_polygon(31.3, 30.7, 25.0, r_in)
    reference = MplPath(polygon).contains_points(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(xx.shape)
    assert (mask == reference).mean() > 0.998  # the two rules may differ only on pixel centres on the outline
    fine_x, fine_y = grid(64, 0.125)  # area: pixel count on a fine grid against the polygon's exact area
    area = kind_mask("star", 31.3, 30.7, 50.0, fine_x, fine_y).sum() * 0.125 ** 2
    assert area == pytest.approx(shoelace(polygon), rel=0.01)
    assert area < 0.5 * math.pi * 25 ** 2  # a star, not a disc: about 0.36 of its circle


def test_ring_has_a_hole_and_an_annulus_area():
    xx, yy = grid(80, 0.25)
    ring = kind_mask("ring", 40.0, 40.0, 60.0, xx, yy)
    r = np.hypot(xx - 40, yy - 40)
    assert not ring[r < 14.9].any()  # the hole: inner radius 15
    assert ring[(r > 15.1) & (r < 29.9)].all()
    assert not ring[r > 30.1].any()
    assert ring.sum() * 0.25 ** 2 == pytest.approx(math.pi * (30 ** 2 - 15 ** 2), rel=0.01)


def test_cross_is_two_bars():
    xx, yy = grid(60, 0.25)
    cross = kind_mask("cross", 30.0, 30.0, 45.0, xx, yy)  # arms 15 wide, 45 long
    assert cross.sum() * 0.25 ** 2 == pytest.approx(2 * 45 * 15 - 15 * 15, rel=0.01)
    corner = (np.abs(xx - 30) > 7.6) & (np.abs(yy - 30) > 7.6)
    assert not cross[corner].any()  # the four corners of its box are empty
    assert cross[(np.abs(xx - 30) < 7.4) & (np.abs(yy - 30) < 22.4)].all()


def test_dataset_of_new_kinds_names_its_classes_and_draws_them():
    ds = ShapesDataset(30, image_size=96, seed=3, kinds=NEW, min_objects=1, max_objects=1, size_range=(0.4, 0.6))
    assert ds.class_names == ["background", "star", "ring", "cross"] and ds.num_classes == 4
    assert [c["name"] for c in ds.coco_dict()["categories"]] == list(NEW)
    seen = set()
    for i in range(len(ds)):
        _, masks, labels, _ = ds.draw(i)
        (mask,), (label,) = masks, labels  # one shape, nothing occludes it
        seen.add(int(label))
        rows, cols = np.nonzero(mask)
        box_area = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        fill = mask.sum() / box_area
        cy, cx = int((rows.min() + rows.max()) / 2), int((cols.min() + cols.max()) / 2)
        if NEW[label - 1] == "ring":  # hole at the centre; 3/4 of pi/4 of its box
            assert not mask[cy, cx] and fill == pytest.approx(0.75 * math.pi / 4, abs=0.05)
        elif NEW[label - 1] == "cross":  # 5/9 of its box
            assert mask[cy, cx] and fill == pytest.approx(5 / 9, abs=0.05)
        else:  # star: its shoelace area over its box, 0.809 + 1 radii high and 2 sin 72 radii wide
            r_in = math.cos(math.radians(72)) / math.cos(math.radians(36))
            star_fill = shoelace(star_polygon(0, 0, 1, r_in)) / ((1 + math.cos(math.radians(36))) *
                                                                  2 * math.sin(math.radians(72)))
            assert fill == pytest.approx(star_fill, abs=0.05)
    assert seen == {1, 2, 3}


def test_default_kinds_unchanged_and_bad_kinds_refused():
    assert ShapesDataset(2).class_names == ["background", *DEFAULT_KINDS]
    a, b = ShapesDataset(3, seed=5), ShapesDataset(3, seed=5, kinds=NEW)
    assert all((a.draw(i)[2] == b.draw(i)[2]).all() for i in range(3))  # same draws, other shapes
    assert not all((a.draw(i)[1].sum() == b.draw(i)[1].sum()) for i in range(3))
    for bad in (("star", "star"), ("hexagon",), ()):
        with pytest.raises(ValueError, match="shape kinds"):
            ShapesDataset(2, kinds=bad)
    with pytest.raises(ValueError, match="keypoints"):
        ShapesDataset(2, kinds=NEW, keypoints=True)


def test_record_keeps_the_kinds_and_old_records_load():
    data = RunData.shapes(num_images=10, num_val_images=4, image_size=64, kinds=["star", "ring", "cross"])
    assert data.train.kinds == NEW and data.val.kinds == NEW  # held-out shapes of the same kinds
    again = RunData.from_dict(data.to_dict())
    assert again == data
    assert build(again.val).class_names == ["background", *NEW]
    old = {"kind": "shapes", "num_images": 10, "image_size": 64, "seed": 0}  # a record from before kinds
    assert source_from_dict(old).kinds == DEFAULT_KINDS
    assert source_to_dict(Shapes(kinds="star,ring"))["kinds"] == ("star", "ring")


def test_train_flag_names_the_kinds():
    parse = lambda *argv: cli.train_config_from_args(cli.build_parser().parse_args(["train", *argv]))  # noqa: E731
    cfg = parse("--data", "shapes", "--shapes-kinds", "star,ring,cross", "--num-val-images", "5")
    assert cfg.data.train.kinds == NEW and cfg.data.val.kinds == NEW and cfg.config == "cpu_small"
    with pytest.raises(ValueError, match=r"^--shapes-kinds: shape kinds must be distinct names .* got star, moon$"):
        parse("--data", "shapes", "--shapes-kinds", "star,moon")
