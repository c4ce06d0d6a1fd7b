"""COCO evaluation: the ground truth scored as predictions gives AP 1 on the real COCO images, empty results
give 0, a hand-computed IoU gives the AP it must, and results are in the server's JSON format."""
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from minimaskrcnn.data import CocoDataset, coco_from_dict
from minimaskrcnn.evaluation import (STAT_NAMES, detections_to_coco, encode_masks, evaluate_coco, format_table,
                                     summary_line)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def ground_truth_as_detections(ds):
    """Each image's training target as a detection dict, every score 1 (masks through the RLE path)."""
    detections, image_ids = [], []
    for i in range(len(ds)):
        t = ds.load_target(i)
        detections.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                           "masks": t["masks"].float()})
        image_ids.append(t["image_id"])
    return detections, image_ids


def test_ground_truth_scores_ap_one_on_real_coco(coco_root, tmp_path):
    ds = CocoDataset(coco_root, split="val2017")
    detections, image_ids = ground_truth_as_detections(ds)
    results = detections_to_coco(detections, image_ids, ds.label_to_cat_id)
    n_crowd = sum(a["iscrowd"] for a in ds.coco.anns.values())
    assert n_crowd > 0 and len(results) == len(ds.coco.anns) - n_crowd  # crowd regions are not predicted
    before = json.dumps(results)
    metrics = evaluate_coco(ds.coco, results, out_json=tmp_path / "results.json")
    assert json.dumps(results) == before  # the caller's results are not modified
    for iou_type in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            assert metrics[iou_type][name] == pytest.approx(1.0), (iou_type, name)
    # the written file is the server format, and pycocotools reads it back as results
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    assert len(ds.coco.loadRes(str(tmp_path / "results.json")).anns) == len(results)


def test_empty_results_give_zeros(coco_root, tmp_path):
    ds = CocoDataset(coco_root, split="val2017")
    results = detections_to_coco([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                                   "scores": torch.zeros(0), "masks": torch.zeros(0, 5, 5)}], [ds.image_ids[0]],
                                 ds.label_to_cat_id)
    assert results == []
    metrics = evaluate_coco(ds.coco, results, out_json=tmp_path / "empty.json")
    assert set(metrics) == {"bbox", "segm"} and set(metrics["segm"]) == set(STAT_NAMES)
    assert all(v == 0.0 for m in metrics.values() for v in m.values())
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def one_box_ground_truth():
    """One 100x100 image with one 100x100 object (category id 5), as a COCO ground truth."""
    rle = mask_utils.encode(np.asfortranarray(np.ones((100, 100), dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return coco_from_dict({
        "images": [{"id": 7, "file_name": "x.png", "height": 100, "width": 100}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [0, 0, 100, 100], "area": 10000.0,
                         "segmentation": rle, "iscrowd": 0}],
        "categories": [{"id": 5, "name": "thing"}]})


def test_hand_computed_iou_062_gives_ap_03():
    """A detection covering rows 0..61 of the object: IoU 0.62 for both box and mask, so it is a true
    positive at the IoU thresholds .50, .55, .60 and a false positive at the other 7: AP = 3/10."""
    mask = torch.zeros(1, 100, 100)
    mask[0, :62] = 0.9
    det = {"boxes": torch.tensor([[0.0, 0.0, 100.0, 62.0]]), "labels": torch.tensor([1]),
           "scores": torch.tensor([0.8]), "masks": mask}
    results = detections_to_coco([det], [7], {1: 5})
    metrics = evaluate_coco(one_box_ground_truth(), results)
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert m["AP"] == pytest.approx(0.3) and m["AP50"] == pytest.approx(1.0) and m["AP75"] == 0.0, iou_type
        assert m["APs"] == -1.0 and m["APl"] == pytest.approx(0.3)  # no small ground truth: pycocotools' -1
    # wrong class: no match at all
    results = detections_to_coco([dict(det, labels=torch.tensor([2]))], [7], {1: 5, 2: 6})
    assert evaluate_coco(one_box_ground_truth(), results)["bbox"]["AP"] == 0.0


def test_result_format_and_mask_threshold():
    probs = torch.tensor([[[0.2, 0.6, 0.5], [0.49, 0.9, 0.0]]])  # (1, 2, 3)
    results = detections_to_coco([{"boxes": torch.tensor([[1.0, 0.0, 3.0, 2.0]]), "labels": torch.tensor([2]),
                                   "scores": torch.tensor([0.25]), "masks": probs[:, None]}], [42],
                                 {1: 10, 2: 20})
    (r,) = results
    assert r["image_id"] == 42 and r["category_id"] == 20 and r["score"] == 0.25
    assert r["bbox"] == [1.0, 0.0, 2.0, 2.0]  # x, y, w, h
    assert isinstance(r["segmentation"]["counts"], str) and r["segmentation"]["size"] == [2, 3]
    json.dumps(results)
    decoded = mask_utils.decode({"size": [2, 3], "counts": r["segmentation"]["counts"].encode()})
    assert decoded.tolist() == [[0, 1, 1], [0, 1, 0]]  # probabilities >= 0.5
    no_masks = detections_to_coco([{"boxes": torch.zeros(1, 4), "labels": torch.tensor([1]),
                                    "scores": torch.tensor([1.0])}], [1], {1: 10})
    assert "segmentation" not in no_masks[0]
    assert encode_masks(torch.zeros(0, 4, 4)) == []


def test_bad_results_are_named():
    det = {"boxes": torch.zeros(1, 4), "labels": torch.tensor([3]), "scores": torch.tensor([1.0])}
    with pytest.raises(ValueError, match=r"image 9: labels \[3\] are not in label_to_cat_id"):
        detections_to_coco([det], [9], {1: 10})
    with pytest.raises(ValueError, match="2 detection dicts but 1 image_ids"):
        detections_to_coco([det, det], [9], {3: 10})
    with pytest.raises(ValueError, match="lack 'scores'"):
        detections_to_coco([{"boxes": torch.zeros(1, 4), "labels": torch.tensor([3])}], [9], {3: 10})
    results = detections_to_coco([det], [12345], {3: 5})
    with pytest.raises(ValueError, match=r"image ids not in the ground truth: \[12345\]"):
        evaluate_coco(one_box_ground_truth(), results)


def test_table_and_summary_line():
    metrics = {"bbox": dict.fromkeys(STAT_NAMES, 0.8125), "segm": dict.fromkeys(STAT_NAMES, 0.79)}
    metrics["segm"]["APs"] = -1.0
    assert summary_line(metrics, 581) == "box AP 0.812 | mask AP 0.790 | 9m41s"
    assert re.fullmatch(r"box AP \d\.\d{3} \| mask AP \d\.\d{3}", summary_line(metrics))
    table = format_table(metrics).splitlines()
    assert table[0].split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert table[1].split() == ["box"] + ["81.2"] * 6
    assert table[2].split() == ["mask", "79.0", "79.0", "79.0", "-", "79.0", "79.0"]


def test_coco_from_dict_is_a_plain_pycocotools_coco(tmp_path):
    gt = one_box_ground_truth()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt.dataset))
    ref = COCO(str(path))
    assert ref.anns == gt.anns and ref.imgs == gt.imgs and ref.cats == gt.cats


