"""CocoDataset against pycocotools and Pillow used directly, on real COCO images (the shipped sample) and on small
COCO folders built here; every bad input gets a clear error naming the file or field, and leaves the files as
they were."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from minimaskrcnn import paths
from minimaskrcnn.data import CocoDataset

# pycocotools' decode trips a numpy-2 DeprecationWarning on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ---------------------------------------------------------------- real COCO val2017 images (the shipped sample)

@pytest.fixture(scope="module")
def val(coco_root):
    return CocoDataset(coco_root, split="val2017")


@pytest.fixture(scope="module")
def raw(coco_root):
    return json.loads(paths.ann_file(coco_root, "val2017").read_text())


def test_labels_are_contiguous_and_map_back(val, raw):
    cats = sorted(raw["categories"], key=lambda c: c["id"])
    assert val.num_classes == len(cats) + 1 == 81
    assert val.class_names[0] == "background"
    for label in range(1, val.num_classes):
        assert val.label_to_cat_id[label] == cats[label - 1]["id"]
        assert val.class_names[label] == cats[label - 1]["name"]
        assert val.cat_id_to_label[val.label_to_cat_id[label]] == label
    assert val.label_to_cat_id[80] == 90  # COCO's ids are sparse: 80 classes numbered up to 90


def test_targets_match_pycocotools(val, raw, coco_root):
    """Every image's target against a plain loop over the JSON and pycocotools' own annToMask."""
    ref = COCO(str(paths.ann_file(coco_root, "val2017")))
    with_anns = {a["image_id"] for a in raw["annotations"]}
    assert any(img["id"] not in with_anns for img in raw["images"])  # the data has an image without objects ...
    assert len(val) == len(raw["images"])  # ... and it is kept as a negative
    cat_names = {c["id"]: c["name"] for c in raw["categories"]}
    n_crowd_seen = 0
    for i, img in enumerate(raw["images"]):
        target = val.load_target(i)
        assert target["image_id"] == img["id"] == val.image_ids[i]
        anns = [a for a in raw["annotations"] if a["image_id"] == img["id"]]
        n_crowd_seen += sum(a["iscrowd"] for a in anns)
        anns = [a for a in anns if not a["iscrowd"]]  # crowd regions are not training targets
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["masks"].dtype == torch.uint8
        assert target["masks"].shape == (len(anns), img["height"], img["width"])
        for k, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose(target["boxes"][k].numpy(), [x, y, x + w, y + h], rtol=0, atol=1e-3)
            assert val.class_names[int(target["labels"][k])] == cat_names[a["category_id"]]
            assert np.array_equal(target["masks"][k].numpy(), ref.annToMask(a))
    assert n_crowd_seen >= 1  # the crowd annotations exist ...
    crowd = [a for a in raw["annotations"] if a["iscrowd"]]
    assert all(a["id"] in val.coco.anns for a in crowd)  # ... and stay in the evaluation ground truth


def test_image_matches_pillow(val, coco_root):
    image, target = val[0]
    info = val.coco.imgs[val.image_ids[0]]
    ref = np.asarray(Image.open(coco_root / "val2017" / info["file_name"]).convert("RGB"), dtype=np.float32) / 255
    assert image.shape == (3, info["height"], info["width"]) and image.dtype == torch.float32
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), ref, atol=1e-6)


def test_skip_empty_drops_images_without_instances(coco_root, raw):
    ds = CocoDataset(coco_root, split="val2017", skip_empty=True)
    with_instances = {a["image_id"] for a in raw["annotations"] if not a["iscrowd"]}
    assert set(ds.image_ids) == with_instances and len(ds) < len(raw["images"])


def test_the_data_folder_is_the_clones_else_the_users_never_the_packages(monkeypatch, tmp_path):
    """An installed package wrote COCO into a data/ folder beside site-packages (its REPO_ROOT was the parent of
    the package); it now goes to $MINIMASKRCNN_HOME, else the clone's data/, else the user's cache."""
    for name in (paths.HOME_ENV, "XDG_CACHE_HOME", paths.COCO_ENV):
        monkeypatch.delenv(name, raising=False)
    assert paths.REPO_ROOT == Path(__file__).resolve().parents[1]  # the tests run from a clone
    assert paths.data_dir() == paths.REPO_ROOT / "data"
    assert paths.SAMPLE_ROOT == paths.REPO_ROOT / "minimaskrcnn" / "data" / "coco_sample"  # package data
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.user_cache_dir() == tmp_path / "home" / ".cache" / "minimaskrcnn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.user_cache_dir() == tmp_path / "xdg" / "minimaskrcnn"
    monkeypatch.setattr(paths, "REPO_ROOT", None)  # an installed package
    assert paths.data_dir() == tmp_path / "xdg" / "minimaskrcnn"
    assert paths.download_root() == tmp_path / "xdg" / "minimaskrcnn" / "coco"
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "mine"))
    assert paths.data_dir() == tmp_path / "mine" and paths.download_root() == tmp_path / "mine" / "coco"
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "clone")
    assert paths.data_dir() == tmp_path / "mine"  # the variable wins in a clone too


def test_a_clone_is_told_from_an_installed_package(tmp_path):
    """site-packages (no pyproject.toml), another project's clone, and this project's clone (with .git, a
    worktree's .git file, or only its Makefile, as in a source archive)."""
    for name in ("site-packages", "other", "git", "worktree", "archive", "bare"):
        (tmp_path / name / "minimaskrcnn").mkdir(parents=True)
    ours, theirs = '[project]\nname = "minimaskrcnn"\n', '[project]\nname = "someone-else"\n'
    for name, pyproject in (("other", theirs), ("git", ours), ("worktree", ours), ("archive", ours), ("bare", ours)):
        (tmp_path / name / "pyproject.toml").write_text(pyproject)
    (tmp_path / "other" / ".git").mkdir()
    (tmp_path / "git" / ".git").mkdir()
    (tmp_path / "worktree" / ".git").write_text("gitdir: /somewhere/.git/worktrees/x\n")
    (tmp_path / "archive" / "Makefile").write_text("test:\n")
    found = {name: paths.clone_root(tmp_path / name / "minimaskrcnn") for name in
             ("site-packages", "other", "git", "worktree", "archive", "bare")}
    assert found == {"site-packages": None, "other": None, "git": tmp_path / "git",
                     "worktree": tmp_path / "worktree", "archive": tmp_path / "archive", "bare": None}


def test_coco_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.COCO_ENV, raising=False)
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "data"))
    assert paths.coco_root() == paths.SAMPLE_ROOT  # a fresh clone: the shipped sample ...
    assert paths.coco_root_problems(paths.SAMPLE_ROOT) == []
    assert paths.download_root() == tmp_path / "data" / "coco"  # a download never goes into the sample
    (tmp_path / "data" / "coco" / "downloads").mkdir(parents=True)
    assert paths.coco_root() == paths.SAMPLE_ROOT  # ... also while a download is under way ...
    (tmp_path / "data" / "coco" / "annotations").mkdir()
    assert paths.coco_root() == tmp_path / "data" / "coco"  # ... until the full COCO is there
    assert paths.download_root() == tmp_path / "data" / "coco"
    assert paths.coco_root("coco") == paths.Path("coco")  # --data coco: the folder ./coco, like any path
    monkeypatch.setenv(paths.COCO_ENV, str(tmp_path / "env"))
    assert paths.coco_root() == tmp_path / "env"
    assert paths.coco_root(tmp_path / "flag") == tmp_path / "flag"
    assert paths.coco_root_problems(tmp_path / "nowhere") == [f"COCO root {tmp_path / 'nowhere'} does not exist"]
    (tmp_path / "c" / "val2017").mkdir(parents=True)
    problems = paths.coco_root_problems(tmp_path / "c", splits=("val2017",))
    assert problems == [f"missing annotation file {tmp_path / 'c' / 'annotations' / 'instances_val2017.json'}"]


