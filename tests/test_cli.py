"""The command line: --help on every command, flags -> TrainConfig, errors as one line, the subset wiring,
and a tiny train -> evaluate -> predict -> demo run on the synthetic shapes through `main`."""
import json
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from minimaskrcnn import cli, engine
from minimaskrcnn.checkpoint import read_checkpoint, save_checkpoint
from minimaskrcnn.data import CocoDataset, ShapesDataset


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "download", "demo"])
def test_help_of_every_command(command):
    proc = subprocess.run([sys.executable, "-m", "minimaskrcnn", command, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m minimaskrcnn {command}")
    expected = {"train": "--resume", "evaluate": "--checkpoint", "predict": "--score-thresh",
                "download": "--subset", "demo": "--out"}[command]
    assert expected in proc.stdout


def parse_train(*argv):
    return cli.train_config_from_args(cli.build_parser().parse_args(["train", *argv]))


def test_train_flags_map_to_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMASKRCNN_COCO", str(tmp_path / "coco"))
    cfg = parse_train("--iters", "90", "--batch-size", "4", "--lr", "0.01", "--amp", "--min-size", "600",
                      "--val-split", "none", "--no-flip", "--workers", "3")
    assert (cfg.iters, cfg.batch_size, cfg.lr, cfg.amp, cfg.min_size, cfg.val_split, cfg.flip, cfg.num_workers) \
        == (90, 4, 0.01, "fp16", 600, None, False, 3)
    assert (cfg.data, cfg.config) == (str(tmp_path / "coco"), "r50_fpn")  # COCO and the paper's model by default
    assert parse_train("--amp", "bf16").amp == "bf16"
    shapes = parse_train("--data", "shapes")
    assert (shapes.data, shapes.config, shapes.iters) == ("shapes", "cpu_small", engine.TrainConfig().iters)


def test_resume_reuses_the_stored_settings_unless_given_again(tmp_path):
    stored = engine.TrainConfig(data="shapes", iters=77, lr=0.3, batch_size=3, out=str(tmp_path))
    path = save_checkpoint(tmp_path / "last.pt", {"model": {}, "train_config": stored.__dict__})
    cfg = parse_train("--resume", str(path), "--lr", "0.1")
    assert (cfg.iters, cfg.batch_size, cfg.lr, cfg.resume) == (77, 3, 0.1, str(path))


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
    assert cli.main(["train", "--data", "shapes", "--num-images", "8", "--image-size", "64", "--iters", "4",
                     "--batch-size", "2", "--out", str(run), "--no-progress", "--log-every", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]), out[-1]
    for name in ("last.pt", "best.pt", "metrics.jsonl", "loss_curve.png", "results.json"):
        assert (run / name).is_file(), name
    state = read_checkpoint(run / "last.pt")
    assert state["progress"]["step"] == 4 and state["class_names"][1:] == ["square", "circle", "triangle"]

    assert cli.main(["evaluate", "--checkpoint", str(run / "last.pt"), "--num-images", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(out[-1]) and (run / "results_shapes.json").is_file()
    assert isinstance(json.loads((run / "results_shapes.json").read_text()), list)

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
