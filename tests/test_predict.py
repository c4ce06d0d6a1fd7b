"""`predict`'s handling of a new user's input, with a stand-in detector (no weights to load): a folder predicts
every image in it and in its subfolders, sorted; a large image is drawn at a capped size, its boxes listed in
full-size pixels as the model's own forward gives them; an unreadable image is skipped with a warning and
predictions.json is still written; nothing readable, an output folder that cannot be written, a missing weights
file, a file that is not a torchvision state_dict, neither or both of --checkpoint / --weights, and flags out of
range are one-line errors (exit 2), the output folder checked before any model is loaded."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from minimaskrcnn import cli, predict
from minimaskrcnn.checkpoint import save_checkpoint
from standin import StandIn


def one_box(h, w):
    """One detection of label 1 covering the image's top-left quarter, its mask filling the box."""
    return {"boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2]]), "labels": torch.tensor([1]),
            "scores": torch.tensor([0.9]), "masks": torch.ones(1, 28, 28)}


@pytest.fixture
def model(monkeypatch):
    """The stand-in behind --checkpoint; model.loads counts how often a model was loaded."""
    m = StandIn(one_box)
    m.loads = 0

    def load(checkpoint, device="auto", **transform):
        m.loads += 1
        return m, {"class_names": ["background", "thing"]}

    monkeypatch.setattr(predict, "model_from_checkpoint", load)
    return m