# ---------------------------------------------------------------- small COCO folders built by the tests

def square(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def write_coco(root, images=None, annotations=None, categories=None, split="val", drop=()):
    """A COCO folder: images as {file_name: (h, w)} or {file_name: PIL image}; returns the JSON path."""
    images = images if images is not None else {"a.jpg": (40, 60), "b.png": (30, 30)}
    categories = categories if categories is not None else [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    entries = []
    for i, (name, im) in enumerate(images.items(), start=1):
        if not isinstance(im, Image.Image):
            im = Image.fromarray(np.full((*im, 3), 40 * i, dtype=np.uint8))
        im.save(root / split / name)
        entries.append({"id": i, "file_name": name, "height": im.height, "width": im.width})
    if annotations is None:
        annotations = [
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 20], "segmentation": [square(10, 5, 20)],
             "area": 400, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 3, "bbox": [30, 10, 10, 10], "area": 100, "iscrowd": 0,
             "segmentation": mask_utils.encode(np.asfortranarray(_box_mask(40, 60, 30, 10, 10)))},
            {"id": 13, "image_id": 1, "category_id": 3, "bbox": [0, 30, 60, 10], "area": 600, "iscrowd": 1,
             "segmentation": {"size": [40, 60], "counts": [30, 10] * 60}}  # column-major: rows 30-39,
        ]
        annotations[1]["segmentation"]["counts"] = annotations[1]["segmentation"]["counts"].decode()
    data = {"images": entries, "annotations": annotations, "categories": categories}
    for key in drop:
        del data[key]
    ann_file = root / "annotations" / f"instances_{split}.json"
    ann_file.write_text(json.dumps(data))
    return ann_file


