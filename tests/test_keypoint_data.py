"""Keypoints in the data and the evaluation (Sec. 5): the shapes' keypoints by hand and against their own masks, the
shipped COCO sample's person keypoints against the JSON read directly, the checks of bad keypoint files, flips that
swap left and right, resizing, and keypoint AP through pycocotools (the ground truth scores 1, a perturbed
prediction scores what COCOeval run here scores)."""
import json

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from minimaskrcnn.config import cpu_small_keypoints
from minimaskrcnn.data import CocoDataset, RandomScale, ShapesDataset, hflip, hflip_keypoints, resize
from minimaskrcnn.data.keypoints import COCO_PERSON_KEYPOINTS, flip_pairs_from_names
from minimaskrcnn.data.shape_kinds import FLIP_PAIRS, KEYPOINT_NAMES, instance_keypoints, shape_keypoints, shape_mask
from minimaskrcnn.evaluation import (KEYPOINT_STAT_NAMES, check_keypoint_data, detections_to_coco, evaluate,
                                     evaluate_coco, format_table, summary_line)
from minimaskrcnn.model import MaskRCNN
from test_coco_dataset import square, write_coco

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ---------------------------------------------------------------- the shapes' keypoints

def test_shape_keypoints_by_hand_lie_on_the_outline():
    assert shape_keypoints(1, 10, 20, 6).tolist() == [[7, 17], [13, 17], [13, 23], [7, 23]]  # square corners
    assert shape_keypoints(2, 10, 20, 6).tolist() == [[10, 17], [13, 20], [10, 23], [7, 20]]  # top right bottom left
    assert shape_keypoints(3, 10, 20, 6).tolist() == [[10, 17], [13, 23], [7, 23]]  # apex, base right, base left
    for label in (1, 2, 3):  # sizes exact in binary, so that the outline is exact too
        points = shape_keypoints(label, 10.5, 20.25, 7.5)
        assert shape_mask(label, 10.5, 20.25, 7.5, *points.T).all()  # on the outline, which counts as inside
        outward = points - [10.5, 20.25]
        outside = points + 0.01 * outward / np.linalg.norm(outward, axis=1, keepdims=True)
        assert not shape_mask(label, 10.5, 20.25, 7.5, *outside.T).any()  # a hundredth of a pixel further: outside


def test_visibility_by_hand():
    """A square at (20, 20) of side 10 under a circle of diameter 8 centred on its top-left corner (15, 15)."""
    out = instance_keypoints((1, 20.0, 20.0, 10.0), [(2, 15.0, 15.0, 8.0)], image_size=64)
    assert out.shape == (len(KEYPOINT_NAMES), 3) and out.dtype == np.float32
    assert out[:4].tolist() == [[15, 15, 1], [25, 15, 2], [25, 25, 2], [15, 25, 2]]  # only the corner under it hidden
    assert not out[4:].any()  # the circle's and triangle's slots: not labelled
    outside = instance_keypoints((3, 30.0, 30.0, 20.0), [], image_size=36)  # base at y = 40, below a 36-pixel image
    assert outside[8:].tolist() == [[30, 20, 2], [0, 0, 0], [0, 0, 0]]


def test_keypoints_are_an_addition():
    """Images, masks and boxes are the same with keypoints on or off: the keypoints draw no random number."""
    plain, with_kp = ShapesDataset(40, seed=3), ShapesDataset(40, seed=3, keypoints=True)
    for i in range(len(plain)):
        (a, ta), (b, tb) = plain[i], with_kp[i]
        assert torch.equal(a, b) and all(torch.equal(ta[k], tb[k]) for k in ("boxes", "labels", "masks"))
        assert "keypoints" not in ta and tb["keypoints"].shape == (len(tb["labels"]), 11, 3)
    assert plain.num_keypoints == 0 and with_kp.num_keypoints == 11 and with_kp.flip_pairs == FLIP_PAIRS
    assert FLIP_PAIRS == [(0, 1), (2, 3), (5, 7), (9, 10)] and len(with_kp.keypoint_sigmas) == 11


