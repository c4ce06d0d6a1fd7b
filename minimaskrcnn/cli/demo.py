"""`python -m minimaskrcnn demo` (what `make demo` runs): the CPU model trained on the synthetic shapes with the
demo's recipe (training.DEMO), evaluated, and its predictions drawn."""
from __future__ import annotations

import dataclasses
import time

import torch

from ..training import DEMO, RunData, build_datasets, train
from .train import in_flag_terms


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--iters", type=int, default=None, help="override the demo's step count")
    p.add_argument("--num-val-images", type=int, default=200, help="held-out synthetic images")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true",
                   help="--out holds a run: move its files into <out>/replaced-<time>/ and start afresh")


def run(args) -> None:
    from ..evaluation import summary_line
    from ..viz import detections_grid

    start = time.perf_counter()
    try:
        held_out = DEMO.data.train.held_out(args.num_val_images)  # the demo's shapes, as many held out as asked
        cfg = dataclasses.replace(DEMO, out=args.out, data=RunData(DEMO.data.train, held_out), device=args.device,
                                  iters=DEMO.iters if args.iters is None else args.iters, overwrite=args.overwrite)
    except ValueError as e:
        raise in_flag_terms(e) from e
    train_set, val = build_datasets(cfg)
    result = train(cfg, train_set=train_set, val_set=val)
    if val is None:  # --num-val-images 0
        print(f"checkpoint {result.out / 'last.pt'}, loss curve {result.out / 'loss_curve.png'}")
        print("no held-out images (--num-val-images 0): no evaluation and no predictions drawn")
        return
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
