"""`python -m minimaskrcnn train`: flags that map one to one onto TrainConfig's fields, or `--resume` a run
with its stored settings (flags given again override them)."""
from __future__ import annotations

from .. import paths
from ..training import TrainConfig, resume_config, train

# flag -> (TrainConfig field, type, help); defaults come from TrainConfig (or the resumed checkpoint)
TRAIN_FLAGS = {
    "--config": ("config", str, "model preset: cpu_small, r50_fpn, r50_c4 (default: cpu_small for "
                                "--data shapes, else r50_fpn)"),
    "--data": ("data", str, "COCO root folder, or 'shapes' for the synthetic data (default: $MINIMASKRCNN_COCO, "
                            "else the downloaded COCO (data/coco in a clone, see paths.py), else the shipped sample)"),
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


def add_arguments(p) -> None:
    for flag, (field, type_, help_) in TRAIN_FLAGS.items():
        p.add_argument(flag, dest=field, type=type_, default=None, help=help_)
    p.add_argument("--amp", nargs="?", const="fp16", default=None, choices=["off", "fp16", "bf16"],
                   help="mixed precision on CUDA: --amp (fp16 with a GradScaler) or --amp bf16")
    p.add_argument("--no-flip", dest="flip", action="store_const", const=False, default=None,
                   help="no random horizontal flips")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None)
    p.add_argument("--resume", default=None, help="checkpoint to continue from; its settings are reused "
                                                  "unless given again here")


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


def run(args) -> None:
    result = train(train_config_from_args(args))
    print(f"trained {result.step} steps: {result.out / 'last.pt'}, {result.out / 'metrics.jsonl'}")
    if result.metrics is not None:
        from ..evaluation import summary_line

        print(summary_line(result.metrics, result.seconds))