def test_visibility_agrees_with_the_drawn_masks():
    """A hidden keypoint (v = 1) has pixels of an instance drawn after it within 2 pixels (targets list instances
    bottom first); a visible one (v = 2) pixels of its own instance, but for the rare corner that a shape drawn
    later just misses (its own pixels about it are that shape's). 2 pixels, not 1: a triangle's apex is so sharp
    that its first row of pixels can start 1.5 pixels below it. Only the instance's own class's slots are
    labelled, and every one of them is (nothing is outside the image)."""
    ds = ShapesDataset(150, image_size=64, seed=4, min_objects=2, max_objects=5, keypoints=True)
    seen, grazed = {1: 0, 2: 0}, 0
    slots = {1: range(0, 4), 2: range(4, 8), 3: range(8, 11)}
    for i in range(len(ds)):
        t = ds.load_target(i)
        masks = t["masks"].numpy().astype(bool)
        for n, (label, kp) in enumerate(zip(t["labels"].tolist(), t["keypoints"].numpy())):
            assert (kp[:, 2] > 0).tolist() == [k in slots[label] for k in range(11)]
            for x, y, v in kp[kp[:, 2] > 0]:
                near = np.zeros_like(masks[0])  # the pixels within 2 pixels of the point
                near[max(int(y) - 2, 0):int(y) + 3, max(int(x) - 2, 0):int(x) + 3] = True
                own, later = (masks[n] & near).any(), (masks[n + 1:].any(axis=0) & near).any()
                assert later if v == 1 else own or later, (i, n, x, y, v)
                grazed += bool(v == 2 and not own)
                seen[int(v)] += 1
    assert seen[1] > 100 and seen[2] > 1000 and grazed <= 0.01 * seen[2], (seen, grazed)  # 177, 1608, 4 measured


def test_a_flip_swaps_left_and_right_keypoints_of_every_class():
    ds = ShapesDataset(30, seed=5, keypoints=True)
    for i in range(len(ds)):
        image, target = ds[i]
        _, flipped = hflip(image, target, ds.flip_pairs)
        for label, kp in zip(target["labels"].tolist(), flipped["keypoints"]):
            x = kp[:, 0]
            if label == 1:  # the mirrored square's top-left corner is still slot 0, left of slot 1
                assert x[0] < x[1] and x[3] < x[2]
            elif label == 2:  # the circle's left point left of its right point
                assert x[7] < x[5]
            else:  # the triangle's base left corner left of its base right corner
                assert x[10] < x[9]


def test_hflip_keypoints_by_hand_and_twice_is_the_identity():
    kp = torch.tensor([[[2.0, 3.0, 2], [8.0, 5.0, 1], [0.0, 0.0, 0], [4.0, 4.0, 2]]])
    out = hflip_keypoints(kp, 10, [(0, 1), (2, 3)])
    assert out.tolist() == [[[2.0, 5.0, 1], [8.0, 3.0, 2], [6.0, 4.0, 2], [0.0, 0.0, 0]]]
    assert torch.equal(hflip_keypoints(out, 10, [(0, 1), (2, 3)]), kp)
    image, target = ShapesDataset(1, 32, keypoints=True)[0]
    with pytest.raises(ValueError, match="hflip: the target has keypoints.*pass flip_pairs"):
        hflip(image, target)
    with pytest.raises(ValueError, match=r"hflip: flip_pairs entry \(3, 11\) is not two different keypoint indices "
                                         r"in 0\.\.10"):
        hflip(image, target, [(3, 11)])
    with pytest.raises(ValueError, match="flip_pairs names keypoint 1 twice"):
        hflip(image, target, [(0, 1), (1, 2)])


