"""`predict`'s handling of a new user's input, with a stand-in detector (no weights to load): a folder predicts
every image in it, sorted; an unreadable image is skipped with a warning and predictions.json is still
written; nothing readable, an output folder that cannot be written, a missing weights file, a file that is not
a torchvision state_dict, and neither or both of --checkpoint / --weights are one-line errors (exit 2), the
output folder checked before any model is loaded."""
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from minimaskrcnn import cli, predict
from minimaskrcnn.checkpoint import save_checkpoint


class OneBox(torch.nn.Module):
    """Eval-mode stand-in: one detection of label 1 covering the image's top-left quarter."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))  # predict asks for the model's device
        self.seen = []

    def forward(self, images, targets=None):
        h, w = images[0].shape[-2:]
        self.seen.append((h, w))
        masks = torch.zeros(1, h, w)
        masks[0, : h // 2, : w // 2] = 1
        det = {"boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2]]), "labels": torch.tensor([1]),
               "scores": torch.tensor([0.9]), "masks": masks}
        return types.SimpleNamespace(losses={}, detections=[det])


@pytest.fixture
def model(monkeypatch):
    """The stand-in behind --checkpoint; model.loads counts how often a model was loaded."""
    m = OneBox()
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
                                      f"torchvision's COCO model)\n"
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
