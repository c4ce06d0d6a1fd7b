"""Command line: `python -m minimaskrcnn {train,evaluate,predict,download,demo,ablate}`, `--help` on each.

    python -m minimaskrcnn demo                                      # what `make demo` runs
    python -m minimaskrcnn train --config r50_fpn --data data/coco   # the paper's model on COCO
    torchrun --nproc_per_node 8 -m minimaskrcnn train --config r50_fpn --amp bf16   # 8 GPUs, DDP
    python -m minimaskrcnn train --resume runs/train/last.pt         # continue exactly where it stopped
    python -m minimaskrcnn evaluate --checkpoint runs/train/last.pt --split val2017
    python -m minimaskrcnn predict --checkpoint runs/demo/last.pt photo.jpg --out predictions
    python -m minimaskrcnn download --split val2017                  # official COCO into data/coco

Bad input (a missing file, a corrupt checkpoint, a NaN loss, CUDA out of memory, a folder that cannot be
written) ends with a one-line `error: ...` and exit status 2. Ctrl-C during training finishes the step, saves a
checkpoint and exits with 130; SIGTERM does the same and exits with 143.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import torch

from . import exercises, paths
from .ablation import run as ablation_run
from .training import DEMO, TrainConfig, build_datasets, resume_config, train
from .training.runtime import check_device_name
from .training.stop import Terminated

# flag -> (TrainConfig field, type, help); defaults come from TrainConfig (or the resumed checkpoint)
TRAIN_FLAGS = {
    "--config": ("config", str, "model preset: cpu_small, r50_fpn, r50_c4 (default: cpu_small for "
                                "--data shapes, else r50_fpn)"),
    "--data": ("data", str, "COCO root folder, or 'shapes' for the synthetic data (default: $MINIMASKRCNN_COCO, "
                            "else <repo>/data/coco, else the sample <repo>/data/coco_sample)"),
    "--annotations": ("annotations", str, "your own data: a COCO-format JSON (CVAT, Labelme, Roboflow export); "
                                          "replaces --data and --split"),
    "--images": ("images", str, "the image folder of --annotations (file_name is relative to it)"),
    "--val-annotations": ("val_annotations", str, "a held-out COCO-format JSON evaluated at the end"),
    "--val-images": ("val_images", str, "the image folder of --val-annotations"),
    "--split": ("split", str, "COCO split to train on (default train2017)"),
    "--val-split": ("val_split", str, "COCO split evaluated at the end, 'none' for no evaluation (default val2017)"),
    "--num-images": ("num_images", int, "synthetic training images (--data shapes)"),
    "--num-val-images": ("num_val_images", int, "held-out synthetic images evaluated at the end (--data shapes)"),
    "--image-size": ("image_size", int, "synthetic image side in pixels (--data shapes)"),
    "--iters": ("iters", int, "optimizer steps in all"),
    "--epochs": ("epochs", float, "train this many passes over the data instead of --iters"),
    "--batch-size": ("batch_size", int, "images per step per process"),
    "--optimizer": ("optimizer", str, "sgd (paper) or adamw"),
    "--lr": ("lr", float, "base learning rate (default: 0.02 * global batch / 16 for SGD, 1e-3 for AdamW)"),
    "--weight-decay": ("weight_decay", float, "weight decay (paper: 1e-4)"),
    "--schedule": ("schedule", str, "step (paper) or cosine"),
    "--warmup-iters": ("warmup_iters", int, "linear warmup steps"),
    "--grad-clip": ("grad_clip", float, "clip the gradients' global L2 norm to this"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:1, ..."),
    "--seed": ("seed", int, "random seed"),
    "--out": ("out", str, "run folder for the log, checkpoints and loss curve"),
    "--workers": ("num_workers", int, "DataLoader worker processes"),
    "--log-every": ("log_every", int, "steps per metrics.jsonl record"),
    "--ckpt-every": ("ckpt_every", int, "steps between checkpoints"),
    "--eval-every": ("eval_every", int, "steps between held-out evaluations (0: at the end only)"),
    "--stop-at": ("stop_at", int, "end this run at this step (resume later); the schedule still spans --iters"),
    "--min-size": ("min_size", int, "resize the shorter image side to this (pixels; paper: 800)"),
    "--max-size": ("max_size", int, "cap the longer image side (pixels; paper: 1333)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minimaskrcnn", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train Mask R-CNN on COCO-format data or the synthetic shapes")
    for flag, (field, type_, help_) in TRAIN_FLAGS.items():
        p.add_argument(flag, dest=field, type=type_, default=None, help=help_)
    p.add_argument("--amp", nargs="?", const="fp16", default=None, choices=["off", "fp16", "bf16"],
                   help="mixed precision on CUDA: --amp (fp16 with a GradScaler) or --amp bf16")
    p.add_argument("--no-flip", dest="flip", action="store_const", const=False, default=None,
                   help="no random horizontal flips")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None)
    p.add_argument("--resume", default=None, help="checkpoint to continue from; its settings are reused "
                                                  "unless given again here")

    p = sub.add_parser("evaluate", help="COCO box and mask AP of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--annotations", default=None, help="a COCO-format JSON to evaluate on (with --images)")
    p.add_argument("--images", default=None, help="the image folder of --annotations")
    p.add_argument("--data", default=None, help="COCO root or 'shapes' (default: the held-out set the "
                                                 "checkpoint's run used)")
    p.add_argument("--split", default="val2017", help="COCO split of --data (default: val2017)")
    p.add_argument("--num-images", type=int, default=200, help="held-out synthetic images (--data shapes)")
    p.add_argument("--out", default=None, help="results JSON (default: next to the checkpoint)")
    _model_flags(p)

    p = sub.add_parser("predict", help="draw a model's detections (masks, boxes, labels, scores) on images")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a minimaskrcnn checkpoint (e.g. runs/demo/last.pt)")
    which.add_argument("--weights", help="'coco': torchvision's COCO-trained model (downloaded once, 170 MB); "
                                         "or a torchvision maskrcnn_resnet50_fpn .pth file")
    p.add_argument("images", nargs="+", help="image files, or folders (every image in them, sorted)")
    p.add_argument("--out", default="predictions", help="folder for the drawn images and predictions.json")
    p.add_argument("--score-thresh", type=float, default=0.5, help="draw detections scoring at least this")
    p.add_argument("--cache", default=None, help="folder of downloaded weights (default: $MINIMASKRCNN_CACHE "
                                                 "or torch.hub's, where torchvision keeps the same file)")
    _model_flags(p)

    p = sub.add_parser("download", help="fetch official COCO (resumable, checksummed) and/or carve a subset")
    p.add_argument("--data", default=None, help="COCO root (default: $MINIMASKRCNN_COCO or <repo>/data/coco)")
    p.add_argument("--split", nargs="+", default=["train2017", "val2017"], help="splits to fetch")
    p.add_argument("--base-url", default=None, help="a mirror of http://images.cocodataset.org (same folders)")
    p.add_argument("--checksum", action="append", default=[], metavar="NAME=ALGO:HEX",
                   help="checksum of an archive, e.g. val2017.zip=md5:<hex> (repeatable; the 2017 MD5s are built in)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="accept archives without checking any checksum (not recommended)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a connection or a read may wait")
    p.add_argument("--keep-archives", action="store_true", help="keep the zip files after extracting")
    p.add_argument("--subset", default=None, metavar="ROOT", help="also write a subset COCO root here")
    p.add_argument("--num-images", type=int, default=None, help="subset: images per split")
    p.add_argument("--categories", nargs="+", default=None, help="subset: category names to keep")
    p.add_argument("--seed", type=int, default=0, help="subset: random seed of the image choice")
    p.add_argument("--link", default="copy", choices=["copy", "symlink", "hardlink"], help="subset: image files")

    p = sub.add_parser("demo", help="train the CPU model on synthetic shapes, evaluate, draw (make demo)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--iters", type=int, default=None, help="override the demo's step count")
    p.add_argument("--num-val-images", type=int, default=200, help="held-out synthetic images")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("ablate", help="rerun the paper's ablations (Table 2) on the synthetic shapes")
    ablation_run.add_arguments(p)

    p = sub.add_parser("check", help="run the package's checks on your own box_iou, nms, roi_align, ... (notebook 09)")
    exercises.add_arguments(p)
    return parser


def _model_flags(p) -> None:
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--min-size", type=int, default=None, help="override the checkpoint's transform.min_size")
    p.add_argument("--max-size", type=int, default=None, help="override the checkpoint's transform.max_size")


def train_config_from_args(args) -> TrainConfig:
    """Explicit flags over the resumed checkpoint's settings (with --resume) or TrainConfig's defaults."""
    given = {field: getattr(args, field) for field, *_ in TRAIN_FLAGS.values() if getattr(args, field) is not None}
    given.update({k: getattr(args, k) for k in ("amp", "flip", "progress") if getattr(args, k) is not None})
    if given.get("val_split", "").lower() == "none":
        given["val_split"] = None
    if ("annotations" in given) != ("images" in given):
        raise ValueError("--annotations and --images go together: a COCO-format JSON and its image folder")
    if ("val_annotations" in given) != ("val_images" in given):
        raise ValueError("--val-annotations and --val-images go together: a COCO-format JSON and its image folder")
    if "annotations" in given:
        given["data"] = "annotations"
        given.setdefault("val_split", None)  # a held-out set only when --val-annotations names one
    try:
        if args.resume:
            return resume_config(args.resume, **given)
        data = given.pop("data", None) or str(paths.coco_root())
        config = given.pop("config", None) or ("cpu_small" if data == "shapes" else "r50_fpn")
        return TrainConfig(config=config, data=data, **given)
    except ValueError as e:
        raise in_flag_terms(e) from e


def in_flag_terms(e: ValueError) -> ValueError:
    """"TrainConfig.grad_clip must be ..." -> "--grad-clip must be ...": the message in what the user typed."""
    message = str(e)
    for flag, (field, *_) in TRAIN_FLAGS.items():
        message = message.replace(f"TrainConfig.{field} ", f"{flag} ")
    return ValueError(message)


def cmd_train(args) -> None:
    result = train(train_config_from_args(args))
    print(f"trained {result.step} steps: {result.out / 'last.pt'}, {result.out / 'metrics.jsonl'}")
    if result.metrics is not None:
        from .evaluation import summary_line

        print(summary_line(result.metrics, result.seconds))


def cmd_evaluate(args) -> None:
    from .data.sources import evaluation_set
    from .evaluation import evaluate, summary_line
    from .predict import model_from_checkpoint

    check_device_name("--device", args.device)
    start = time.perf_counter()
    model, state = model_from_checkpoint(args.checkpoint, args.device, min_size=args.min_size, max_size=args.max_size)
    dataset = evaluation_set(state, args.checkpoint, args.annotations, args.images, args.data, args.split,
                             args.num_images)
    trained_names = state.get("class_names")
    if dataset.num_classes != model.config.num_classes or (trained_names and trained_names != dataset.class_names):
        raise ValueError(f"checkpoint {args.checkpoint} was trained on {model.config.num_classes - 1} classes "
                         f"{(trained_names or [])[1:6]}..., the dataset {dataset} has {dataset.num_classes - 1} "
                         f"{dataset.class_names[1:6]}...")
    name = Path(dataset.ann_file).stem if hasattr(dataset, "ann_file") else "shapes"
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name(f"results_{name}.json")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the results file, e.g. {out / 'results.json'}")
    paths.writable_folder(out.parent)  # before the inference, whose results would be lost
    metrics = evaluate(model, dataset, args.batch_size, out_json=out)
    print(f"results: {out}")
    print(summary_line(metrics, time.perf_counter() - start))


def cmd_predict(args) -> None:
    from .predict import image_paths, load_predictor, predict_images

    check_device_name("--device", args.device)
    images = image_paths(args.images)
    paths.writable_folder(Path(args.out))  # before a model is loaded
    model, names = load_predictor(args.checkpoint, args.weights, args.cache, args.device, min_size=args.min_size,
                                  max_size=args.max_size)
    skipped = predict_images(model, names, images, Path(args.out), args.score_thresh)
    if len(skipped) == len(images):
        raise ValueError(f"none of the {len(images)} image(s) could be read (see the warnings above)")
    if skipped:
        print(f"{len(images) - len(skipped)} image(s) predicted, {len(skipped)} skipped: {', '.join(skipped)}; "
              f"see {Path(args.out) / 'predictions.json'}")


def cmd_download(args) -> None:
    from .data import download, subset

    root = paths.download_root(args.data)  # data/coco by default: never into the shipped sample
    if args.subset is None or paths.coco_root_problems(root, args.split):
        names = download.archive_urls(args.split)
        checksums = dict(download.KNOWN_MD5)
        for given in args.checksum:
            name, sep, value = given.partition("=")
            if not sep or name not in names:
                raise ValueError(f"--checksum {given!r}: expected NAME=ALGO:HEX with NAME one of {sorted(names)}")
            checksums[name] = "%s:%s" % download.parse_checksum(value, f"--checksum {name}")
        if not args.verify:
            print("WARNING: --no-verify: the archives are NOT checked against any checksum; a corrupt or "
                  "tampered file is only noticed if it fails to unzip", file=sys.stderr)
        kw = {"base_url": args.base_url} if args.base_url else {}
        report = download.download_coco(root, tuple(args.split), checksums=checksums, verify=args.verify,
                                        keep_archives=args.keep_archives, timeout=args.timeout, **kw)
        for name, how in report.items():
            print(f"{name}: {how}")
    if args.subset is not None:
        for split in args.split:
            info = subset.make_subset(paths.ann_file(root, split), paths.ann_file(args.subset, split),
                                      args.num_images, args.categories, args.seed, images_dir=root / split,
                                      out_images_dir=Path(args.subset) / split, link=args.link)
            print(f"{split}: {info['images']} images, {info['annotations']} annotations, "
                  f"{info['categories']} categories -> {info['out_file']}")


def cmd_demo(args) -> None:
    from .evaluation import summary_line
    from .viz import detections_grid

    start = time.perf_counter()
    try:
        cfg = dataclasses.replace(DEMO, out=args.out, num_val_images=args.num_val_images, device=args.device,
                                  iters=DEMO.iters if args.iters is None else args.iters)
    except ValueError as e:
        raise in_flag_terms(e) from e
    result = train(cfg)
    _, val = build_datasets(cfg)
    model = result.model.eval()
    images = [val[i][0] for i in range(min(8, len(val)))]
    device = next(model.parameters()).device
    with torch.no_grad():
        detections = [{k: v.cpu() for k, v in d.items()} for d in model([im.to(device) for im in images]).detections]
    import matplotlib.pyplot as plt

    plt.close(detections_grid(images, detections, val.class_names, path=result.out / "predictions.png"))
    print(f"checkpoint {result.out / 'last.pt'}, loss curve {result.out / 'loss_curve.png'}, "
          f"predictions {result.out / 'predictions.png'}")
    print(summary_line(result.metrics, time.perf_counter() - start))


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "download": cmd_download,
            "demo": cmd_demo, "ablate": ablation_run.cmd_ablate, "check": exercises.cmd_check}


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only; no window, also on a machine without a display
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"  # one line, no source line
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as e:  # SIGTERM: the run saved and stopped; exit as a process killed by it would
        print(f"error: {e}", file=sys.stderr)
        return 128 + e.signum
    except (ValueError, FloatingPointError, torch.cuda.OutOfMemoryError, OSError) as e:  # DownloadError included
        print(f"error: {e}", file=sys.stderr)
        return 2