def test_resize_and_scale_jitter_keep_keypoints_on_their_shapes():
    image, target = ShapesDataset(1, 40, seed=2, keypoints=True)[0]
    _, out = resize(image, target, (80, 60))  # y x2, x x1.5
    torch.testing.assert_close(out["keypoints"], target["keypoints"] * torch.tensor([1.5, 2.0, 1.0]))
    torch.manual_seed(0)
    _, jittered = RandomScale(0.5, 1.5)(image, target)
    scale = jittered["boxes"][0, 2] / target["boxes"][0, 2]  # the same factor on both axes (up to rounding)
    labelled = target["keypoints"][..., 2] > 0
    torch.testing.assert_close(jittered["keypoints"][labelled][:, :2], target["keypoints"][labelled][:, :2] * scale,
                               rtol=0.05, atol=0.5)


def test_export_with_keypoints_reads_back_identically_and_scores_keypoint_ap_one(tmp_path):
    shapes = ShapesDataset(12, image_size=48, seed=5, keypoints=True)
    shapes.export_coco(tmp_path, split="val")
    coco = CocoDataset(tmp_path, split="val")
    assert coco.keypoint_names == KEYPOINT_NAMES and coco.flip_pairs == shapes.flip_pairs
    assert coco.skeleton == shapes.skeleton and coco.keypoint_sigmas is None  # not COCO's people: none known
    for i in range(len(shapes)):
        assert torch.equal(coco[i][1]["keypoints"], shapes[i][1]["keypoints"]), i
    detections = [dict(t, scores=torch.ones(len(t["labels"]))) for t in (shapes.load_target(i) for i in range(12))]
    results = detections_to_coco(detections, shapes.image_ids, shapes.label_to_cat_id)
    metrics = evaluate_coco(shapes.coco, results, iou_types=("keypoints",), keypoint_sigmas=shapes.keypoint_sigmas)
    assert metrics["keypoints"]["AP"] == pytest.approx(1.0) and set(metrics["keypoints"]) == set(KEYPOINT_STAT_NAMES)


# ---------------------------------------------------------------- COCO's person keypoints (the shipped sample)

@pytest.fixture(scope="module")
def people(coco_root):
    ann_file = coco_root / "annotations" / "person_keypoints_val2017.json"
    return CocoDataset(coco_root, "val2017", ann_file=ann_file), json.loads(ann_file.read_text())