def _box_mask(h, w, x, y, s):
    m = np.zeros((h, w), dtype=np.uint8)
    m[y:y + s, x:x + s] = 1
    return m


def test_polygon_rle_and_crowd(tmp_path):
    write_coco(tmp_path)
    ds = CocoDataset(tmp_path, split="val")
    assert ds.class_names == ["background", "cat", "dog"] and ds.label_to_cat_id == {1: 3, 2: 7}
    image, target = ds[0]
    assert image.shape == (3, 40, 60)
    assert target["labels"].tolist() == [2, 1]  # dog, cat; the crowd annotation 13 is not a target
    assert target["boxes"].tolist() == [[10, 5, 30, 25], [30, 10, 40, 20]]
    assert np.array_equal(target["masks"][1].numpy(), _box_mask(40, 60, 30, 10, 10))  # compressed RLE
    # a polygon along pixel edges covers the pixels inside it (pycocotools rasterization)
    assert np.array_equal(target["masks"][0].numpy(), _box_mask(40, 60, 10, 5, 20))
    assert 13 in ds.coco.anns and ds.coco.anns[13]["iscrowd"] == 1
    crowd_mask = ds.coco.annToMask(ds.coco.anns[13])  # uncompressed RLE, column-major
    assert crowd_mask.sum() == 600 and crowd_mask[30:40].all()
    _, negative = ds[1]  # image without annotations: a negative with empty targets
    assert negative["boxes"].shape == (0, 4) and negative["masks"].shape == (0, 30, 30)


