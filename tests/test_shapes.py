"""The synthetic shapes: deterministic per item, exact masks under occlusion, hand-checked geometry, and a
COCO export that CocoDataset reads back identically and that pycocotools scores as AP 1."""
import time

import numpy as np
import pytest
import torch

from minimaskrcnn.data import CocoDataset, ShapesDataset
from minimaskrcnn.data.shapes import shape_mask
from minimaskrcnn.evaluation import detections_to_coco, evaluate_coco

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def same_item(a, b):
    (ia, ta), (ib, tb) = a, b
    return (torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
            and torch.equal(ta["masks"], tb["masks"]) and ta["image_id"] == tb["image_id"])


def test_deterministic_per_item_and_seed():
    a = ShapesDataset(20, seed=3)
    b = ShapesDataset(20, seed=3)
    late = b[17]  # drawn first here, after 17 others there: no hidden state between items
    assert same_item(a[17], late) and same_item(a[17], a[17])
    assert all(same_item(a[i], b[i]) for i in range(5))
    c = ShapesDataset(20, seed=4)
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])


def test_interface():
    ds = ShapesDataset(6, image_size=64)
    image, target = ds[2]
    assert len(ds) == 6 and ds.num_classes == 4
    assert ds.class_names == ["background", "square", "circle", "triangle"]
    assert ds.label_to_cat_id == {1: 1, 2: 2, 3: 3} and ds.image_ids == [1, 2, 3, 4, 5, 6]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    n = len(target["labels"])
    assert n >= 1 and target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].dtype == torch.int64 and set(target["labels"].tolist()) <= {1, 2, 3}
    assert target["masks"].shape == (n, 64, 64) and target["masks"].dtype == torch.uint8
    assert target["image_id"] == 3
    with pytest.raises(IndexError):
        ds[6]


def test_masks_are_exact_under_occlusion():
    """Without noise every pixel has exactly the colour of the instance whose mask holds it, or the
    background's: masks are disjoint, cover every painted pixel, and boxes are the masks' tight boxes."""
    ds = ShapesDataset(60, image_size=64, seed=1, min_objects=3, max_objects=6, noise=0.0)
    overlapping_images = 0
    for i in range(len(ds)):
        image, target = ds[i]
        pixels = image.permute(1, 2, 0).reshape(-1, 3)  # (H*W, 3)
        masks = target["masks"].reshape(len(target["masks"]), -1).bool()  # (N, H*W)
        assert masks.sum(0).max() <= 1  # no pixel belongs to two instances
        assert masks.sum(1).min() > 0
        for k in range(len(masks)):
            assert len(torch.unique(pixels[masks[k]], dim=0)) == 1  # one colour per instance
            rows = np.flatnonzero(target["masks"][k].numpy().any(1))
            cols = np.flatnonzero(target["masks"][k].numpy().any(0))
            assert target["boxes"][k].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        background = pixels[~masks.any(0)]
        assert len(torch.unique(background, dim=0)) == 1
        boxes = target["boxes"]
        lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
        rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
        overlap = (rb - lt).clamp(min=0).prod(-1).fill_diagonal_(0)
        overlapping_images += bool(overlap.max() > 0)
    assert overlapping_images > 10  # occlusion really happens in this sample


def test_shape_geometry_by_hand():
    yy, xx = np.mgrid[0:20, 0:20] + 0.5
    sq = shape_mask(1, 10.0, 10.0, 6.0, xx, yy)  # |x - 10| <= 3: pixel centres 7.5 .. 12.5
    assert np.array_equal(np.argwhere(sq.any(0)).ravel(), np.arange(7, 13)) and sq.sum() == 36
    circle = shape_mask(2, 10.0, 10.0, 10.0, xx, yy)
    assert circle[10, 10] and circle[10, 14] and not circle[10, 15] and not circle[14, 14]
    assert abs(circle.sum() - np.pi * 25) < 8
    tri = shape_mask(3, 10.0, 10.0, 10.0, xx, yy)  # apex at y = 5, base at y = 15, half-width (y - 5) / 2
    assert tri[5:15].sum(1).tolist() == [0, 2, 2, 4, 4, 6, 6, 8, 8, 10] and tri[15:].sum() == 0
    assert np.array_equal(tri, tri[:, ::-1])  # symmetric about x = 10
    with pytest.raises(ValueError, match="label must be"):
        shape_mask(4, 1.0, 1.0, 1.0, xx, yy)


def test_export_reads_back_identically_and_scores_ap_one(tmp_path):
    shapes = ShapesDataset(12, image_size=48, seed=5)
    ann_file = shapes.export_coco(tmp_path, split="val")
    assert ann_file == tmp_path / "annotations" / "instances_val.json"
    coco = CocoDataset(tmp_path, split="val")
    assert coco.class_names == shapes.class_names and coco.label_to_cat_id == shapes.label_to_cat_id
    assert coco.image_ids == shapes.image_ids
    for i in range(len(shapes)):
        assert same_item(shapes[i], coco[i]), i
    # the in-memory ground truth agrees with the targets: area = mask pixels, bbox = tight box
    for ann in shapes.coco.anns.values():
        i = shapes.image_ids.index(ann["image_id"])
        t = shapes[i][1]
        k = [a["id"] for a in shapes.coco.imgToAnns[ann["image_id"]]].index(ann["id"])
        assert ann["area"] == t["masks"][k].sum().item()
        x1, y1, x2, y2 = t["boxes"][k].tolist()
        assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    detections = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                   "masks": t["masks"]} for t in (coco[i][1] for i in range(len(coco)))]
    metrics = evaluate_coco(shapes.coco, detections_to_coco(detections, coco.image_ids, coco.label_to_cat_id))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)


def test_generation_is_fast():
    ds = ShapesDataset(400, image_size=128)
    start = time.process_time()  # CPU time: what a busy machine does not stretch
    for i in range(len(ds)):
        ds[i]
    assert time.process_time() - start < 4.0  # ~0.3 s measured; thousands of images per training run


@pytest.mark.parametrize("kwargs, match", [({"num_images": 0}, "empty dataset"),
                                           ({"num_images": 5, "min_objects": 3, "max_objects": 2}, "min_objects"),
                                           ({"num_images": 5, "image_size": 8}, "image_size"),
                                           ({"num_images": 5, "size_range": (0.5, 0.2)}, "size_range")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesDataset(**kwargs)