def save_image(path, h, w):
    Image.fromarray(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_a_folder_predicts_every_image_and_skips_an_unreadable_one(tmp_path, model, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    save_image(photos / "b.png", 40, 60)
    save_image(photos / "a.JPG", 30, 50)
    (photos / "c.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    (photos / "readme.txt").write_text("skipped silently: not an image file name")
    save_image(tmp_path / "b.png", 20, 20)  # the same stem as photos/b.png, given separately
    out = tmp_path / "pred"
    assert cli.main(["predict", "--checkpoint", "x.pt", str(photos), str(tmp_path / "b.png"), "--out", str(out)]) == 0
    assert model.seen == [(30, 50), (40, 60), (20, 20)]  # sorted by name: a.JPG, b.png, c.jpg; then the file
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == [line for line in warnings if "c.jpg" in line] and len(warnings) == 1
    assert warnings[0].startswith(f"warning: skipped {photos / 'c.jpg'}: cannot decode image file")
    assert captured.out.strip().splitlines()[-1].startswith(f"3 image(s) predicted, 1 skipped: {photos / 'c.jpg'}")
    listed = json.loads((out / "predictions.json").read_text())
    assert [e["image"] for e in listed] == [str(photos / n) for n in ("a.JPG", "b.png", "c.jpg")] + \
        [str(tmp_path / "b.png")]
    assert listed[0]["detections"] == [{"label": "thing", "score": 0.9, "box": [0.0, 0.0, 25.0, 15.0]}]
    assert set(listed[2]) == {"image", "skipped"} and "cannot decode" in listed[2]["skipped"]
    drawn = sorted(p.name for p in out.glob("*.png"))
    assert drawn == ["a_pred.png", "b_3_pred.png", "b_pred.png"]  # the second b.png does not overwrite the first
    assert Image.open(out / "b_3_pred.png").size == (20, 20) and Image.open(out / "b_pred.png").size == (60, 40)


def test_nothing_readable_is_an_error_but_the_list_is_written(tmp_path, model, capsys):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "pred"
    assert cli.main(["predict", "--checkpoint", "x.pt", str(tmp_path / "bad.png"), str(tmp_path / "gone.jpg"),
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: none of the 2 image(s) could be read (see the warnings above)"
    assert f"warning: skipped {tmp_path / 'gone.jpg'}: image file {tmp_path / 'gone.jpg'} not found" in err
    assert [e["image"] for e in json.loads((out / "predictions.json").read_text())] == \
        [str(tmp_path / "bad.png"), str(tmp_path / "gone.jpg")]
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", "--checkpoint", "x.pt", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: no images to predict in {tmp_path / 'empty'}"


def test_an_output_folder_that_cannot_be_written_is_an_error_before_loading(tmp_path, model, capsys):
    save_image(tmp_path / "a.png", 20, 20)
    (tmp_path / "file").write_text("a file where the output folder's parent should be")
    assert cli.main(["predict", "--checkpoint", "x.pt", str(tmp_path / "a.png"), "--out",
                     str(tmp_path / "file" / "pred")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write to the folder {tmp_path / 'file' / 'pred'}: Not a directory\n"
    assert model.loads == 0 and model.seen == []


def test_weights_errors(tmp_path, capsys):
    save_image(tmp_path / "a.png", 20, 20)
    image, out = str(tmp_path / "a.png"), str(tmp_path / "pred")
    assert cli.main(["predict", "--weights", str(tmp_path / "nope.pth"), image, "--out", out]) == 2
    assert capsys.readouterr().err == f"error: --weights {tmp_path / 'nope.pth'}: no such file (--weights coco: " \
                                      f"torchvision's COCO model; coco-keypoints: its COCO keypoint model)\n"
    ours = save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.zeros(1)}, "model_config": None})
    assert cli.main(["predict", "--weights", str(ours), image, "--out", out]) == 2
    assert capsys.readouterr().err.startswith(f"error: weights file {ours} is not a torchvision state_dict "
                                              f"(a minimaskrcnn checkpoint loads with --checkpoint")
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 cut short")
    assert cli.main(["predict", "--weights", str(tmp_path / "cut.pth"), image, "--out", out]) == 2
    assert capsys.readouterr().err.startswith(f"error: weights file {tmp_path / 'cut.pth'} is corrupt or truncated")
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "other.pth")
    assert cli.main(["predict", "--weights", str(tmp_path / "other.pth"), image, "--out", out]) == 2
    assert "is not a torchvision maskrcnn_resnet50_fpn state_dict (no roi_heads.box_predictor" in \
        capsys.readouterr().err


@pytest.mark.parametrize("flags, says", [
    ([], "error: one of the arguments --checkpoint --weights is required"),
    (["--checkpoint", "x.pt", "--weights", "coco"],
     "error: argument --weights: not allowed with argument --checkpoint"),
])
def test_exactly_one_of_checkpoint_and_weights(flags, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", *flags, "a.png"])
    assert exit_.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("flags, says", [
    (["--score-thresh", "2"], "--score-thresh must be a number >= 0 and <= 1; got 2.0"),
    (["--score-thresh", "-1"], "--score-thresh must be a number >= 0 and <= 1; got -1.0"),
    (["--score-thresh", "nan"], "--score-thresh must be a number >= 0 and <= 1; got nan"),
    (["--out", ""], "--out is empty: name the folder for the drawn images and predictions.json"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1; got 0"),
    ([""], "an image argument is empty: name image files or folders"),  # it predicted the current folder
])
def test_predict_flags_that_make_no_sense_are_refused_before_loading(tmp_path, model, flags, says, capsys):
    save_image(tmp_path / "a.png", 20, 20)
    assert cli.main(["predict", "--checkpoint", "x.pt", "--out", str(tmp_path / "pred"), *flags,
                     str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {says}\n" and model.loads == 0 and not (tmp_path / "pred").exists()


def test_a_folder_is_predicted_with_its_subfolders_sorted(tmp_path, model, capsys):
    """Subfolders were skipped silently; hidden ones (a notebook's checkpoints) are left out and named."""
    photos = tmp_path / "photos"
    for name in ("z.png", "a.png", "sub/b.png", "sub/deeper/c.png", ".ipynb_checkpoints/a-checkpoint.png"):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        save_image(photos / name, 20, 30)
    assert cli.main(["predict", "--checkpoint", "x.pt", str(photos), "--out", str(tmp_path / "pred")]) == 0
    listed = [e["image"] for e in json.loads((tmp_path / "pred" / "predictions.json").read_text())]
    assert listed == [str(photos / n) for n in ("a.png", "sub/b.png", "sub/deeper/c.png", "z.png")]
    assert capsys.readouterr().err == f"warning: skipped hidden folder(s) {photos / '.ipynb_checkpoints'}\n"


def test_a_large_image_is_drawn_at_a_capped_size_and_listed_in_full_size_pixels(tmp_path, model):
    """An 8000 x 8000 photo was drawn at 8000 x 8000 (9.3 GB of memory); the list keeps full-size boxes."""
    h, w = 2000, 3000
    save_image(tmp_path / "big.png", h, w)
    assert cli.main(["predict", "--checkpoint", "x.pt", str(tmp_path / "big.png"), "--out", str(tmp_path / "p")]) == 0
    assert model.seen == [(h, w)]  # the model saw every pixel
    listed = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert listed[0]["detections"] == [{"label": "thing", "score": 0.9, "box": [0.0, 0.0, w / 2, h / 2]}]
    drawn = np.asarray(Image.open(tmp_path / "p" / "big_pred.png").convert("RGB")).astype(float)
    assert drawn.shape == (round(predict.MAX_DRAWN * h / w), predict.MAX_DRAWN, 3) == (1067, 1600, 3)
    photo = np.asarray(Image.open(tmp_path / "big.png").resize((1600, 1067), Image.BILINEAR)).astype(float)
    tinted = np.abs(drawn - photo).max(axis=-1) > 40  # the mask, blended at alpha 0.5, and the box's outline
    assert tinted[100:500, 100:700].mean() > 0.95 and tinted[600:, 900:].mean() < 0.01


def test_detect_gives_the_models_own_detections_with_masks_pasted_at_the_drawn_size():
    """predict.detect runs the stages of model.forward: at the image's size it gives exactly the model's
    detections (those scoring at least the threshold); at a smaller size the same boxes and labels, the masks
    pasted there."""
    from minimaskrcnn.config import cpu_small
    from minimaskrcnn.model import MaskRCNN

    torch.manual_seed(0)
    model = MaskRCNN(cpu_small()).eval()
    image = torch.rand(3, 150, 200)
    with torch.no_grad():
        ref = model([image]).detections[0]
    assert len(ref["scores"]) > 10  # an untrained model detects plenty
    thresh = float(ref["scores"].median())
    keep = ref["scores"] >= thresh
    full, drawn = predict.detect(model, image, thresh, (150, 200))
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(full[key], ref[key][keep]) and torch.equal(drawn[key], ref[key][keep]), key
    assert torch.equal(drawn["masks"], ref["masks"][keep])
    full, drawn = predict.detect(model, image, thresh, (75, 100))
    assert torch.equal(full["boxes"], ref["boxes"][keep]) and drawn["masks"].shape == (int(keep.sum()), 75, 100)
    assert torch.allclose(drawn["boxes"], ref["boxes"][keep] / 2)
