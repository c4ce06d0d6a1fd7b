"""viz_keypoints: the points and limbs drawn are the keypoints given, at the threshold asked for."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from minimaskrcnn.data import shapes  # noqa: E402
from minimaskrcnn.viz_keypoints import COCO_PERSON_SKELETON, draw_keypoint_detections, draw_keypoints  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "minimaskrcnn" / "data" / "coco_sample" / "annotations"


def lines_and_points(ax):
    """([(x0, y0, x1, y1)] of the 2-point limbs, (P, 2) of the markers) as matplotlib holds them."""
    limbs, points = [], []
    for line in ax.lines:
        xy = np.asarray(line.get_xydata())
        if line.get_marker() == "o":
            points.append(xy)
        else:
            limbs.append(tuple(xy.reshape(-1)))
    return limbs, (np.concatenate(points) if points else np.zeros((0, 2)))


def test_limbs_join_the_shown_keypoints_only():
    torch.manual_seed(0)
    keypoints = torch.rand(2, 4, 3) * 50
    keypoints[..., 2] = torch.tensor([[2, 1, 0, 2], [2, 2, 2, 1]], dtype=torch.float32)  # v
    skeleton = [(0, 1), (1, 2), (2, 3), (3, 0)]
    fig, ax = plt.subplots()
    draw_keypoints(ax, keypoints, skeleton, threshold=2)  # visible ones only
    limbs, points = lines_and_points(ax)
    expect_limbs, expect_points = [], []  # the loop reference: a limb when both ends are visible
    for kp in keypoints.double().numpy():
        for i, j in skeleton:
            if kp[i, 2] >= 2 and kp[j, 2] >= 2:
                expect_limbs.append((kp[i, 0] - 0.5, kp[i, 1] - 0.5, kp[j, 0] - 0.5, kp[j, 1] - 0.5))
        expect_points += [kp[k, :2] - 0.5 for k in range(4) if kp[k, 2] >= 2]
    assert len(limbs) == len(expect_limbs) == 3  # (3, 0) of the first, (0, 1) and (1, 2) of the second
    assert np.allclose(sorted(limbs), sorted(expect_limbs))
    assert np.allclose(points, np.stack(expect_points))
    plt.close(fig)


def test_scores_replace_the_visibility_for_predictions():
    keypoints = torch.tensor([[[10.0, 20.0, 1.0], [30.0, 40.0, 1.0], [50.0, 5.0, 1.0]]])  # (1, 3, 3) predictions
    scores = torch.tensor([[3.0, -1.0, 0.5]])
    fig, ax = plt.subplots()
    draw_keypoints(ax, keypoints, [(0, 1), (0, 2)], scores=scores, threshold=0.0)
    limbs, points = lines_and_points(ax)
    assert np.allclose(points, [[9.5, 19.5], [49.5, 4.5]])
    assert limbs == [(9.5, 19.5, 49.5, 4.5)]  # (0, 2); keypoint 1 scores below the threshold
    plt.close(fig)


def test_coco_skeleton_is_the_sample_files_made_zero_based():
    (person,) = json.loads((SAMPLE / "person_keypoints_val2017.json").read_text())["categories"]
    assert COCO_PERSON_SKELETON == [(a - 1, b - 1) for a, b in person["skeleton"]]


def test_shapes_detections_draw_boxes_and_outlines():
    ds = shapes.ShapesDataset(2, image_size=96, keypoints=True, seed=3)
    image, target = ds[0]
    n = len(target["labels"])
    detections = {"boxes": target["boxes"], "labels": target["labels"], "scores": torch.ones(n),
                  "keypoints": target["keypoints"], "keypoint_scores": target["keypoints"][..., 2] - 1.5}
    fig, ax = plt.subplots()
    draw_keypoint_detections(ax, image, detections, shapes.CLASS_NAMES, ds.skeleton)
    limbs, points = lines_and_points(ax)
    visible = target["keypoints"][..., 2] == 2  # score 0.5 >= 0; hidden ones -0.5 and not drawn
    assert len(points) == int(visible.sum()) > 0
    assert np.allclose(np.sort(points, axis=0), np.sort(target["keypoints"][visible][:, :2].numpy() - 0.5, axis=0))
    assert len(limbs) == sum(bool(visible[n_, i] and visible[n_, j]) for n_ in range(n) for i, j in ds.skeleton)
    assert len(ax.patches) == n  # the boxes
    plt.close(fig)
