"""torch.compile on a training step: the step time and the compile time, with and without it.

    python benchmarks/compile.py                   # CPU: cpu_small, the demo's step
    python benchmarks/compile.py --device cuda     # GPU: cpu_small, then R50-FPN (batch 2, 800x1216)

Workloads: cpu_small (config.cpu_small()) on a batch of 4 synthetic shapes images of 128x128, the demo's
training step (forward with targets, backward of the summed losses, an AdamW step); on CUDA also R50-FPN
(config.r50_fpn(91), random weights) on 2 random 800x1216 images with 6 boxes each, the step of
benchmarks/model.py plus SGD.

Variants:
  eager      no compilation
  backbone   torch.compile(model.backbone): ResNet + FPN, whose shapes are fixed by the image size
  model      torch.compile(model): the whole model, which Dynamo splits wherever Python decides on data
             (NMS, sampling, the per-level loops); the heads see a different number of RoIs each step

Each variant starts from the same weights and batch. "first steps" is the wall time of the first
--warmup steps, where the compilation happens (a second compile follows when a shape changes);
"compile" is that minus --warmup steady steps; "step" is the median of --repeat steps after them.
TorchInductor keeps what it compiled in a cache on disk (TORCHINDUCTOR_CACHE_DIR, by default under
/tmp), so a second run compiles several times faster than the first: point TORCHINDUCTOR_CACHE_DIR at
an empty folder to time a first compilation.
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from minimaskrcnn.config import cpu_small, r50_fpn
from minimaskrcnn.model import MaskRCNN

VARIANTS = ("eager", "backbone", "model")


def shapes_batch(device: torch.device, batch: int = 4) -> tuple[list, list]:
    from minimaskrcnn.data import ShapesDataset, collate  # needs pycocotools

    data = ShapesDataset(batch, image_size=128, seed=0)
    images, targets = collate([data[i] for i in range(batch)])
    return ([im.to(device) for im in images],
            [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets])


def r50_batch(device: torch.device) -> tuple[list, list]:
    from model import make_inputs  # benchmarks/model.py

    return make_inputs(2, device)


def prepare(base: MaskRCNN, variant: str) -> tuple[MaskRCNN, torch.optim.Optimizer]:
    torch._dynamo.reset()  # no compiled code carried over from the previous variant
    model = copy.deepcopy(base).train()
    if variant == "backbone":
        model.backbone = torch.compile(model.backbone)
    elif variant == "model":
        model = torch.compile(model)
    return model, torch.optim.AdamW(model.parameters(), lr=2e-3)


def measure(base: MaskRCNN, batch: tuple[list, list], variant: str, warmup: int, repeat: int,
            device: torch.device) -> tuple[float, float, float]:
    """(seconds of the first `warmup` steps, compile seconds, median steady step seconds)."""
    model, optimizer = prepare(base, variant)
    images, targets = batch

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses = model(images, targets).losses
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    first = sum(step() for _ in range(warmup))
    steady = statistics.median(step() for _ in range(repeat))
    return first, first - warmup * steady, steady


def report(name: str, base: MaskRCNN, batch, args, device: torch.device) -> None:
    print(f"\n{name}: {args.warmup} first steps, then the median of {args.repeat}")
    header = f"{'variant':<10} {'first steps s':>13} {'compile s':>10} {'step ms':>9} {'vs eager':>9}"
    print(header)
    print("-" * len(header))
    eager = None
    for variant in args.variants.split(","):
        first, compile_s, steady = measure(base, batch, variant, args.warmup, args.repeat, device)
        eager = steady if variant == "eager" else eager
        ratio = f"{steady / eager:9.2f}" if eager else f"{'-':>9}"
        print(f"{variant:<10} {first:13.1f} {compile_s:10.1f} {steady * 1e3:9.0f} {ratio}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS}")
    parser.add_argument("--warmup", type=int, default=3, help="first steps, where compilation happens")
    parser.add_argument("--repeat", type=int, default=10, help="timed steady steps (median reported)")
    parser.add_argument("--skip-r50", action="store_true", help="on CUDA, only cpu_small")
    args = parser.parse_args()
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    report("cpu_small, 4 shapes images of 128x128 (the demo's step)", MaskRCNN(cpu_small()).to(device),
           shapes_batch(device), args, device)
    if device.type == "cuda" and not args.skip_r50:
        torch.manual_seed(0)
        report("R50-FPN, 2 images of 800x1216", MaskRCNN(r50_fpn(num_classes=91)).to(device), r50_batch(device),
               args, device)


if __name__ == "__main__":
    main()