def test_any_image_mode_becomes_rgb(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    rgba = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (8, 9), dtype=np.uint16)
    images = {"l.png": Image.fromarray(gray, "L"), "rgba.png": Image.fromarray(rgba, "RGBA"),
              "p.png": Image.fromarray(rgba[..., :3]).convert("P"),
              "i16.png": Image.fromarray(deep), "cmyk.jpg": Image.fromarray(rgba, "CMYK")}
    write_coco(tmp_path, images=images, annotations=[])
    ds = CocoDataset(tmp_path, split="val")
    out = {ds.coco.imgs[i]["file_name"]: ds[k][0] for k, i in enumerate(ds.image_ids)}
    for name, image in out.items():
        assert image.shape == (3, 8, 9), name
    to255 = {n: (im.permute(1, 2, 0).numpy() * 255).round() for n, im in out.items()}
    assert np.array_equal(to255["l.png"], np.repeat(gray[..., None], 3, axis=2))
    assert np.array_equal(to255["rgba.png"], rgba[..., :3])  # alpha dropped
    palette = np.asarray(Image.open(tmp_path / "val" / "p.png").convert("RGB"))
    assert np.array_equal(to255["p.png"], palette)
    assert np.abs(to255["i16.png"][..., 0] - deep / 257.0).max() <= 0.5  # 16 bits rescaled, not clipped
    assert to255["cmyk.jpg"].std() > 0


def test_degenerate_box_is_dropped_with_a_warning(tmp_path):
    anns = [{"id": 21, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0.5, 10], "segmentation": [square(5, 5, 1)],
             "area": 1, "iscrowd": 0},
            {"id": 22, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10], "segmentation": [square(5, 5, 10)],
             "area": 100, "iscrowd": 0}]
    write_coco(tmp_path, annotations=anns)
    with pytest.warns(UserWarning, match=r"left out 1 annotations \(1 with a box under 1 pixel inside the image\) "
                                         r"of the training targets; the evaluation ground truth keeps them all"):
        ds = CocoDataset(tmp_path, split="val")
    assert ds.load_target(0)["boxes"].tolist() == [[5, 5, 15, 15]]
    assert 21 in ds.coco.anns  # still part of the evaluation ground truth


# ---------------------------------------------------------------- EXIF orientation

def phone_photo(path, displayed: np.ndarray, orientation: int):
    """Save `displayed` (H, W, 3) as a camera does: the pixels as the sensor saw them, and an EXIF orientation
    tag saying how to turn them for display (6: a quarter turn clockwise, 8: counter-clockwise, 3: half a turn)."""
    from PIL import ImageOps

    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = Image.fromarray(displayed).transpose(undo[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)
    assert np.abs(np.asarray(ImageOps.exif_transpose(Image.open(path)), dtype=int) - displayed).max() < 40


def object_photo(h, w):
    """A dark photo with a bright 12x12 object at x, y = 4..15 (as displayed), and its polygon."""
    displayed = np.full((h, w, 3), 20, dtype=np.uint8)
    displayed[4:16, 4:16] = 230
    return displayed, [4, 4, 16, 4, 16, 16, 4, 16]


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_a_phone_photo_annotated_as_displayed_gets_masks_on_the_object(tmp_path, orientation):
    """A square photo: its size cannot tell the frames apart, and without the orientation the mask missed the
    object entirely (overlap 0.0)."""
    displayed, poly = object_photo(40, 40)
    (tmp_path / "val").mkdir()
    phone_photo(tmp_path / "val" / "phone.jpg", displayed, orientation)
    data = {"images": [{"id": 1, "file_name": "phone.jpg", "height": 40, "width": 40}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 12, 12], "area": 144,
                             "segmentation": [poly], "iscrowd": 0}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    image, target = CocoDataset(tmp_path, split="val")[0]
    bright = image.mean(0) > 0.5
    mask = target["masks"][0].bool()
    assert (mask & bright).sum() / mask.sum() > 0.95 and (mask & bright).sum() / bright.sum() > 0.95


def test_image_sizes_are_checked_as_displayed_before_any_image_is_decoded(tmp_path, monkeypatch):
    """A turned phone photo whose JSON gives its size as displayed reads; one whose JSON gives the stored size,
    and a plain photo of another size, are named in one error when the dataset is built, not at the step that
    loads them; nothing is decoded for the check (Pillow reads the header)."""
    displayed, _ = object_photo(60, 40)
    (tmp_path / "val").mkdir()
    phone_photo(tmp_path / "val" / "turned.jpg", displayed, 6)  # stored 60 wide, 40 high
    phone_photo(tmp_path / "val" / "wrong.jpg", displayed, 8)
    Image.fromarray(displayed).save(tmp_path / "val" / "plain.png")
    images = [("turned.jpg", 60, 40), ("wrong.jpg", 40, 60), ("plain.png", 50, 40)]  # (name, height, width)
    data = {"images": [{"id": i, "file_name": n, "height": h, "width": w} for i, (n, h, w) in enumerate(images)],
            "categories": [{"id": 1, "name": "thing"}], "annotations": []}
    (tmp_path / "annotations").mkdir()
    ann_file = tmp_path / "annotations" / "instances_val.json"
    ann_file.write_text(json.dumps(data))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("an image was decoded"))
    with pytest.raises(ValueError) as e:
        CocoDataset(tmp_path, split="val")
    assert str(e.value) == (
        f"2 image file(s) do not match {ann_file}: {tmp_path / 'val' / 'wrong.jpg'} is 40x60 (w x h) once turned "
        f"by its EXIF orientation 8, the JSON says 60x40; {tmp_path / 'val' / 'plain.png'} is 40x60 (w x h), the "
        f"JSON says 40x50. Fix the files or the JSON's width and height")
    monkeypatch.undo()
    data["images"] = data["images"][:1]
    ann_file.write_text(json.dumps(data))
    image, _ = CocoDataset(tmp_path, split="val")[0]
    assert image.shape == (3, 60, 40)  # as displayed
    assert np.abs(image.permute(1, 2, 0).numpy() * 255 - displayed).max() < 40


