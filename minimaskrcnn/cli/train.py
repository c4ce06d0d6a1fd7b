"""`python -m minimaskrcnn train`: flags that map one to one onto TrainConfig's fields, and data flags that
together name its data record (data/sources.py); or `--resume` a run with its stored settings and data (flags
given again override them)."""
from __future__ import annotations

import dataclasses

from ..data.sources import CocoFiles, RunData, Shapes
from ..training import DEMO, FINETUNE, TrainConfig, resume_config, train
from .flags import check_none_empty

RECIPES = {"demo": DEMO, "finetune": FINETUNE}  # train --recipe NAME

# flag -> (TrainConfig field, type, help); defaults come from TrainConfig (or the resumed checkpoint)
TRAIN_FLAGS = {
    "--config": ("config", str, "model preset: cpu_small, r50_fpn, r50_c4, cpu_small_keypoints, keypoint_r50_fpn "
                                "(default: cpu_small for --data shapes, cpu_small_keypoints with --keypoints, "
                                "else r50_fpn)"),
    "--init": ("init", str, "weights to start from: imagenet (default for r50_fpn, r50_c4), coco (fine-tune "
                            "torchvision's COCO model; categories COCO has keep its rows), none (default for "
                            "cpu_small), or a file: a minimaskrcnn checkpoint or a torchvision state_dict"),
    "--trainable-layers": ("trainable_layers", int, "ResNet stages that train, of 5 (default: 3 from pretrained "
                                                    "weights, 5 from scratch; 0: the FPN and the heads only)"),
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

# flag -> (argument of data_from_flags, type, help): together they name TrainConfig.data (data/sources.py)
DATA_FLAGS = {
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
    "--shapes-kinds": ("kinds", str, "the synthetic shapes' kinds, the classes (--data shapes; default "
                                     "square,circle,triangle; also star,ring,cross)"),
}

# what the data records call the flags' values, in their error messages
DATA_TERMS = {"Shapes.num_images": "--num-images", "Shapes.image_size": "--image-size",
              "Shapes.held_out.num_images": "--num-val-images", "Shapes.kinds:": "--shapes-kinds:"}


def add_arguments(p) -> None:
    for flag, (field, type_, help_) in {**DATA_FLAGS, **TRAIN_FLAGS}.items():
        p.add_argument(flag, dest=field, type=type_, default=None, help=help_)
    p.add_argument("--amp", nargs="?", const="fp16", default=None, choices=["off", "fp16", "bf16"],
                   help="mixed precision on CUDA: --amp (fp16 with a GradScaler) or --amp bf16")
    p.add_argument("--keypoints", action="store_const", const=True, default=None,
                   help="--data shapes with their keypoints (corners, vertices, extreme points), for a keypoint "
                        "model (Sec. 5); COCO-format data has keypoints when its JSON does (person_keypoints_*.json)")
    p.add_argument("--no-flip", dest="flip", action="store_const", const=False, default=None,
                   help="no random horizontal flips")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None)
    p.add_argument("--resume", default=None, help="checkpoint to continue from; its settings are reused "
                                                  "unless given again here")
    p.add_argument("--overwrite", action="store_const", const=True, default=None,
                   help="--out holds a run: move its files into <out>/replaced-<time>/ and start afresh")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="start from a named recipe's settings (training/recipes.py), the flags given here over them: "
                        "finetune (training.FINETUNE: R50-FPN from COCO at 512 pixels, 300 SGD steps, the FPN and "
                        "heads training) or demo (training.DEMO)")


