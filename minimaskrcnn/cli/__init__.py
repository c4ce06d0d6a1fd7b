"""Command line: `python -m minimaskrcnn {train,evaluate,predict,download,demo,ablate,check}`, `--help` on each.

    python -m minimaskrcnn demo                                      # what `make demo` runs
    python -m minimaskrcnn train --config r50_fpn --data data/coco   # the paper's model on COCO
    torchrun --nproc_per_node 8 -m minimaskrcnn train --config r50_fpn --amp bf16   # 8 GPUs, DDP
    python -m minimaskrcnn train --resume runs/train/last.pt         # continue exactly where it stopped
    python -m minimaskrcnn evaluate --checkpoint runs/train/last.pt --split val2017
    python -m minimaskrcnn predict --checkpoint runs/demo/last.pt photo.jpg --out predictions
    python -m minimaskrcnn download --split val2017                  # official COCO (where: paths.py)

One file per command in this folder, each with `add_arguments(parser)` and `run(args)`; this file builds the
parser from them and turns errors into exit statuses. Bad input (a missing file, a corrupt checkpoint, a NaN
loss, CUDA out of memory, a folder that cannot be written) ends with a one-line `error: ...` and exit status 2.
Ctrl-C during training finishes the step, saves a checkpoint and exits with 130; SIGTERM does the same and
exits with 143.
"""
from __future__ import annotations

import argparse
import sys
import warnings

import torch

from ..training.stop import Terminated
from . import ablate, check, demo, download, evaluate, predict, train
from .train import train_config_from_args

# name -> (module with add_arguments and run, one-line help)
COMMANDS = {
    "train": (train, "train Mask R-CNN on COCO-format data or the synthetic shapes"),
    "evaluate": (evaluate, "COCO box and mask AP of a checkpoint"),
    "predict": (predict, "draw a model's detections (masks, boxes, labels, scores) on images"),
    "download": (download, "fetch official COCO (resumable, checksummed) and/or carve a subset"),
    "demo": (demo, "train the CPU model on synthetic shapes, evaluate, draw (make demo)"),
    "ablate": (ablate, "rerun the paper's ablations (Table 2) on the synthetic shapes"),
    "check": (check, "run the package's checks on your own box_iou, nms, roi_align, ... (notebook 09)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minimaskrcnn", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=help_))
    return parser


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only; no window, also on a machine without a display
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"  # one line, no source line
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][0].run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as e:  # SIGTERM: the run saved and stopped; exit as a process killed by it would
        print(f"error: {e}", file=sys.stderr)
        return 128 + e.signum
    except (ValueError, FloatingPointError, torch.cuda.OutOfMemoryError, OSError) as e:  # DownloadError included
        print(f"error: {e}", file=sys.stderr)
        return 2


__all__ = ["main", "build_parser", "train_config_from_args", "COMMANDS"]