def test_person_keypoints_match_the_json(people):
    ds, raw = people
    (person,) = raw["categories"]
    assert ds.num_keypoints == 17 and tuple(ds.keypoint_names) == COCO_PERSON_KEYPOINTS == tuple(person["keypoints"])
    assert ds.skeleton == [(a - 1, b - 1) for a, b in person["skeleton"]]
    order = list(range(17))
    for i, j in ds.flip_pairs:
        order[i], order[j] = j, i
    assert order == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # torchvision references' flip_inds
    assert np.allclose(ds.keypoint_sigmas, COCOeval(iouType="keypoints").params.kpt_oks_sigmas)  # pycocotools'
    labelled = 0
    for i, image_id in enumerate(ds.image_ids):
        anns = [a for a in raw["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        t = ds.load_target(i)
        assert t["keypoints"].dtype == torch.float32 and t["keypoints"].shape == (len(anns), 17, 3)
        for kp, a in zip(t["keypoints"], anns):
            assert kp.reshape(-1).tolist() == a["keypoints"] and int((kp[:, 2] > 0).sum()) == a["num_keypoints"]
            labelled += a["num_keypoints"] > 0
    assert labelled >= 10  # the sample's val2017 images hold 10 people with keypoints


def test_ground_truth_scores_keypoint_ap_one_and_a_perturbed_one_what_cocoeval_says(people):
    """Every person predicted with its own keypoints. One whose keypoints nobody labelled gets them at its box
    centre, as a model's always lie in its box: COCOeval then matches it to its own ignored region instead of
    counting a false positive. Then the keypoints moved by a few pixels, against COCOeval run here."""
    ds, _ = people
    targets = [ds.load_target(i) for i in range(len(ds))]
    detections = []
    for t in targets:
        centre = ((t["boxes"][:, :2] + t["boxes"][:, 2:]) / 2)[:, None].expand(-1, 17, -1)  # (G, 17, 2)
        xy = torch.where(t["keypoints"][..., 2:] > 0, t["keypoints"][..., :2], centre)
        detections.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.linspace(1, 0.5, len(xy)),
                           "keypoints": torch.cat([xy, torch.ones_like(xy[..., :1])], dim=2)})
    results = detections_to_coco(detections, ds.image_ids, ds.label_to_cat_id)
    metrics = evaluate_coco(ds.coco, results, iou_types=("bbox", "keypoints"), keypoint_sigmas=ds.keypoint_sigmas)
    assert all(v == pytest.approx(1.0) for k, v in metrics["keypoints"].items() if k not in ("APl", "ARl")), metrics

    g = torch.Generator().manual_seed(0)
    for d in detections:
        d["keypoints"][..., :2] += 4 * torch.randn(d["keypoints"][..., :2].shape, generator=g)
    results = detections_to_coco(detections, ds.image_ids, ds.label_to_cat_id)
    ours = evaluate_coco(ds.coco, results, iou_types=("keypoints",), keypoint_sigmas=ds.keypoint_sigmas)["keypoints"]
    ev = COCOeval(ds.coco, ds.coco.loadRes([{k: r[k] for k in ("image_id", "category_id", "keypoints", "score")}
                                            for r in results]), "keypoints")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert [ours[name] for name in KEYPOINT_STAT_NAMES] == pytest.approx(list(ev.stats))
    assert 0.1 < ours["AP"] < 0.95  # the perturbation is felt, but does not wipe out every match


def test_bad_keypoint_files_name_the_file_and_the_annotation(tmp_path):
    category = {"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2]]}
    ann = {"id": 21, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 20], "segmentation": [square(10, 5, 20)],
           "keypoints": [12, 8, 2, 14, 7, 1, 0, 0, 0], "num_keypoints": 2}
    ann_file = write_coco(tmp_path, annotations=[ann], categories=[category])
    ds = CocoDataset(tmp_path, "val")
    assert ds.flip_pairs == [(1, 2)] and ds.load_target(0)["keypoints"][0, 1].tolist() == [14, 7, 1]
    cases = [({"keypoints": [12, 8, 2, 14, 7, 1]}, r"annotation 21 has keypoints of 6 values; expected 9 numbers"),
             ({"keypoints": [12, 8, 3, 14, 7, 1, 0, 0, 0]}, r"annotation 21 has keypoint visibility 3; v must be 0"),
             ({"num_keypoints": 3}, r"annotation 21 has num_keypoints 3 but 2 labelled keypoints \(v > 0\)")]
    for change, message in cases:
        ann_file.write_text(json.dumps(dict(json.loads(ann_file.read_text()), annotations=[{**ann, **change}])))
        with pytest.raises(ValueError, match=r"^[^\n]*instances_val\.json: " + message + r"[^\n]*$"):
            CocoDataset(tmp_path, "val")
    write_coco(tmp_path, annotations=[ann], categories=[category])
    with pytest.raises(ValueError, match=r"instances_val\.json: flip_pairs entry \(0, 3\) is not two different"):
        CocoDataset(tmp_path, "val", flip_pairs=[(0, 3)])
    with pytest.raises(ValueError, match=r"instances_val\.json: keypoint_sigmas must be 3 positive numbers"):
        CocoDataset(tmp_path, "val", keypoint_sigmas=(0.1, 0.1))
    dog = {"id": 2, "name": "dog", "keypoints": ["nose", "tail"]}
    write_coco(tmp_path, annotations=[ann], categories=[category, dog])
    with pytest.raises(ValueError, match=r"instances_val\.json: categories name different numbers of keypoints"):
        CocoDataset(tmp_path, "val")


