"""The viz helpers of notebooks 06 and 07: COCO polygons and crowd regions drawn as stored, and the
activation grid. Expected values are worked out by hand or with numpy, never by the code under test."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from minimaskrcnn import viz  # noqa: E402


def test_draw_polygons_moves_pixel_edge_points_into_the_imshow_frame():
    fig, ax = plt.subplots()
    polys = [[1.0, 1.0, 4.0, 1.0, 4.0, 3.0], [5.0, 5.0, 7.0, 5.0, 7.0, 7.0, 5.0, 7.0]]
    viz.draw_polygons(ax, polys, (1.0, 0.0, 0.0))
    patches = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(patches) == 2
    # matplotlib closes the path by repeating the first point
    np.testing.assert_allclose(patches[0].get_xy()[:3], [[0.5, 0.5], [3.5, 0.5], [3.5, 2.5]])
    np.testing.assert_allclose(patches[1].get_xy()[:4], np.array(polys[1]).reshape(4, 2) - 0.5)
    plt.close(fig)


def test_crowd_mask_decodes_uncompressed_rle_column_major():
    # COCO RLE runs alternate 0s and 1s over the pixels in column-major (Fortran) order:
    # a 3x4 image, counts [2, 3, 7]: pixels 2, 3, 4 are 1, i.e. (row 2, col 0), (0, 1), (1, 1).
    ann = {"segmentation": {"size": [3, 4], "counts": [2, 3, 7]}, "iscrowd": 1}
    expected = np.zeros((3, 4), dtype=bool)
    expected[2, 0] = expected[0, 1] = expected[1, 1] = True
    np.testing.assert_array_equal(viz.crowd_mask(ann, 3, 4), expected)


def test_crowd_mask_rasterizes_a_polygon_square():
    # a square with pixel-edge corners (1, 1) and (4, 4) covers pixels 1..3 in x and y
    ann = {"segmentation": [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]], "iscrowd": 0}
    m = viz.crowd_mask(ann, 6, 6)
    assert m[1:4, 1:4].all() and m.sum() == 9


def test_draw_coco_annotations_darkens_only_the_crowd_and_tags_every_annotation():
    image = np.ones((6, 8, 3), dtype=np.float32)
    crowd = {"segmentation": {"size": [6, 8], "counts": [6, 12, 30]}, "iscrowd": 1, "bbox": [1, 0, 2, 6],
             "category_id": 1}  # columns 1 and 2, all rows
    inst = {"segmentation": [[5.0, 1.0, 7.0, 1.0, 7.0, 3.0]], "iscrowd": 0, "bbox": [5, 1, 2, 2],
            "category_id": 2}
    fig, ax = plt.subplots()
    viz.draw_coco_annotations(ax, image, [crowd, inst], {1: "person", 2: "kite"}, crowd_color=(0, 0, 0),
                              crowd_alpha=0.6)
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown[:, 1:3], 0.4)  # 1 * (1 - 0.6) + 0 * 0.6
    np.testing.assert_allclose(shown[:, [0, 3, 4, 5, 6, 7]], 1.0)  # the polygon instance is not blended in
    assert sorted(t.get_text() for t in ax.texts) == ["crowd: person", "kite"]
    assert len([p for p in ax.patches if isinstance(p, Polygon)]) == 1
    plt.close(fig)


def test_activation_grid_shows_the_most_active_channels_first():
    maps = torch.zeros(5, 4, 4)
    for c, level in enumerate([0.1, 3.0, 0.5, 2.0, -1.0]):
        maps[c] = level
    maps[2, 0, 0] = 100.0  # mean 0.5 + 99.5 / 16 = 6.72: the most active
    fig, order = viz.activation_grid(maps, num=3, cols=2)
    assert order == [2, 1, 3]
    assert sum(len(ax.images) for ax in fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["ch 2", "ch 1", "ch 3"]
    plt.close(fig)


def test_activation_grid_rejects_a_batch():
    with pytest.raises(ValueError, match="maps must be"):
        viz.activation_grid(torch.zeros(2, 3, 4, 4))
