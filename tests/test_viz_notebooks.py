"""The viz helpers of notebooks 01-04: hand-computed geometry, and agreement with the RoI ops they describe."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from minimaskrcnn import probes, viz  # noqa: E402
from minimaskrcnn.ops import roi_align, roi_pool  # noqa: E402


def test_coordinate_features_hold_cell_centres_in_image_pixels():
    f = probes.coordinate_features(2, 3, stride=8)
    assert f.shape == (1, 4, 2, 3)
    np.testing.assert_allclose(f[0, 0], [[4, 12, 20], [4, 12, 20]])
    np.testing.assert_allclose(f[0, 1], -f[0, 0])
    np.testing.assert_allclose(f[0, 2], [[4, 4, 4], [12, 12, 12]])
    np.testing.assert_allclose(f[0, 3], -f[0, 2])


def test_roialign_sample_points_by_hand():
    # aligned=True, stride 1: an 8-pixel RoI in 2 bins of 2 points each -> points at 1, 3, 5, 7
    pts = probes.roialign_sample_points((0.0, 0.0, 8.0, 8.0), 2, 1.0, sampling_ratio=2, aligned=True)
    assert pts.shape == (16, 2)
    np.testing.assert_allclose(sorted(set(pts[:, 0].tolist())), [1, 3, 5, 7])
    np.testing.assert_allclose(sorted(set(pts[:, 1].tolist())), [1, 3, 5, 7])
    # aligned=False, stride 2: feature coordinates 0.5 .. 3.5 -> image (c + 0.5) * 2 = 2, 4, 6, 8 (half a cell late)
    pts = probes.roialign_sample_points((0.0, 0.0, 8.0, 8.0), 2, 0.5, sampling_ratio=2, aligned=False)
    np.testing.assert_allclose(sorted(set(pts[:, 0].tolist())), [2, 4, 6, 8])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, -1])
def test_roialign_sample_points_are_where_roi_align_reads(aligned, sampling_ratio):
    # With one point per bin, the op's output on the coordinate map IS the point's position (bilinear
    # interpolation of a linear ramp is exact inside the map).
    stride, box = 4.0, torch.tensor([13.3, 9.1, 47.9, 40.2])
    feats = probes.coordinate_features(16, 16, stride)
    out = roi_align(feats, [box[None]], 3, 1 / stride, 1, aligned)  # (1, 4, 3, 3), one point per bin
    pts = probes.roialign_sample_points(box, 3, 1 / stride, 1, aligned).reshape(3, 3, 2)
    np.testing.assert_allclose(out[0, 0], pts[..., 0], atol=1e-4)
    np.testing.assert_allclose(out[0, 2], pts[..., 1], atol=1e-4)
    if sampling_ratio == -1:  # adaptive grid: the mean of a bin's points is the op's output
        out = roi_align(feats, [box[None]], 3, 1 / stride, -1, aligned)
        pts = probes.roialign_sample_points(box, 3, 1 / stride, -1, aligned)
        g = int(np.sqrt(len(pts) // 9))
        mean_x = pts[:, 0].reshape(3, g, 3, g).mean(dim=(1, 3))
        np.testing.assert_allclose(out[0, 0], mean_x, atol=1e-4)


def test_roipool_bins_by_hand_and_against_roi_pool():
    # box (0, 0, 8, 8) at stride 4 -> cells 0..2 (round(2) = 2 inclusive); 2 bins of 1.5 cells:
    # bin 0 = cells floor(0)..ceil(1.5)-1 = 0..1 -> pixels [0, 8); bin 1 = cells 1..2 -> [4, 12)
    bins = probes.roipool_bins((0.0, 0.0, 8.0, 8.0), 2, 0.25, (16, 16))
    assert bins.shape == (2, 2, 4)
    np.testing.assert_allclose(bins[0, 0], [0, 0, 8, 8])
    np.testing.assert_allclose(bins[1, 1], [4, 4, 12, 12])
    np.testing.assert_allclose(bins[0, 1], [4, 0, 12, 8])
    # roi_pool's max over the coordinate map gives each bin's extreme cell centres: +-half a cell inside
    box = torch.tensor([[21.7, 6.2, 90.4, 55.5]])
    feats = probes.coordinate_features(24, 24, 4.0)
    out = roi_pool(feats, [box], 5, 0.25)[0]  # (4, 5, 5)
    bins = probes.roipool_bins(box[0], 5, 0.25, (24, 24))
    np.testing.assert_allclose(out[0], bins[..., 2] - 2.0)  # largest x centre = right edge - half a cell
    np.testing.assert_allclose(-out[1], bins[..., 0] + 2.0)  # smallest x centre
    np.testing.assert_allclose(out[2], bins[..., 3] - 2.0)
    np.testing.assert_allclose(-out[3], bins[..., 1] + 2.0)


def test_bin_centre_offsets_zero_for_aligned_roialign_and_half_a_cell_without():
    stride = 8.0
    feats = probes.coordinate_features(32, 32, stride)
    boxes = torch.tensor([[30.5, 40.0, 150.2, 101.7], [64.0, 64.0, 200.0, 90.0]])
    off = probes.bin_centre_offsets(roi_align(feats, [boxes], 7, 1 / stride, 2, aligned=True), boxes)
    assert off.shape == (2, 7, 7, 2)
    np.testing.assert_allclose(off, 0.0, atol=1e-4)
    off = probes.bin_centre_offsets(roi_align(feats, [boxes], 7, 1 / stride, 2, aligned=False), boxes)
    np.testing.assert_allclose(off, stride / 2, atol=1e-4)


def test_bin_centre_offsets_roipool_by_hand():
    # box (0, 0, 8, 8) at stride 4, one bin: cells 0..2, centres 2, 6, 10 -> midpoint 6; true centre 4
    feats = probes.coordinate_features(16, 16, 4.0)
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    off = probes.bin_centre_offsets(roi_pool(feats, [box], 1, 0.25), box)
    np.testing.assert_allclose(off.reshape(2), [2.0, 2.0])


def test_draw_anchor_labels_draws_each_kind_in_its_colour():
    anchors = torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6], [3, 3, 7, 7], [4, 4, 8, 8]])
    labels = torch.tensor([1, 0, -1, 0, 0])
    fig, ax = plt.subplots()
    viz.draw_anchor_labels(ax, anchors, labels, num_negatives=2)
    colors = [matplotlib.colors.to_hex(p.get_edgecolor()) for p in ax.patches]
    hexes = {k: matplotlib.colors.to_hex(v) for k, v in viz.ANCHOR_COLORS.items()}
    assert colors.count(hexes["negative"]) == 2
    assert colors.count(hexes["ignored"]) == 1 and colors.count(hexes["positive"]) == 1
    positive = [p for p in ax.patches if matplotlib.colors.to_hex(p.get_edgecolor()) == hexes["positive"]][0]
    assert positive.get_xy() == (-0.5, -0.5)
    plt.close(fig)
    fig, ax = plt.subplots()
    viz.draw_anchor_labels(ax, anchors.repeat(3, 1), labels.repeat(3), num_negatives=0, num_ignored=2)
    colors = [matplotlib.colors.to_hex(p.get_edgecolor()) for p in ax.patches]
    assert colors.count(hexes["ignored"]) == 2 and colors.count(hexes["positive"]) == 3
    assert colors.count(hexes["negative"]) == 0
    plt.close(fig)


def test_show_level_maps_one_panel_per_level_with_the_values(tmp_path):
    maps = {"p2": torch.arange(12.0).reshape(3, 4), "p3": np.ones((2, 2))}
    fig = viz.show_level_maps(maps, colorbar=False)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), maps["p2"].numpy())
    assert fig.axes[1].get_title() == "p3 2x2"
    viz.save_thumbnail(fig, tmp_path / "t" / "thumb.png", width=240)
    assert Image.open(tmp_path / "t" / "thumb.png").size[0] == 240
    plt.close(fig)


def test_draw_rects_uses_pixel_edges():
    fig, ax = plt.subplots()
    viz.draw_rects(ax, torch.tensor([[[0.0, 4.0, 8.0, 12.0]]]))
    (rect,) = ax.patches
    assert rect.get_xy() == (-0.5, 3.5) and rect.get_width() == 8.0 and rect.get_height() == 8.0
    plt.close(fig)
