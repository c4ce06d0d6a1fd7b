"""viz.py draws what it is given: check the pixels it blends and the patches it adds."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from minimaskrcnn import viz  # noqa: E402


def test_to_numpy_image_moves_channels_last_and_keeps_values():
    image = torch.rand(3, 5, 7)
    out = viz.to_numpy_image(image)
    assert out.shape == (5, 7, 3)
    np.testing.assert_allclose(out, image.permute(1, 2, 0).numpy())


def test_overlay_masks_blends_only_inside_the_thresholded_mask():
    image = torch.zeros(3, 4, 4)
    masks = torch.zeros(1, 4, 4)
    masks[0, 1:3, 1:3] = 0.7  # above the 0.5 threshold
    masks[0, 0, 0] = 0.4  # below it
    out = viz.overlay_masks(image, masks, colors=[(1.0, 0.0, 0.0)], alpha=0.5)
    expected = np.zeros((4, 4, 3), np.float32)
    expected[1:3, 1:3, 0] = 0.5
    np.testing.assert_allclose(out, expected)


def test_draw_detections_draws_only_boxes_above_the_score_threshold():
    fig, ax = plt.subplots()
    det = {"boxes": torch.tensor([[1.0, 1, 5, 5], [2, 2, 6, 6]]), "labels": torch.tensor([1, 2]),
           "scores": torch.tensor([0.9, 0.3]), "masks": torch.zeros(2, 8, 8)}
    viz.draw_detections(ax, torch.rand(3, 8, 8), det, ["bg", "square", "circle"], score_thresh=0.5)
    rects = [p for p in ax.patches]
    assert len(rects) == 1
    assert rects[0].get_xy() == (0.5, 0.5) and rects[0].get_width() == 4.0
    assert [t.get_text() for t in ax.texts] == ["square 0.90"]
    plt.close(fig)


def test_draw_bins_draws_output_size_squared_bins():
    fig, ax = plt.subplots()
    viz.draw_bins(ax, (1.0, 2.0, 4.5, 6.0), output_size=3, stride=2.0)
    assert len(ax.patches) == 9
    first = ax.patches[0]
    np.testing.assert_allclose(first.get_xy(), (1.5, 3.5))
    np.testing.assert_allclose((first.get_width(), first.get_height()), (3.5 / 3 * 2, 4.0 / 3 * 2))
    plt.close(fig)


def test_plot_loss_curves_draws_the_records_of_a_json_lines_log(tmp_path):
    from minimaskrcnn.training import read_records

    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"step": s, "loss_mask": 1.0 / s, "lr": 0.1}) for s in (1, 2, 3)))
    fig = viz.plot_loss_curves(read_records(log), tmp_path / "curve.png")
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.5, 1.0 / 3])
    assert (tmp_path / "curve.png").stat().st_size > 0
    plt.close(fig)


def test_separate_labels_moves_overlapping_box_labels_apart_and_keeps_the_first():
    fig, ax = plt.subplots(figsize=(3, 3))
    viz.show_image(ax, torch.rand(3, 64, 64), "a title")
    boxes = torch.tensor([[10.0, 20, 40, 50], [11, 21, 41, 51], [12, 20, 42, 50], [50, 50, 60, 60]])
    viz.draw_boxes(ax, boxes, labels=["square 0.99", "circle 0.50", "square 0.40", "far"])
    fig.tight_layout()
    before = [t.get_position() for t in ax.texts]
    assert viz.separate_labels(fig) == 0
    r = fig.canvas.get_renderer()
    extents = [t.get_window_extent(r) for t in ax.texts]
    assert ax.texts[0].get_position() == before[0] and ax.texts[3].get_position() == before[3]  # nothing in the way
    assert all(not a.overlaps(b) for i, a in enumerate(extents) for b in extents[i + 1:])
    assert [t.get_position()[0] for t in ax.texts] == [p[0] for p in before]  # moved up or down only
    assert not any(e.overlaps(ax.title.get_window_extent(r)) for e in extents)
    # with no room to move, the later labels are hidden rather than drawn over the first
    fig2, ax2 = plt.subplots(figsize=(3, 3))
    viz.show_image(ax2, torch.rand(3, 64, 64))
    viz.draw_boxes(ax2, boxes[:3], labels=["a", "b", "c"])
    assert viz.separate_labels(fig2, steps=0) == 2
    assert [t.get_visible() for t in ax2.texts] == [True, False, False]
    plt.close(fig)
    plt.close(fig2)