# ---------------------------------------------------------------- bad input

def unchanged(ann_file, before):
    return ann_file.read_bytes() == before


@pytest.mark.parametrize("drop", ["annotations", "categories", "images"])
def test_not_coco_json_names_missing_keys(tmp_path, drop):
    ann_file = write_coco(tmp_path, drop=(drop,))
    before = ann_file.read_bytes()
    with pytest.raises(ValueError, match=rf"instances_val\.json.*missing top-level key\(s\) \['{drop}'\]"):
        CocoDataset(tmp_path, split="val")
    assert unchanged(ann_file, before)


def test_not_json_and_missing_fields(tmp_path):
    ann_file = write_coco(tmp_path)
    ann_file.write_text("{not json")
    with pytest.raises(ValueError, match="instances_val.json is not valid JSON"):
        CocoDataset(tmp_path, split="val")
    write_coco(tmp_path, annotations=[{"id": 5, "image_id": 1, "category_id": 3, "segmentation": [square(0, 0, 4)]}])
    with pytest.raises(ValueError, match=r"annotations\[0\] is missing key\(s\) \['bbox'\]"):
        CocoDataset(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match="instances_train.json"):
        CocoDataset(tmp_path, split="train")


def test_unknown_category_names_annotation_and_category(tmp_path):
    anns = [{"id": 31, "image_id": 1, "category_id": 99, "bbox": [0, 0, 4, 4], "segmentation": [square(0, 0, 4)]}]
    ann_file = write_coco(tmp_path, annotations=anns)
    before = ann_file.read_bytes()
    with pytest.raises(ValueError, match="annotation 31 has unknown category_id 99"):
        CocoDataset(tmp_path, split="val")
    assert unchanged(ann_file, before)


def test_duplicate_category_names_are_refused_in_one_line(tmp_path):
    """Two classes named the same would make predictions name different classes the same."""
    cats = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 8, "name": "cat"}, {"id": 9, "name": "dog"}]
    ann_file = write_coco(tmp_path, categories=cats, annotations=[])
    with pytest.raises(ValueError) as e:
        CocoDataset(tmp_path, split="val")
    assert str(e.value) == (f"{ann_file}: duplicate category names 'cat' (ids 3, 8), 'dog' (ids 7, 9); each class "
                            f"needs a name of its own")


