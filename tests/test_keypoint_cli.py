"""The keypoint branch through the command line and the training pipeline: train --data shapes --keypoints,
evaluate (keypoint AP beside box and mask AP; no mask AP without the mask branch), predict (keypoints listed and
drawn), checkpoints that record the layout, training flips that swap left and right keypoints (against a loop in
this test), and the one-line errors of keypoints without keypoint data."""
import json
import re

import pytest
import torch
from PIL import Image

from minimaskrcnn import cli, config, training
from minimaskrcnn.checkpoint import read_checkpoint
from minimaskrcnn.data import ShapesDataset
from minimaskrcnn.data import shapes as shapes_lib
from minimaskrcnn.data.sources import RunData
from minimaskrcnn.training.datasets import build_datasets

SUMMARY = re.compile(r"^box AP \d\.\d{3} \| mask AP \d\.\d{3} \| keypoint AP \d\.\d{3} \| \d+m\d{2}s$")
TINY = ["--num-images", "8", "--image-size", "64", "--iters", "3", "--batch-size", "2", "--no-progress",
        "--log-every", "1"]


def parse_train(*argv):
    return cli.train_config_from_args(cli.build_parser().parse_args(["train", *argv]))


def test_keypoints_flag_names_the_shapes_with_keypoints_and_their_preset():
    cfg = parse_train("--data", "shapes", "--keypoints", "--num-images", "50")
    assert cfg.data == RunData.shapes(50, keypoints=True) and cfg.config == "cpu_small_keypoints"
    assert parse_train("--data", "shapes").data.train.keypoints is False
    own = parse_train("--annotations", "person_keypoints_x.json", "--images", "img", "--config", "keypoint_r50_fpn")
    assert own.config == "keypoint_r50_fpn"
    with pytest.raises(ValueError, match=r"^--keypoints goes with --data shapes; COCO-format data has keypoints "
                                         r"when its JSON does"):
        parse_train("--annotations", "a.json", "--images", "img", "--keypoints")


