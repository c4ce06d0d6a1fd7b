"""The real-data path on the CPU: COCO images -> CocoDataset -> `train` -> pycocotools evaluation.

A short from-scratch run of the CPU model on a few of the real train2017 images of the shipped COCO sample
(tests/conftest.py's coco_root), through the command line as a user runs it, with the evaluation
on those same training images: the model must overfit them, with train-set AP rising well above 0.

Honest about the shortcuts: NUM_IMAGES images drawn at random (seed 0) by the subset maker with every
category kept (so every object in them counts, small ones included), resized to a 128-pixel shorter
side, and the small from-scratch model (`cpu_small`), since the paper's R50-FPN at 800 pixels takes
minutes per step on a laptop CPU.
"""
import json
import os
import subprocess
import sys

import pytest

from minimaskrcnn import paths
from minimaskrcnn.data.subset import make_subset

NUM_IMAGES = 8
ITERS = 150


@pytest.mark.slow
def test_short_run_overfits_real_coco_images(coco_root, tmp_path):
    root = tmp_path / "coco"
    info = make_subset(paths.ann_file(coco_root, "train2017"), paths.ann_file(root, "train2017"), NUM_IMAGES,
                       seed=0, images_dir=coco_root / "train2017", out_images_dir=root / "train2017", link="symlink")
    assert info["images"] == NUM_IMAGES
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "minimaskrcnn", "train", "--config", "cpu_small", "--data", str(root), "--split", "train2017", "--val-split", "train2017",
            "--min-size", "128", "--max-size", "192", "--iters", str(ITERS), "--batch-size", "2",
            "--optimizer", "adamw", "--lr", "2e-3", "--warmup-iters", "20", "--schedule", "cosine",
            "--eval-every", str(ITERS // 2), "--log-every", "10", "--no-flip", "--no-progress", "--out", str(run)]
    # one thread: a training step this small loses more to two threads' contention than it gains on 2 cores
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [(r["step"], r["eval"]) for r in records if "eval" in r]
    print("losses", [round(x, 3) for x in losses])
    print("evals", [(s, round(m["bbox"]["AP"], 3), round(m["segm"]["AP"], 3)) for s, m in evals])
    assert [s for s, _ in evals] == [ITERS // 2, ITERS]
    assert losses[-1] < 0.5 * losses[0]
    (_, half), (_, end) = evals
    # measured on the shipped sample: AP 0.031 (box) / 0.005 (mask) at step 75, 0.22 / 0.079 at step 150
    # (200 steps reach 0.33 / 0.18, at a third more of the suite's slowest test)
    assert end["bbox"]["AP"] > 0.15 and end["segm"]["AP"] > 0.05, end
    for kind in ("bbox", "segm"):
        assert end[kind]["AP"] > half[kind]["AP"] + 0.04, kind
    # the results JSON is in the evaluation server's format: COCO image and category ids, RLE masks
    gt = json.loads(paths.ann_file(root, "train2017").read_text())
    results = json.loads((run / "results.json").read_text())
    assert results and {r["image_id"] for r in results} <= {im["id"] for im in gt["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in gt["categories"]}
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