def test_invalid_shapes_are_dropped_and_counted_in_one_warning(tmp_path):
    nan = float("nan")
    ann = dict(image_id=1, category_id=3, bbox=[10, 5, 20, 20], iscrowd=0)
    anns = [{**ann, "id": 41, "segmentation": [[0, 0, 4, 4], square(10, 5, 20)]},  # one bad polygon of two
            {**ann, "id": 42, "segmentation": [[1, 1, nan, 5, 9, 9]]},
            {**ann, "id": 43, "segmentation": []},  # CVAT's rectangles
            {**ann, "id": 44, "segmentation": [[0, 0, 5, 5, 10, 10]]},  # collinear: zero area
            {**ann, "id": 45, "segmentation": [[0, 0, 4, 4, 5]]},
            {**ann, "id": 46, "bbox": [nan, 5, 20, 20], "segmentation": [square(10, 5, 20)]},
            {**ann, "id": 47, "category_id": 7, "segmentation": [square(30, 10, 10)], "bbox": [30, 10, 10, 10]}]
    write_coco(tmp_path, annotations=anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(tmp_path, split="val")
    assert [str(w.message).split(": left out ")[1] for w in caught] == [
        "4 polygons (1 with fewer than 3 points, 1 with NaN or infinite coordinates, 1 of zero area, "
        "1 with an odd number of coordinates), 5 annotations (4 with no valid polygon left, "
        "1 with a NaN or infinite bbox) of the training targets; the evaluation ground truth is the file as given, "
        "but for what pycocotools cannot read: 3 polygons (3 with fewer than 3 points or NaN or infinite "
        "coordinates), 4 annotations (3 with no polygon left, kept with an empty mask, 1 with a NaN or infinite "
        "bbox, left out)"]
    target = ds.load_target(0)
    assert target["labels"].tolist() == [1, 2]
    assert np.array_equal(target["masks"][0].numpy(), _box_mask(40, 60, 10, 5, 20))
    # the evaluation ground truth: all but the NaN box (pycocotools scores it IoU 1 with any box); the polygons
    # pycocotools cannot read (it raises, or hangs on NaN) are left out of their annotation, which stays
    given = {a["id"]: a for a in anns}
    assert sorted(ds.coco.anns) == [41, 42, 43, 44, 45, 47]
    assert ds.coco.anns[41]["segmentation"] == [square(10, 5, 20)] and ds.coco.anns[41]["area"] == 400
    assert ds.coco.anns[44]["segmentation"] == given[44]["segmentation"] and ds.coco.anns[44]["area"] == 0
    for empty in (42, 43, 45):
        assert ds.coco.anns[empty]["area"] == 0 and ds.coco.annToMask(ds.coco.anns[empty]).sum() == 0
    from minimaskrcnn.evaluation import detections_to_coco, evaluate_coco
    det = {**target, "scores": torch.ones(2), "masks": target["masks"].float()}
    metrics = evaluate_coco(ds.coco, detections_to_coco([det], [1], ds.label_to_cat_id))  # pycocotools reads it
    assert metrics["segm"]["AR100"] == pytest.approx((1 / 5 + 1 / 1) / 2)  # 1 of 5 cats and the dog, at every IoU


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][0].update(height="40"), r"image 1 \(images\[0\]\) has height '40'; it must be a positive"),
    (lambda d: d["images"][1].update(width=30.5), r"image 2 \(images\[1\]\) has width 30.5"),
    (lambda d: d["images"][0].update(id="1"), r"images\[0\] has id '1'; ids must be integers"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, "4", 4, 9, 9]]),
     r"annotation 11 has a polygon that is not a flat list of x, y numbers"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
     r"annotation 11 has bbox \[1, 2, 3\], expected \[x, y, w, h\]"),
    (lambda d: d["annotations"][0].update(image_id=9), r"annotation 11 refers to unknown image_id 9"),
])
def test_structural_errors_name_the_file_and_the_item(tmp_path, change, message):
    ann_file = write_coco(tmp_path)
    data = json.loads(ann_file.read_text())
    change(data)
    ann_file.write_text(json.dumps(data))
    before = ann_file.read_bytes()
    with pytest.raises(ValueError, match=r"instances_val\.json: " + message):
        CocoDataset(tmp_path, split="val")
    assert unchanged(ann_file, before)