def train_config_from_args(args) -> TrainConfig:
    """Explicit flags over the resumed checkpoint's settings (with --resume) or TrainConfig's defaults."""
    check_none_empty(args, {flag: field for flag, (field, type_, _) in {**DATA_FLAGS, **TRAIN_FLAGS}.items()
                            if type_ is str} | {"--resume": "resume"})
    given = {field: getattr(args, field) for field, *_ in TRAIN_FLAGS.values() if getattr(args, field) is not None}
    switches = ("amp", "flip", "progress", "overwrite")
    given.update({k: getattr(args, k) for k in switches if getattr(args, k) is not None})
    data_flags = {name: getattr(args, name) for name, *_ in DATA_FLAGS.values() if getattr(args, name) is not None}
    if getattr(args, "keypoints", None):
        data_flags["keypoints"] = True
    if ("annotations" in data_flags) != ("images" in data_flags):
        raise ValueError("--annotations and --images go together: a COCO-format JSON and its image folder")
    if ("val_annotations" in data_flags) != ("val_images" in data_flags):
        raise ValueError("--val-annotations and --val-images go together: a COCO-format JSON and its image folder")
    if args.resume and getattr(args, "recipe", None):
        raise ValueError("--recipe sets up a new run and --resume continues one with its own settings: "
                         "give one of them")
    try:
        if args.resume:
            cfg = resume_config(args.resume, **given)
            data = data_from_flags(data_flags, cfg.data)
            return dataclasses.replace(cfg, data=data) if data is not None else cfg
        if getattr(args, "recipe", None):  # a named recipe's settings, the flags given over them
            recipe = RECIPES[args.recipe]
            return dataclasses.replace(recipe, **given, data=data_from_flags(data_flags) or recipe.data)
        data = data_from_flags(data_flags) or RunData.coco()
        shapes = isinstance(data.train, Shapes)
        config = given.pop("config", None) or ("r50_fpn" if not shapes else
                                               "cpu_small_keypoints" if data.train.keypoints else "cpu_small")
        return TrainConfig(config=config, data=data, **given)
    except ValueError as e:
        raise in_flag_terms(e) from e


def data_from_flags(flags: dict, resumed: RunData | None = None) -> RunData | None:
    """The data the data flags name (None when none is given): --annotations and --images your own files,
    --data shapes the synthetic shapes, else a COCO root (--data, default paths.coco_root()) and its splits.
    With --resume, flags that do not name other data (--num-val-images, --val-annotations, ...) change the
    resumed run's data, as they would have changed its flags."""
    if not flags:
        return None
    if resumed is not None and "data" not in flags and "annotations" not in flags:
        base = flags_of(resumed)
        if not base:  # dataset objects given to train(): only naming other data replaces them
            return None
        flags = {**base, **flags}
    if flags.get("keypoints") and flags.get("data") != "shapes":
        raise ValueError("--keypoints goes with --data shapes; COCO-format data has keypoints when its JSON does: "
                         "--annotations person_keypoints_*.json --config keypoint_r50_fpn")
    if "annotations" in flags:
        return RunData.files(flags["annotations"], flags["images"], flags.get("val_annotations"),
                             flags.get("val_images"))
    if flags.get("data") == "shapes":
        return RunData.shapes(**{k: flags[k] for k in ("num_images", "num_val_images", "image_size", "seed",
                                                       "keypoints", "kinds") if k in flags})
    val_split = flags.get("val_split", "val2017")
    return RunData.coco(flags.get("data"), flags.get("split", "train2017"),
                        None if val_split.lower() == "none" else val_split)


def flags_of(data: RunData) -> dict:
    """The data flags that name `data` (and the shapes' seed, which no flag sets); {} for dataset objects."""
    train, val = data.train, data.val
    if isinstance(train, Shapes):
        return {"data": "shapes", "num_images": train.num_images, "image_size": train.image_size,
                "seed": train.seed, "num_val_images": val.num_images if isinstance(val, Shapes) else 0,
                "kinds": train.kinds, **({"keypoints": True} if train.keypoints else {})}
    if isinstance(train, CocoFiles):
        return {"annotations": train.annotations, "images": train.images,
                **({"val_annotations": val.annotations, "val_images": val.images} if isinstance(val, CocoFiles)
                   else {})}
    return {}


def in_flag_terms(e: ValueError) -> ValueError:
    """"TrainConfig.grad_clip must be ..." -> "--grad-clip must be ...": the message in what the user typed."""
    message = str(e)
    for flag, (field, *_) in TRAIN_FLAGS.items():
        message = message.replace(f"TrainConfig.{field} ", f"{flag} ")
    for term, flag in DATA_TERMS.items():
        message = message.replace(f"{term} ", f"{flag} ")
    return ValueError(message)


def run(args) -> None:
    result = train(train_config_from_args(args))
    print(f"trained {result.step} steps: {result.out / 'last.pt'}, {result.out / 'metrics.jsonl'}")
    if result.metrics is not None:
        from ..evaluation import summary_line

        print(summary_line(result.metrics, result.seconds))