def test_what_an_export_leaves_out_is_filled_in(tmp_path):
    category = {"id": 1, "name": "hand", "keypoints": ["left_tip", "right_tip"]}
    anns = [{"id": 31, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 20], "segmentation": [square(10, 5, 20)],
             "keypoints": [12, 8, 2, 0, 0, 0]},  # no num_keypoints
            {"id": 32, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "segmentation": [square(0, 0, 9)]}]
    write_coco(tmp_path, annotations=anns, categories=[category])
    ds = CocoDataset(tmp_path, "val")
    assert ds.coco.anns[31]["num_keypoints"] == 1 and ds.coco.anns[32]["num_keypoints"] == 0
    assert ds.load_target(0)["keypoints"].tolist() == [[[12, 8, 2], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]
    assert flip_pairs_from_names(ds.keypoint_names) == ds.flip_pairs == [(0, 1)]


# ---------------------------------------------------------------- evaluating a keypoint model

def test_a_keypoint_model_is_evaluated_on_keypoint_data_only():
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small_keypoints())
    with pytest.raises(ValueError, match=r"^the model predicts 11 keypoint types but ShapesDataset\(.*\) has no "
                                         r"keypoints: evaluate it on keypoint data [^\n]*$"):
        evaluate(model, ShapesDataset(2, 64), progress=False)
    with pytest.raises(ValueError, match="has 17 keypoint types"):
        check_keypoint_data(type("People", (), {"num_keypoints": 17})(), 11)
    with pytest.raises(ValueError, match="gives no OKS sigmas for its 11 keypoint types"):
        check_keypoint_data(type("Mine", (), {"num_keypoints": 11, "keypoint_sigmas": None})(), 11)
    metrics = evaluate(model, ShapesDataset(2, 64, keypoints=True), progress=False, verbose=False)
    assert set(metrics) == {"bbox", "segm", "keypoints"} and 0 <= metrics["keypoints"]["AP"] <= 1


def test_table_and_summary_line_with_keypoints():
    metrics = {"bbox": dict.fromkeys(["AP", "AP50", "AP75", "APs", "APm", "APl"], 0.8),
               "keypoints": dict.fromkeys(KEYPOINT_STAT_NAMES, 0.655)}
    assert summary_line(metrics, 61) == "box AP 0.800 | keypoint AP 0.655 | 1m01s"
    table = format_table(metrics).splitlines()
    assert table[1].split() == ["box"] + ["80.0"] * 6
    assert table[2].split() == ["keypoint", "65.5", "65.5", "65.5", "-", "65.5", "65.5"]  # no APs for keypoints


def test_a_checkpoint_record_rebuilds_the_keypoint_shapes():
    from minimaskrcnn.config import to_dict
    from minimaskrcnn.data.sources import RunData, Shapes, build, describe, evaluation_set, source_from_dict, source_to_dict

    record = describe(ShapesDataset(5, 48, seed=2, keypoints=True))
    assert record == Shapes(5, 48, 2, keypoints=True)
    assert source_to_dict(record) == {"kind": "shapes", "num_images": 5, "image_size": 48, "seed": 2, "keypoints": True,
                                      "kinds": ("square", "circle", "triangle")}
    assert source_from_dict({"kind": "shapes", "num_images": 5, "image_size": 48, "seed": 2}).keypoints is False  # older
    assert build(record).num_keypoints == 11 and not describe(ShapesDataset(5, 48)).keypoints
    data = RunData(Shapes(5, 48, seed=2)).to_dict()  # recorded without keypoints: the model says it predicts them
    state = {"model_config": to_dict(cpu_small_keypoints()), "data": data}
    held_out = evaluation_set(state, "x.pt", data="shapes", num_images=3)
    assert held_out.num_keypoints == 11 and (held_out.seed, held_out.image_size, len(held_out)) == (3, 48, 3)
    assert evaluation_set({}, "x.pt", data="shapes", num_images=3).num_keypoints == 0
