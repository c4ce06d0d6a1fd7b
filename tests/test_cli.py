"""The command line: --help on every command, flags -> TrainConfig, errors as one line, the subset wiring,
and a tiny train -> evaluate -> predict -> demo run on the synthetic shapes through `main`."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from minimaskrcnn import cli, predict, training
from minimaskrcnn.checkpoint import read_checkpoint, save_checkpoint
from minimaskrcnn.data import CocoDataset, ShapesDataset
from minimaskrcnn.data.sources import CocoFiles, RunData, Shapes
from minimaskrcnn.training.config import settings
from standin import StandIn


def test_help_through_python_m():
    """The entry point a user types, in a child process (the other commands' help is read in-process below)."""
    proc = subprocess.run([sys.executable, "-m", "minimaskrcnn", "train", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m minimaskrcnn train") and "--resume" in proc.stdout


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "download", "demo", "ablate", "check"])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([command, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m minimaskrcnn {command}")
    expected = {"train": "--resume", "evaluate": "--checkpoint", "predict": "--score-thresh",
                "download": "--subset", "demo": "--out", "ablate": "--jobs", "check": "--list"}[command]
    assert expected in out


def parse_train(*argv):
    return cli.train_config_from_args(cli.build_parser().parse_args(["train", *argv]))


def test_train_flags_map_to_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMASKRCNN_COCO", str(tmp_path / "coco"))
    cfg = parse_train("--iters", "90", "--batch-size", "4", "--lr", "0.01", "--amp", "--min-size", "600",
                      "--val-split", "none", "--no-flip", "--workers", "3")
    assert (cfg.iters, cfg.batch_size, cfg.lr, cfg.amp, cfg.min_size, cfg.flip, cfg.num_workers) \
        == (90, 4, 0.01, "fp16", 600, False, 3)
    coco = tmp_path / "coco"  # COCO and the paper's model by default
    assert cfg.data == RunData(CocoFiles(str(coco / "annotations" / "instances_train2017.json"), str(coco / "train2017")))
    assert cfg.config == "r50_fpn"
    assert parse_train("--amp", "bf16").amp == "bf16"
    assert parse_train("--split", "val2017").data == RunData.coco(coco, "val2017", "val2017")
    shapes = parse_train("--data", "shapes")
    assert (shapes.data, shapes.config, shapes.iters) == (RunData.shapes(), "cpu_small", training.TrainConfig().iters)
    small = parse_train("--data", "shapes", "--num-images", "8", "--num-val-images", "0", "--image-size", "64")
    assert small.data == RunData(Shapes(8, 64, seed=0))
    files = parse_train("--annotations", "a.json", "--images", "img", "--val-split", "val2017")
    assert (files.data, files.config) == (RunData(CocoFiles("a.json", "img")), "r50_fpn")  # held out only if named


def test_resume_reuses_the_stored_settings_unless_given_again(tmp_path):
    stored = training.TrainConfig(data=RunData.shapes(50, 5), iters=77, lr=0.3, batch_size=3, out=str(tmp_path))
    path = save_checkpoint(tmp_path / "last.pt", {"model": {}, "train_config": settings(stored),
                                                  "data": stored.data.to_dict()})
    cfg = parse_train("--resume", str(path), "--lr", "0.1")
    assert (cfg.iters, cfg.batch_size, cfg.lr, cfg.resume, cfg.data) == (77, 3, 0.1, str(path), stored.data)
    # a data flag changes that part of the resumed run's data (here the held-out count), or names other data
    assert parse_train("--resume", str(path), "--num-val-images", "7").data == RunData.shapes(50, 7)
    other = parse_train("--resume", str(path), "--annotations", "a.json", "--images", "img").data
    assert other == RunData(CocoFiles("a.json", "img"))


def test_errors_are_one_line_naming_the_file(tmp_path, capsys):
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "error: checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["predict", "--checkpoint", str(bad), "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.pt is corrupt or truncated" in err
    assert cli.main(["train", "--data", str(tmp_path / "no_coco"), "--iters", "1"]) == 2
    assert "no_coco" in capsys.readouterr().err


def test_empty_dataset_is_an_error_naming_the_file(tmp_path, capsys):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))
    assert cli.main(["train", "--data", str(root), "--val-split", "none", "--iters", "1", "--out",
                     str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: empty dataset") and "instances_train2017.json" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_download_subset_wiring(coco_root, tmp_path, capsys):
    out = tmp_path / "small"
    assert cli.main(["download", "--data", str(coco_root), "--split", "val2017", "--subset", str(out),
                     "--num-images", "5", "--link", "symlink"]) == 0  # the source is complete: nothing fetched
    assert "val2017: 5 images" in capsys.readouterr().out
    ds = CocoDataset(out, "val2017")
    assert len(ds) == 5 and all((out / "val2017" / ds.coco.imgs[i]["file_name"]).is_symlink() for i in ds.image_ids)
    full = CocoDataset(coco_root, "val2017")
    assert ds.label_to_cat_id == full.label_to_cat_id  # a subset by count keeps every category


SUMMARY = re.compile(r"^box AP \d\.\d{3} \| mask AP \d\.\d{3} \| \d+m\d{2}s$")


@pytest.mark.slow
def test_train_evaluate_predict_demo_on_shapes(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", "shapes", "--num-images", "8", "--num-val-images", "4", "--image-size", "64",
                     "--iters", "4", "--batch-size", "2", "--out", str(run), "--no-progress", "--log-every", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]), out[-1]
    for name in ("last.pt", "best.pt", "metrics.jsonl", "loss_curve.png", "results.json"):
        assert (run / name).is_file(), name
    state = read_checkpoint(run / "last.pt")
    assert state["progress"]["step"] == 4 and state["class_names"][1:] == ["square", "circle", "triangle"]

    assert cli.main(["evaluate", "--checkpoint", str(run / "last.pt"), "--num-images", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]) and (run / "results_shapes_4.json").is_file()  # 4 held-out images
    assert isinstance(json.loads((run / "results_shapes_4.json").read_text()), list)

    image = tmp_path / "shape.png"
    Image.fromarray(ShapesDataset(1, 64, seed=5).load_image(0)).save(image)
    assert cli.main(["predict", "--checkpoint", str(run / "last.pt"), str(image), "--out", str(tmp_path / "pred"),
                     "--score-thresh", "0"]) == 0
    drawn = Image.open(tmp_path / "pred" / "shape_pred.png")
    assert drawn.size == (64, 64)
    listed = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert listed[0]["image"] == str(image) and isinstance(listed[0]["detections"], list)

    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--iters", "2", "--num-val-images", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]), out[-1]
    assert (tmp_path / "demo" / "predictions.png").is_file()


def circle_detector(box, score, radius):
    """The answer of a stand-in that 'detects' one circle (a box, a score and a disc of `radius` pixels filling the
    box, as a 40 x 40 mask) and one low-scoring square at the top-left corner."""
    side = box[2] - box[0]
    yy, xx = torch.meshgrid(torch.arange(40) + 0.5, torch.arange(40) + 0.5, indexing="ij")
    disc = (((xx - 20) ** 2 + (yy - 20) ** 2) <= (radius * 40 / side) ** 2).float()  # (M, M), M = 40
    return lambda h, w: {"boxes": torch.tensor([box, [0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([2, 1]),
                         "scores": torch.tensor([score, 0.1]), "masks": torch.stack([disc, torch.zeros_like(disc)])}


def test_predict_draws_masks_boxes_labels_and_scores(tmp_path, monkeypatch, capsys):
    """A detection is drawn where it is: its mask tinted with the class colour, its box outlined, its
    'label score' tag above it; the low-scoring one is neither drawn nor listed."""
    from minimaskrcnn.viz import color

    h, w = 80, 120
    model = StandIn(circle_detector([40.0, 25.0, 80.0, 65.0], 0.93, 15))  # a disc of radius 15 at (60, 45)
    monkeypatch.setattr(predict, "model_from_checkpoint",
                        lambda checkpoint, device, **kw: (model, {"class_names": ["background", "square", "circle"]}))
    image = tmp_path / "grey.png"
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(image)
    assert cli.main(["predict", "--checkpoint", "unused.pt", str(image), "--out", str(tmp_path / "pred")]) == 0
    drawn = np.asarray(Image.open(tmp_path / "pred" / "grey_pred.png").convert("RGB")).astype(float)
    assert drawn.shape == (h, w, 3)
    tint = 0.5 * 128 + 0.5 * 255 * np.asarray(color(2))[:3]  # overlay_masks blends at alpha 0.5
    assert np.abs(drawn[45, 60] - tint).max() <= 2  # inside the disc
    assert np.abs(drawn[5, 110] - 128).max() <= 1  # far from everything: untouched
    assert np.abs(drawn[28, 42] - 128).max() <= 1  # inside the box, outside the disc: untouched
    edge = drawn[30:60, 38:42]  # along the left side of the box (x = 40)
    assert (np.abs(edge - 128).max(axis=-1) > 30).any(axis=1).all()
    assert (np.abs(drawn[15:24, 40:80] - 128).max(axis=-1) > 30).any()  # the tag above the box
    assert not (np.abs(drawn[0:4, 0:4] - 128).max(axis=-1) > 30).all()  # the 0.1 detection is not drawn
    listed = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert listed[0]["detections"] == [{"label": "circle", "score": 0.93, "box": [40.0, 25.0, 80.0, 65.0]}]
    assert "1 detection(s)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def shapes_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--data", "shapes", "--num-images", "4", "--num-val-images", "2", "--image-size", "64",
                     "--iters", "1", "--batch-size", "2", "--out", str(run), "--no-progress"]) == 0
    return run / "last.pt"


def test_an_output_that_cannot_be_written_is_refused_before_any_work(shapes_checkpoint, tmp_path, capsys,
                                                                     monkeypatch):
    from minimaskrcnn import evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("inference ran"))
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    for argv in (["evaluate", "--checkpoint", str(shapes_checkpoint), "--out", str(blocker / "results.json")],
                 ["evaluate", "--checkpoint", str(shapes_checkpoint), "--out", str(tmp_path)],
                 ["train", "--data", "shapes", "--iters", "1", "--out", str(blocker)]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "cannot write to the folder" in err or "is a folder; name the results file" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "shapes", "--grad-clip", "-1"], "--grad-clip must be a number > 0; got -1.0"),
    (["train", "--data", "shapes", "--epochs", "-1"], "--epochs must be a number > 0; got -1.0"),
    (["train", "--data", "shapes", "--epochs", "0"], "--epochs must be a number > 0; got 0.0"),
    (["train", "--data", "shapes", "--max-size", "1"], "--max-size must be an integer >= 32; got 1"),
    (["train", "--data", "shapes", "--device", "tpu"], "--device must be 'auto', 'cpu', 'cuda', 'cuda:<index>'"),
    (["train", "--data", "shapes", "--num-images", "0"], "--num-images must be an integer >= 1; got 0"),
    (["train", "--data", "shapes", "--num-val-images", "-1"], "--num-val-images must be an integer >= 0; got -1"),
    (["train", "--data", "shapes", "--image-size", "8"], "--image-size must be an integer >= 16; got 8"),
    (["demo", "--num-val-images", "-2"], "--num-val-images must be an integer >= 0; got -2"),
    (["demo", "--iters", "0"], "--iters must be an integer >= 1; got 0"),
    (["evaluate", "--checkpoint", "x.pt", "--device", "tpu"], "--device must be 'auto', 'cpu', 'cuda'"),
    (["predict", "--checkpoint", "x.pt", "a.png", "--device", "tpu"], "--device must be 'auto', 'cpu', 'cuda'"),
    (["evaluate", "--checkpoint", "x.pt", "--batch-size", "0"], "--batch-size must be an integer >= 1; got 0"),
    (["evaluate", "--checkpoint", "x.pt", "--num-images", "0"], "--num-images must be an integer >= 1; got 0"),
])
def test_bad_flags_are_one_line_errors_naming_the_flag(argv, message, capsys, tmp_path):
    assert cli.main(argv + (["--out", str(tmp_path / "out")] if argv[0] in ("train", "demo") else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_the_image_size_flags_of_a_loaded_model_are_named_as_flags(shapes_checkpoint, tmp_path, capsys):
    """They said "TransformConfig.min_size must be ...", the field the user never typed."""
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "a.png")
    for argv in (["evaluate", "--checkpoint", str(shapes_checkpoint), "--min-size", "0"],
                 ["predict", "--checkpoint", str(shapes_checkpoint), str(tmp_path / "a.png"), "--out",
                  str(tmp_path / "p"), "--min-size", "0"]):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err == "error: --min-size must be an integer >= 32; got 0\n"


def test_a_recipe_gives_its_settings_and_the_flags_given_go_over_them(tmp_path, capsys):
    from minimaskrcnn.cli.train import train_config_from_args

    parser = cli.build_parser()
    args = parser.parse_args(["train", "--recipe", "finetune", "--annotations", "my.json", "--images", "imgs",
                              "--iters", "40", "--out", str(tmp_path / "run")])
    cfg = train_config_from_args(args)
    recipe = settings(training.FINETUNE)
    got = settings(cfg)
    assert {k: v for k, v in got.items() if k not in ("iters", "out")} == \
        {k: v for k, v in recipe.items() if k not in ("iters", "out")}
    assert (cfg.iters, cfg.out, cfg.init, cfg.trainable_layers) == (40, str(tmp_path / "run"), "coco", 0)
    assert cfg.data == RunData.files("my.json", "imgs")
    assert train_config_from_args(parser.parse_args(["train", "--recipe", "demo"])) == training.DEMO
    # a recipe sets up a new run: with --resume it is refused in one line, before anything is read
    assert cli.main(["train", "--recipe", "demo", "--resume", str(tmp_path / "last.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--recipe" in err and "--resume" in err