def test_an_export_with_any_category_ids_subfolders_and_no_area(tmp_path):
    """0-based category ids with a gap, file names in subfolders, integral float sizes, no area, no iscrowd."""
    root = tmp_path / "export"
    (root / "images" / "day").mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 90, dtype=np.uint8)).save(root / "images" / "day" / "a.jpg")
    data = {"images": [{"id": 7, "file_name": "day/a.jpg", "height": 40.0, "width": 60}],
            "categories": [{"id": 0, "name": "cat"}, {"id": 5, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 0, "bbox": [10, 5, 20, 20],
                             "segmentation": [square(10, 5, 20)]},
                            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [30, 10, 10, 10],
                             "segmentation": [square(30, 10, 10)]}]}
    (root / "labels.json").write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = CocoDataset(ann_file=root / "labels.json", image_dir=root / "images")
    assert ds.class_names == ["background", "cat", "dog"] and ds.label_to_cat_id == {1: 0, 2: 5}
    image, target = ds[0]
    assert image.shape == (3, 40, 60) and target["labels"].tolist() == [1, 2]
    assert [a["area"] for a in ds.coco.dataset["annotations"]] == [400.0, 100.0]
    # pycocotools scores the ground truth, given as detections, at AP 1 with these category ids
    from minimaskrcnn.evaluation import detections_to_coco, evaluate_coco
    det = {**target, "scores": torch.ones(2), "masks": target["masks"].float()}
    metrics = evaluate_coco(ds.coco, detections_to_coco([det], [7], ds.label_to_cat_id))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)


def test_missing_image_file_is_named(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "val" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\).*val/b\.png"):
        CocoDataset(tmp_path, split="val")
    write_coco(tmp_path)
    ds = CocoDataset(tmp_path, split="val")
    (tmp_path / "val" / "a.jpg").unlink()  # vanishes after construction: named when read
    with pytest.raises(FileNotFoundError, match=r"val/a\.jpg"):
        ds[0]


def test_corrupt_jpeg_is_named(tmp_path):
    write_coco(tmp_path)
    path = tmp_path / "val" / "a.jpg"
    data = path.read_bytes()
    ds = CocoDataset(tmp_path, split="val")
    path.write_bytes(data[: len(data) // 2])  # truncated after the dataset was built
    with pytest.raises(ValueError, match=r"1 image file\(s\) do not match .*: .*val/a\.jpg cannot be read"):
        CocoDataset(tmp_path, split="val")  # a dataset built now refuses it at once
    with pytest.raises(ValueError, match=r"cannot decode image file .*val/a\.jpg"):
        ds[0]
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ValueError, match=r"cannot decode image file .*val/a\.jpg"):
        ds[0]
    _, target = ds[1]  # the other image is unaffected
    assert target["image_id"] == 2


def test_empty_dataset(tmp_path):
    write_coco(tmp_path, images={}, annotations=[])
    with pytest.raises(ValueError, match="empty dataset: .*instances_val.json lists no images"):
        CocoDataset(tmp_path, split="val")
    write_coco(tmp_path, annotations=[])
    with pytest.raises(ValueError, match="empty dataset.*skip_empty=True"):
        CocoDataset(tmp_path, split="val", skip_empty=True)


def test_explicit_files_override_the_layout(tmp_path):
    ann_file = write_coco(tmp_path / "export", split="images")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = CocoDataset(ann_file=ann_file, image_dir=tmp_path / "export" / "images")
    assert len(ds) == 2 and ds.image_path(0) == tmp_path / "export" / "images" / "a.jpg"
