"""Your own dataset: a CVAT-style COCO export (one JSON, one image folder) built here, trained on through the
command line and the Python API; the checkpoint remembers the data, so `evaluate` and `train --resume` reuse it."""
import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from minimaskrcnn import cli, training
from minimaskrcnn.checkpoint import read_checkpoint, save_checkpoint
from minimaskrcnn.training.sampler import ResumableSampler
from minimaskrcnn.data import CocoDataset

SIZE = 96


def cvat_export(root, num_images=8, seed=0):
    """What CVAT's "COCO 1.0" export writes: annotations/instances_default.json and images/, category ids from 1,
    an `attributes` dict per annotation, empty license and url fields, rectangles as `"segmentation": []`. Here:
    squares and triangles drawn as polygons, one image in a subfolder, one image without objects, one rectangle."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    images, annotations = [], []
    for i in range(1, num_images + 1):
        name = f"frame_{i:03d}.jpg" if i != 2 else f"part2/frame_{i:03d}.jpg"
        image = Image.fromarray(rng.integers(90, 110, (SIZE, SIZE, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        for k in range(0 if i == num_images else 1 + i % 2):  # the last image has no objects
            s, x, y = int(rng.integers(24, 40)), int(rng.integers(0, 50)), int(rng.integers(0, 50))
            category = 1 + (i + k) % 2
            poly = ([x, y, x + s, y, x + s, y + s, x, y + s] if category == 1
                    else [x + s / 2, y, x + s, y + s, x, y + s])
            draw.polygon(poly, fill=(220, 40, 40) if category == 1 else (40, 40, 220))
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": category,
                                "segmentation": [poly], "area": 0.0, "bbox": [x, y, s, s], "iscrowd": 0,
                                "attributes": {"occluded": False}})
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / "images" / name, quality=95)
        images.append({"id": i, "width": SIZE, "height": SIZE, "file_name": name, "license": 0,
                       "flickr_url": "", "coco_url": "", "date_captured": 0})
    annotations.append({"id": len(annotations) + 1, "image_id": 1, "category_id": 1, "segmentation": [],
                        "area": 100.0, "bbox": [0, 0, 10, 10], "iscrowd": 0, "attributes": {"occluded": False}})
    for a in annotations:
        a.pop("area") if a["id"] % 3 == 0 else None  # some exporters leave out the area
    data = {"licenses": [{"name": "", "id": 0, "url": ""}], "info": {"contributor": "", "version": ""},
            "categories": [{"id": 1, "name": "square", "supercategory": ""},
                           {"id": 2, "name": "triangle", "supercategory": ""}],
            "images": images, "annotations": annotations}
    ann_file = root / "annotations" / "instances_default.json"
    ann_file.write_text(json.dumps(data))
    return ann_file, root / "images"


@pytest.fixture
def export(tmp_path):
    return cvat_export(tmp_path / "cvat")


def test_the_export_reads_back_as_drawn(export):
    ann_file, images = export
    with pytest.warns(UserWarning, match=r"left out 1 annotations \(1 with no valid polygon left\)"):
        ds = CocoDataset(ann_file=ann_file, image_dir=images)
    assert len(ds) == 8 and ds.class_names == ["background", "square", "triangle"]
    image, target = ds[1]  # the image in a subfolder
    assert image.shape == (3, SIZE, SIZE) and ds.image_path(1).parent.name == "part2"
    raw = json.loads(ann_file.read_text())
    polygons = [a["segmentation"][0] for a in raw["annotations"] if a["image_id"] == 2]
    assert target["masks"].shape[0] == len(polygons) and target["labels"].tolist()
    for mask, poly in zip(target["masks"], polygons):  # each mask covers its polygon's drawn pixels
        xs, ys = poly[0::2], poly[1::2]
        assert mask.sum() > 0.8 * 0.5 * (max(xs) - min(xs)) * (max(ys) - min(ys))
        inside = mask.nonzero()
        assert inside[:, 1].min() >= min(xs) - 1 and inside[:, 1].max() <= max(xs) + 1
    assert all("area" in a for a in ds.coco.dataset["annotations"])


CPU_SMALL_96 = ["--config", "cpu_small", "--min-size", str(SIZE), "--max-size", str(SIZE), "--batch-size", "2",
                "--log-every", "1", "--warmup-iters", "1", "--no-progress", "--workers", "0"]


def test_train_evaluate_and_resume_on_an_export_through_the_cli(export, tmp_path, capsys):
    ann_file, images = export
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped rectangle, tested above
        assert cli.main(["train", "--annotations", str(ann_file), "--images", str(images),
                         "--val-annotations", str(ann_file), "--val-images", str(images),
                         "--iters", "6", "--stop-at", "4", "--out", str(run), *CPU_SMALL_96]) == 0
        state = read_checkpoint(run / "last.pt")
        recorded = {"kind": "coco", "annotations": str(ann_file.resolve()), "images": str(images.resolve()),
                    "sha256": hashlib.sha256(ann_file.read_bytes()).hexdigest(), "num_images": 8,
                    "categories": ("square", "triangle")}  # its fingerprint: `--resume` notices a changed file
        assert state["data"] == {"train": recorded, "val": recorded}
        assert "data" not in state["train_config"]  # the data is described once, in the record
        assert state["class_names"] == ["background", "square", "triangle"]
        capsys.readouterr()

        # evaluate with no data flags scores the run's own held-out set, not the synthetic shapes
        assert cli.main(["evaluate", "--checkpoint", str(run / "last.pt"), "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        written = re.search(r"^results: (.*)$", out, re.M).group(1)  # its own name: results of another
        assert re.fullmatch(re.escape(str(run)) + r"/results_instances_default_[0-9a-f]{8}\.json", written)
        results = json.loads(Path(written).read_text())  # instances_default.json would not replace it
        assert {r["image_id"] for r in results} <= set(range(1, 9)) and {r["category_id"] for r in results} <= {1, 2}

        # resume continues on the same data from the recorded paths, to the end of the schedule
        assert cli.main(["train", "--resume", str(run / "last.pt")]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in line]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_trained_through_the_python_api_records_its_data(export, tmp_path, capsys):
    ann_file, images = export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train_set = CocoDataset(ann_file=ann_file, image_dir=images, skip_empty=True)
        val_set = CocoDataset(ann_file=ann_file, image_dir=images)
    cfg = training.TrainConfig(config="cpu_small", min_size=SIZE, max_size=SIZE, iters=2, batch_size=2,
                             warmup_iters=1, progress=False, out=str(tmp_path / "api"))
    assert cfg.data == training.RunData.shapes()  # TrainConfig's default, which the datasets given here replace
    torch.manual_seed(0)
    training.train(cfg, train_set=train_set, val_set=val_set)
    state = read_checkpoint(tmp_path / "api" / "last.pt")
    assert state["data"]["train"] == {"kind": "coco", "annotations": str(ann_file.resolve()),
                                      "images": str(images.resolve()),
                                      "sha256": hashlib.sha256(ann_file.read_bytes()).hexdigest(), "num_images": 8,
                                      "categories": ("square", "triangle")}
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"instances_default.json: left out 1 annotations"):  # the same export
        assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "api" / "last.pt"), "--device", "cpu"]) == 0
    assert re.search(r"results_instances_default_[0-9a-f]{8}\.json", capsys.readouterr().out)


def test_flags_that_go_together(export, tmp_path, capsys):
    ann_file, images = export
    assert cli.main(["train", "--annotations", str(ann_file), "--iters", "1"]) == 2
    assert "--annotations and --images go together" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the missing folder is reported before the export's dropped polygon
        assert cli.main(["train", "--annotations", str(ann_file), "--images", str(tmp_path / "nowhere"),
                         "--iters", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "does not exist" in err


def test_an_image_whose_size_differs_from_the_json_is_named_before_training_starts(export, tmp_path, capsys):
    """It was reported only at the step that loaded it, after the steps before it had run."""
    ann_file, images = export
    wrong = sorted(images.rglob("*.jpg"))[-1]
    Image.open(wrong).resize((SIZE, SIZE + 8)).save(wrong)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cli.main(["train", "--annotations", str(ann_file), "--images", str(images), "--iters", "3",
                         "--out", str(tmp_path / "run"), *CPU_SMALL_96]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: 1 image file(s) do not match {ann_file}: {wrong} is {SIZE}x{SIZE + 8} (w x h), the "
                   f"JSON says {SIZE}x{SIZE}. Fix the files or the JSON's width and height\n")
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_met_mid_training_saves_a_checkpoint_then_stops(export, tmp_path, capsys, workers):
    """One line naming the file, also from a DataLoader worker; the steps before it are kept and resume."""
    ann_file, images = export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train_set = CocoDataset(ann_file=ann_file, image_dir=images, skip_empty=True)
    order = [i for _, i in ResumableSampler(train_set, seed=0)]  # the seeded shuffle of epoch 0
    victim = train_set.image_path(order[4])  # the first image of step 3 (batches of 2)
    good = victim.read_bytes()
    victim.write_bytes(good[:len(good) // 2])  # truncated past its header (an unreadable header: refused up front)
    run = tmp_path / "run"
    argv = ["train", "--annotations", str(ann_file), "--images", str(images), "--iters", "5", "--ckpt-every", "100",
            "--seed", "0", "--out", str(run), *CPU_SMALL_96[:-1], str(workers)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"cannot decode image file {victim}" in err and "(loading the images of step 3)" in err
        assert f"saved {run / 'last.pt'} at step 2" in err
        assert read_checkpoint(run / "last.pt")["progress"]["step"] == 2
        victim.write_bytes(good)  # repaired: the run continues where it stopped
        assert cli.main(["train", "--resume", str(run / "last.pt")]) == 0
    assert read_checkpoint(run / "last.pt")["progress"]["step"] == 5


def test_resume_refuses_an_export_that_changed_since_naming_what_changed(export, tmp_path, capsys):
    """The checkpoint recorded only the paths: after the classes were renamed in the JSON, or half its images
    deleted, `--resume` went on silently and wrote the new class names into the run."""
    ann_file, images = export
    run = tmp_path / "run"
    original = ann_file.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped rectangle, tested above
        assert cli.main(["train", "--annotations", str(ann_file), "--images", str(images), "--iters", "2",
                         "--stop-at", "1", "--out", str(run), *CPU_SMALL_96]) == 0
        saved = (run / "last.pt").read_bytes()
        data = json.loads(original)
        renamed = {**data, "categories": [{**c, "name": c["name"].upper()} for c in data["categories"]]}
        halved = {**data, "images": data["images"][:4],
                  "annotations": [a for a in data["annotations"] if a["image_id"] <= 4]}
        moved = {**data, "annotations": [{**a, "bbox": [b + 1 for b in a["bbox"]]} for a in data["annotations"]]}
        for changed, says in ((renamed, "its categories are now ['SQUARE', 'TRIANGLE']... (were ['square', "
                                        "'triangle']...)"),
                              (halved, "it now lists 4 images (was 8)"),
                              (moved, "its contents differ (SHA-256)")):
            ann_file.write_text(json.dumps(changed))
            capsys.readouterr()
            assert cli.main(["train", "--resume", str(run / "last.pt")]) == 2
            assert capsys.readouterr().err == (f"error: the training file {ann_file.resolve()} changed since "
                                               f"{run / 'last.pt'} was saved: {says}; resume on the data it trained "
                                               f"on, or start a new run with another --out\n")
            assert (run / "last.pt").read_bytes() == saved
        # a checkpoint from before fingerprints were recorded resumes as it did
        state = read_checkpoint(run / "last.pt")
        for record in filter(None, state["data"].values()):
            for key in ("sha256", "num_images", "categories"):
                record.pop(key)
        save_checkpoint(run / "last.pt", state)
        assert cli.main(["train", "--resume", str(run / "last.pt")]) == 0
    assert read_checkpoint(run / "last.pt")["progress"]["step"] == 2


def test_a_held_out_set_with_other_categories_is_refused_in_evaluates_words(export, tmp_path, capsys):
    """`train --val-annotations` with other categories trained, then printed AP under the wrong label mapping,
    while `evaluate` refused the same pair."""
    ann_file, images = export
    data = json.loads(ann_file.read_text())
    other = ann_file.with_name("swapped.json")  # the same images, the two names swapped
    other.write_text(json.dumps({**data, "categories": [{**c, "name": n} for c, n in
                                                        zip(data["categories"], ("triangle", "square"))]}))
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        argv = ["train", "--annotations", str(ann_file), "--images", str(images), "--iters", "1", "--out", str(run),
                *CPU_SMALL_96]
        assert cli.main(argv + ["--val-annotations", str(other), "--val-images", str(images)]) == 2
        refused = capsys.readouterr().err
        assert not run.exists() or not any(run.iterdir())  # refused before anything was written
        assert cli.main(argv) == 0
        capsys.readouterr()
        assert cli.main(["evaluate", "--checkpoint", str(run / "last.pt"), "--annotations", str(other),
                         "--images", str(images), "--device", "cpu"]) == 2
    evaluated = capsys.readouterr().err
    assert refused.startswith("error: the held-out set must have the training set's classes: the run trains on 2 "
                              "classes ['square', 'triangle']..., the dataset CocoDataset(")
    assert evaluated.startswith(f"error: checkpoint {run / 'last.pt'} was trained on 2 classes")
    assert refused.split(" trains on ")[1] == evaluated.split(" was trained on ")[1]  # the same words
    assert refused.count("\n") == 1 and "has 2 ['triangle', 'square']..." in refused