# ---------------------------------------------------------------- the ground truth is the file as given

def box_det(x1, y1, x2, y2, label, score, h, w):
    """A detection whose mask fills its box (pixels x1 <= col < x2, y1 <= row < y2, in whole pixels)."""
    mask = torch.zeros(h, w)
    mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1
    return (torch.tensor([x1, y1, x2, y2], dtype=torch.float32), label, score, mask)


def awkward_export(root):
    """An export with what the training cleaning drops but COCOeval keeps: an annotation whose polygon is 0.5
    pixels wide at the image border, a tiny crowd region (0.5 pixels wide), a collinear (zero-area) polygon and
    a polygon with an odd number of coordinates beside a good one. Returns (ann_file, image folder, detections
    in dataset order)."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    Image.new("RGB", (60, 40)).save(root / "images" / "a.png")
    Image.new("RGB", (30, 30)).save(root / "images" / "b.png")
    sq = lambda x, y, s: [x, y, x + s, y, x + s, y + s, x, y + s]  # noqa: E731
    ann = lambda i, img, cat, bbox, segm, area, crowd=0: {  # noqa: E731
        "id": i, "image_id": img, "category_id": cat, "bbox": bbox, "segmentation": segm, "area": area,
        "iscrowd": crowd}
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 60},
                       {"id": 2, "file_name": "b.png", "height": 30, "width": 30}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
            "annotations": [
                ann(1, 1, 3, [10, 5, 20, 20], [sq(10, 5, 20)], 400.0),
                ann(2, 1, 7, [59.5, 0, 0.5, 10], [[59.5, 0, 60, 0, 60, 10, 59.5, 10]], 5.0),  # at the border
                ann(3, 1, 3, [20.5, 30, 0.5, 8], [[20.5, 30, 21, 30, 21, 38, 20.5, 38]], 4.0, crowd=1),
                ann(4, 1, 7, [35, 5, 10, 10], [sq(35, 5, 10), [0, 0, 4, 4, 5]], 100.0),  # odd coordinates
                ann(5, 1, 3, [5, 35, 20, 0], [[5, 35, 15, 35, 25, 35]], 0.0),  # collinear
                ann(6, 2, 7, [5, 5, 15, 15], [sq(5, 5, 15)], 225.0)]}
    ann_file = root / "labels.json"
    ann_file.write_text(json.dumps(data))
    dets = [[box_det(10, 5, 30, 25, 1, 0.9, 40, 60), box_det(59, 0, 60, 10, 2, 0.8, 40, 60),
             box_det(20, 30, 21, 38, 1, 0.7, 40, 60), box_det(35, 5, 45, 15, 2, 0.6, 40, 60),
             box_det(5, 34, 25, 36, 1, 0.3, 40, 60)],
            [box_det(5, 5, 20, 20, 2, 0.95, 30, 30), box_det(0, 0, 10, 10, 2, 0.5, 30, 30)]]
    dets = [{"boxes": torch.stack([d[0] for d in ds]), "labels": torch.tensor([d[1] for d in ds]),
             "scores": torch.tensor([d[2] for d in ds]), "masks": torch.stack([d[3] for d in ds])} for ds in dets]
    return ann_file, root / "images", dets


class Replay(torch.nn.Module):
    """Eval-mode stand-in that answers the images, in order, with the given detections."""

    def __init__(self, detections, num_classes):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.detections = list(detections)
        heads = type("Heads", (), {"mask_threshold": 0.5})()
        self.config = type("Config", (), {"num_classes": num_classes, "roi_heads": heads})()

    def forward(self, images, targets=None):
        return type("Output", (), {"detections": [self.detections.pop(0) for _ in images]})()


def cocoeval_on_the_file(ann_file, results_file) -> dict:
    """pycocotools alone, on the original file: {iou_type: stats (12,)}, bbox left out of the segm results (as
    detectron2's COCOEvaluator does: pycocotools would take a result's area from its box)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    results = json.loads(results_file.read_text())
    stats = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        for iou_type in ("bbox", "segm"):
            dt = gt.loadRes([{k: v for k, v in r.items() if not (iou_type == "segm" and k == "bbox")}
                             for r in results])
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate(), ev.accumulate(), ev.summarize()
            stats[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    return stats


def test_evaluate_equals_cocoeval_on_the_file_as_given(tmp_path, capsys, monkeypatch):
    """detectron2's COCOEvaluator scores against the original file; the cleaning (zero-area and odd polygons
    dropped) is for the training targets only. Today's ground truth lost annotations 2, 3 and 5."""
    from minimaskrcnn import cli, predict
    from minimaskrcnn.evaluation import evaluate

    ann_file, images, dets = awkward_export(tmp_path / "export")
    with pytest.warns(UserWarning, match="left out"):
        ds = CocoDataset(ann_file=ann_file, image_dir=images)
    assert sorted(ds.coco.anns) == [1, 2, 3, 4, 5, 6]
    assert [len(ds.load_target(i)["labels"]) for i in range(2)] == [2, 1]  # training: annotations 1, 4 and 6
    metrics = evaluate(Replay(dets, 3), ds, out_json=tmp_path / "api.json", progress=False, verbose=False)
    assert metrics == cocoeval_on_the_file(ann_file, tmp_path / "api.json")

    monkeypatch.setattr(predict, "model_from_checkpoint",
                        lambda *a, **k: (Replay(dets, 3), {"class_names": ["background", "cat", "dog"]}))
    with pytest.warns(UserWarning, match="left out"):
        assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "x.pt"), "--annotations", str(ann_file),
                         "--images", str(images), "--out", str(tmp_path / "cli.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    reference = cocoeval_on_the_file(ann_file, tmp_path / "cli.json")
    assert printed[:3] == format_table(reference).splitlines()
    assert printed[-1].startswith(summary_line(reference) + " | ")
    assert reference["bbox"]["AP"] != reference["segm"]["AP"]  # the case is not degenerate


def test_evaluate_on_two_files_that_share_a_name_writes_two_results_files(tmp_path, capsys, monkeypatch):
    """Both used to be written to results_instances.json next to the checkpoint, the second replacing the first."""
    import shutil

    from minimaskrcnn import cli, predict

    ann_file, images, dets = awkward_export(tmp_path / "export")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(ann_file, tmp_path / folder / "instances.json")
    other = json.loads(ann_file.read_text())
    other["annotations"] = other["annotations"][:1]  # b's ground truth differs: so do its scores
    (tmp_path / "b" / "instances.json").write_text(json.dumps(other))
    monkeypatch.setattr(predict, "model_from_checkpoint",
                        lambda *a, **k: (Replay(dets, 3), {"class_names": ["background", "cat", "dog"]}))
    checkpoint, written = tmp_path / "run" / "last.pt", []
    checkpoint.parent.mkdir()
    for k, folder in enumerate(("a", "b", "a")):  # the same file again: the same name (replacing it: --overwrite)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--annotations",
                             str(tmp_path / folder / "instances.json"), "--images", str(images)]
                            + ["--overwrite"] * (k == 2)) == 0
        out = capsys.readouterr().out
        written.append(Path(re.search(r"^results: (.*)$", out, re.M).group(1)))
        assert summary_line(cocoeval_on_the_file(tmp_path / folder / "instances.json", written[-1])) in out
    assert written[0] != written[1] and written[2] == written[0]
    assert sorted(p for p in checkpoint.parent.iterdir() if p.is_file()) == sorted(written[:2])
    moved = list(checkpoint.parent.glob("replaced-*/*"))  # the first results of a, moved aside by --overwrite
    assert [p.name for p in moved] == [written[0].name]
    assert re.fullmatch(r"results_instances_[0-9a-f]{8}\.json", written[0].name)