def test_a_keypoint_preset_on_data_without_keypoints_is_one_line(tmp_path, capsys):
    assert cli.main(["train", "--data", "shapes", "--config", "cpu_small_keypoints", *TINY,
                     "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: model preset cpu_small_keypoints (--config) learns keypoints but the data Shapes(")
    assert "has none" in err and not (tmp_path / "run" / "last.pt").exists()


def test_training_flips_swap_left_and_right_keypoints():
    """build_datasets' flip against a loop: x -> W - x for labelled keypoints, and each flip pair swapped."""
    cfg = training.TrainConfig(data=RunData.shapes(12, 0, image_size=64, keypoints=True), flip=True)
    train, _ = build_datasets(cfg)
    plain = ShapesDataset(12, 64, keypoints=True)
    assert train.transforms.flip_pairs == shapes_lib.FLIP_PAIRS == [(0, 1), (2, 3), (5, 7), (9, 10)]
    torch.manual_seed(0)
    flipped = 0
    for i in range(12):
        (image, target), (image0, target0) = train[i], plain[i]
        if torch.equal(image, image0):
            assert torch.equal(target["keypoints"], target0["keypoints"])
            continue
        assert torch.equal(image, image0.flip(-1))
        flipped += 1
        expected = target0["keypoints"].clone()
        for n in range(expected.shape[0]):
            for k in range(expected.shape[1]):
                x, y, v = target0["keypoints"][n, k].tolist()
                partner = k
                for a, b in shapes_lib.FLIP_PAIRS:
                    partner = b if k == a else a if k == b else partner
                expected[n, partner] = torch.tensor([64 - x if v > 0 else 0.0, y if v > 0 else 0.0, v])
        torch.testing.assert_close(target["keypoints"], expected)
        assert (target["keypoints"][..., 2] > 0).any()
    assert 0 < flipped < 12


@pytest.mark.slow
def test_train_evaluate_predict_a_keypoint_model_on_shapes(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", "shapes", "--keypoints", "--num-val-images", "4", *TINY,
                     "--out", str(run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]), out[-1]
    state = read_checkpoint(run / "last.pt")
    assert state["model_config"]["roi_heads"]["num_keypoints"] == 11
    layout = state["keypoints"]
    assert layout["names"] == shapes_lib.KEYPOINT_NAMES and layout["sigmas"] == list(shapes_lib.KEYPOINT_SIGMAS)
    assert [tuple(p) for p in layout["skeleton"]] == shapes_lib.SKELETON
    assert [tuple(p) for p in layout["flip_pairs"]] == shapes_lib.FLIP_PAIRS
    assert layout["class_keypoints"] == {1: [0, 1, 2, 3], 2: [4, 5, 6, 7], 3: [8, 9, 10]}

    assert cli.main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", "shapes", "--num-images", "4"]) == 0
    assert SUMMARY.match(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((run / "results_shapes_4.json").read_text())
    assert results and all(len(r["keypoints"]) == 33 for r in results)

    plain = ShapesDataset(3, 64, seed=9)  # the same classes, no keypoints
    ann = plain.export_coco(tmp_path / "plain")  # the JSON, images in plain/train
    folder = tmp_path / "plain"
    assert cli.main(["evaluate", "--checkpoint", str(run / "last.pt"), "--annotations", str(ann),
                     "--images", str(folder / "train")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ann) in err and "has no keypoints" in err

    image = tmp_path / "shape.png"
    Image.fromarray(ShapesDataset(1, 64, seed=5).load_image(0)).save(image)
    assert cli.main(["predict", "--checkpoint", str(run / "last.pt"), str(image), "--out", str(tmp_path / "pred"),
                     "--score-thresh", "0"]) == 0
    listed = json.loads((tmp_path / "pred" / "predictions.json").read_text())[0]["detections"]
    assert listed and all(len(d["keypoints"]) == 11 and all(len(k) == 3 for k in d["keypoints"]) for d in listed)
    assert Image.open(tmp_path / "pred" / "shape_pred.png").size == (64, 64)


@pytest.mark.slow
def test_a_keypoint_only_model_has_no_mask_ap(tmp_path, capsys):
    model_config = config.cpu_small_keypoints()
    model_config.roi_heads.mask_branch = False
    cfg = training.TrainConfig(data=RunData.shapes(6, 3, image_size=64, keypoints=True), iters=2, batch_size=2,
                               out=str(tmp_path / "run"), progress=False, config="cpu_small_keypoints")
    training.train(cfg, model_config=model_config)
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "run" / "last.pt")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"^box AP \d\.\d{3} \| keypoint AP \d\.\d{3} \| \d+m\d{2}s$", last), last


def test_bad_keypoint_data_stops_train_before_any_work(tmp_path, capsys):
    """A bad annotation, and held-out keypoints without OKS sigmas (an export of the shapes read back names none):
    one line naming the file, before a step is taken or a file written."""
    ann = ShapesDataset(4, 64, keypoints=True).export_coco(tmp_path / "kp")
    run = tmp_path / "run"
    argv = ["train", "--annotations", str(ann), "--images", str(tmp_path / "kp" / "train"), "--config",
            "cpu_small_keypoints", "--iters", "1", "--batch-size", "2", "--no-progress", "--out", str(run)]
    assert cli.main([*argv, "--val-annotations", str(ann), "--val-images", str(tmp_path / "kp" / "train")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gives no OKS sigmas for its 11 keypoint types" in err and str(ann) in err
    assert not (run / "last.pt").exists()  # refused before training, not after it
    data = json.loads(ann.read_text())
    data["annotations"][0]["keypoints"][2] = 5  # a visibility outside 0-2
    ann.write_text(json.dumps(data))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {ann}: annotation {data['annotations'][0]['id']} "
                                                         f"has keypoint visibility 5")
    assert not run.exists() or not any(run.iterdir())


def test_coco_person_keypoints_train_with_the_keypoint_preset(coco_root):
    """--annotations person_keypoints_*.json --config keypoint_r50_fpn: people, 17 keypoints, COCO's flip pairs, no
    mask branch (torchvision's keypointrcnn); the flip swaps left and right as torchvision's references do."""
    ann = coco_root / "annotations" / "person_keypoints_val2017.json"
    cfg = parse_train("--annotations", str(ann), "--images", str(coco_root / "val2017"), "--config", "keypoint_r50_fpn")
    train, _ = build_datasets(cfg)
    model_cfg = training.build_model_config(cfg, train.num_classes, train.num_keypoints)
    assert (model_cfg.num_classes, model_cfg.roi_heads.num_keypoints, model_cfg.roi_heads.mask_branch) == (2, 17, False)
    order = list(range(17))
    for i, j in train.transforms.flip_pairs:
        order[i], order[j] = j, i
    assert order == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # torchvision references' flip_inds
