"""Speed and memory of our R50-FPN Mask R-CNN against torchvision's maskrcnn_resnet50_fpn.

    python benchmarks/model.py                         # CPU (slow: about a minute per row on 2 cores)
    python benchmarks/model.py --device cuda --repeat 10
    python benchmarks/model.py --device cuda --amp bf16

Both models hold the same weights (torchvision's, random under a fixed seed, converted into ours with
convert.py) and see the same inputs: 800x1216 images (so the transform keeps their size), batch 1 and 2.
The classifier's bias is raised, as in tests/test_torchvision_equivalence.py, so that the 100
detections per image pass the score threshold and the mask branch runs on them as it would with
trained weights. Both use frozen BatchNorm and train the last 3 ResNet stages (torchvision's defaults
for a pretrained backbone).

Rows:
  inference   eval mode, no_grad, detections with pasted masks; time per image
  train step  train mode, forward + backward of the summed losses (targets: 6 boxes with masks per
              image); time per step
Peak memory: on CUDA torch.cuda.max_memory_allocated() during the call, minus what was allocated
before it (weights, inputs). On the CPU the process's resident set (RSS, read from /proc every 2 ms
by a thread) at its highest during the call, minus RSS before it: the memory the call took from the
system, allocator caching included.
Times are medians of --repeat runs after one warm-up; ours and torchvision's runs alternate, so that a
machine shared with other work slows both alike. "ratio" is ours / torchvision's (< 1: ours is better).
Ours runs its ops on their default path: the reference (pure PyTorch) on the CPU, the Triton kernels on
CUDA; on CUDA the last columns run ours once more with MINIMASKRCNN_OPS=reference (ops/triton/__init__.py).

The fine-tune step (`--finetune-only` runs it alone): training.FINETUNE's step, R50-FPN at a 512-pixel shorter
side (images of 512x683, a 3:4 photo, kept as they are), batch 2, 3 classes and the background, the stages
FINETUNE freezes frozen in both (torchvision's trainable_backbone_layers), one thread (--finetune-threads): ours
against torchvision's maskrcnn_resnet50_fpn, forward, backward and an SGD step of the trainable weights, their
runs alternating; wall and CPU seconds per step, medians.

Last, the cpu_small preset's training step (forward, backward and an SGD step) on 8 synthetic shapes
images of 128x128, the size the CPU training runs on, after 50 steps of training (wall and CPU time:
on a machine shared with other jobs the CPU time is the steadier number; run it with
OMP_NUM_THREADS=1 there, as two OpenMP threads that wait for each other slow down many times over).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import statistics
import threading
import time

import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN as TVMaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

from minimaskrcnn.config import cpu_small, r50_fpn
from minimaskrcnn.convert import load_torchvision_maskrcnn
from minimaskrcnn.model import MaskRCNN
from minimaskrcnn.ops.triton import ENV, import_error
from minimaskrcnn.training import FINETUNE

IMAGE_SIZE = (800, 1216)  # a multiple of 32 with the shorter side 800: the transform keeps it as it is


def build_models(device: torch.device) -> tuple[nn.Module, nn.Module]:
    """torchvision's maskrcnn_resnet50_fpn as built for a pretrained backbone (frozen BN, 3 trainable
    stages), with random weights, and ours with the same weights."""
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d), 3)
    tv = TVMaskRCNN(backbone, num_classes=91)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in tv.modules():  # non-trivial frozen BN statistics, so activations keep a sane scale
            if isinstance(m, FrozenBatchNorm2d):
                c = m.weight.shape[0]
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
        tv.roi_heads.box_predictor.cls_score.bias[1:7] = torch.linspace(3.0, 4.0, 6)  # detections pass 0.05
    ours = MaskRCNN(r50_fpn(num_classes=91))
    load_torchvision_maskrcnn(ours, tv.state_dict())
    return tv.to(device), ours.to(device)


def make_inputs(batch: int, device: torch.device, seed: int = 1, size=IMAGE_SIZE,
                num_classes: int = 91) -> tuple[list, list]:
    """`batch` random images of `size` (H, W) and targets of 6 rectangles each (boxes, labels in
    1..num_classes - 1, masks)."""
    g = torch.Generator().manual_seed(seed)
    H, W = size
    images, targets = [], []
    for _ in range(batch):
        images.append(torch.rand(3, H, W, generator=g))
        xy = torch.rand(6, 2, generator=g) * torch.tensor([W - 300.0, H - 300.0])
        boxes = torch.cat([xy, xy + 40 + torch.rand(6, 2, generator=g) * 250], 1).round()
        masks = torch.zeros(6, H, W, dtype=torch.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.long().tolist()):
            m[y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(1, num_classes, (6,), generator=g), "masks": masks})
    return [im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_memory(device: torch.device, result: list):
    """Appends the peak memory (bytes) taken during the block, over what was in use before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield
        torch.cuda.synchronize()
        result.append(torch.cuda.max_memory_allocated() - base)
        return
    base, peak, done = rss_bytes(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        result.append(max(peak[0], rss_bytes()) - base)


def run_once(fn, device: torch.device) -> tuple[float, int]:
    """(seconds, peak bytes) of one call of fn."""
    memory = []
    with peak_memory(device, memory):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, memory[0]


def compare(fns: dict, device: torch.device, repeat: int) -> dict:
    """Alternating runs of each fn (after one warm-up each) -> {name: (median seconds, max peak bytes)}."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    memory = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t, m = run_once(fn, device)
            times[name].append(t)
            memory[name].append(m)
    return {name: (statistics.median(times[name]), max(memory[name])) for name in fns}


@contextlib.contextmanager
def ops_path(path: str | None):
    """Run the block with MINIMASKRCNN_OPS=path (None: as it is)."""
    before = os.environ.get(ENV)
    if path is not None:
        os.environ[ENV] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def inference(model: nn.Module, images: list, ours: bool, amp, path: str | None = None) -> callable:
    def fn():
        model.eval()
        with torch.no_grad(), amp(), ops_path(path):
            out = model(images)
            return out.detections if ours else out
    return fn


def train_step(model: nn.Module, images: list, targets: list, ours: bool, amp, path: str | None = None) -> callable:
    def fn():
        model.train()
        with amp(), ops_path(path):
            losses = model(images, targets).losses if ours else model(images, targets)
        sum(losses.values()).backward()  # the backward of each op follows the path its forward took
        model.zero_grad(set_to_none=True)
    return fn


FINETUNE_SIZE = (512, 683)  # a 3:4 photo at the fine-tune recipe's 512-pixel shorter side (max side 853)


def finetune_models(trainable_layers: int, num_classes: int = 4) -> tuple[nn.Module, nn.Module]:
    """torchvision's maskrcnn_resnet50_fpn and ours, as the fine-tune recipe builds them: frozen BatchNorm,
    `trainable_layers` stages training, images resized to a 512-pixel shorter side; the same random weights."""
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d), trainable_layers)
    tv = TVMaskRCNN(backbone, num_classes=num_classes, min_size=FINETUNE.min_size, max_size=FINETUNE.max_size)
    cfg = r50_fpn(num_classes)
    sizes = {"min_size": FINETUNE.min_size, "max_size": FINETUNE.max_size}
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, trainable_layers=trainable_layers),
                              transform=dataclasses.replace(cfg.transform, **sizes))
    ours = MaskRCNN(cfg)
    load_torchvision_maskrcnn(ours, tv.state_dict())
    return tv, ours


def finetune_steps(trainable_layers: int, repeat: int, batch: int = 2) -> dict:
    """{"ours", "tv"}: (median wall seconds, median CPU seconds) of one training step (forward, backward, SGD on
    the weights that train) on `batch` images of FINETUNE_SIZE, runs alternating after one warm-up each."""
    tv, ours = finetune_models(trainable_layers)
    images, targets = make_inputs(batch, torch.device("cpu"), size=FINETUNE_SIZE, num_classes=4)
    steps = {}
    for name, model in (("ours", ours), ("tv", tv)):
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

        def step(model=model, optimizer=optimizer, ours=name == "ours"):
            model.train()
            losses = model(images, targets).losses if ours else model(images, targets)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
        steps[name] = step
    for step in steps.values():
        step()
    wall, cpu = {n: [] for n in steps}, {n: [] for n in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            start_cpu, start = time.process_time(), time.perf_counter()
            step()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in steps}


def print_finetune(trainable_layers: int, repeat: int, threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        r = finetune_steps(trainable_layers, repeat)
    finally:
        torch.set_num_threads(before)
    (w_ours, c_ours), (w_tv, c_tv) = r["ours"], r["tv"]
    print(f"\nfine-tune step (training.FINETUNE): R50-FPN, batch 2 of {FINETUNE_SIZE[0]}x{FINETUNE_SIZE[1]}, "
          f"{trainable_layers} trainable stages, frozen BN, {threads} thread(s), median of {repeat}")
    header = f"{'':<12} {'ours s':>8} {'tv s':>8} {'ratio':>6}"
    print(header + "\n" + "-" * len(header))
    print(f"{'wall':<12} {w_ours:>8.2f} {w_tv:>8.2f} {w_ours / w_tv:>6.2f}")
    print(f"{'CPU time':<12} {c_ours:>8.2f} {c_tv:>8.2f} {c_ours / c_tv:>6.2f}", flush=True)


def cpu_small_step(device: torch.device, repeat: int, warmup: int = 50) -> tuple[float, float]:
    """One training step (forward, backward, SGD) of cpu_small on 8 shapes images: median wall seconds
    and median process CPU seconds. Timed after `warmup` steps: by then the RPN finds the objects and
    the positive RoIs (whose mask FCN dominates the step) are near their cap; the first steps are cheaper."""
    from minimaskrcnn.data import ShapesDataset, collate  # needs pycocotools

    torch.manual_seed(0)
    data = ShapesDataset(8, image_size=128, seed=0)
    images, targets = collate([data[i] for i in range(8)])
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    model = MaskRCNN(cpu_small(data.num_classes)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)

    def step():
        losses = model(images, targets).losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(repeat):
        start = time.process_time()
        wall.append(run_once(step, device)[0])
        cpu.append(time.process_time() - start)
    return statistics.median(wall), statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per row (default: 2 CPU, 10 CUDA)")
    parser.add_argument("--batches", default="1,2", help="batch sizes, comma-separated")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast dtype (CUDA)")
    parser.add_argument("--small-repeat", type=int, default=20, help="timed steps of cpu_small")
    parser.add_argument("--skip-r50", action="store_true", help="only the fine-tune and cpu_small steps")
    parser.add_argument("--finetune-only", action="store_true", help="only the fine-tune step")
    parser.add_argument("--trainable-layers", type=int, default=FINETUNE.trainable_layers,
                        help="stages that train in the fine-tune step (default: training.FINETUNE's)")
    parser.add_argument("--finetune-repeat", type=int, default=5, help="timed fine-tune steps")
    parser.add_argument("--finetune-threads", type=int, default=1, help="threads of the fine-tune step")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeat = args.repeat or (10 if device.type == "cuda" else 2)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def amp():
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"threads {torch.get_num_threads()}, autocast {args.amp}, repeat {repeat}")
    if args.finetune_only:
        print_finetune(args.trainable_layers, args.finetune_repeat, args.finetune_threads)
        return
    if not args.skip_r50:
        tv, ours = build_models(device)
        print(f"\nR50-FPN, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} images; time in ms, memory in MiB (peak over "
              f"the call's start: {'max_memory_allocated' if device.type == 'cuda' else 'RSS'})")
        with_reference = device.type == "cuda" and import_error() is None  # ours on both paths
        header = (f"{'batch':>5} {'row':<15} {'ours ms':>9} {'tv ms':>9} {'ratio':>6} "
                  f"{'ours MiB':>9} {'tv MiB':>9} {'ratio':>6}")
        header += f" {'ref ms':>9} {'ratio':>6} {'ref MiB':>9}" if with_reference else ""
        print(header)
        print("-" * len(header))
        for batch in [int(b) for b in args.batches.split(",")]:
            images, targets = make_inputs(batch, device)
            rows = {
                "inference/img": ({"ours": inference(ours, images, True, amp),
                                   "tv": inference(tv, images, False, amp)}, batch),
                "train step": ({"ours": train_step(ours, images, targets, True, amp),
                                "tv": train_step(tv, images, targets, False, amp)}, 1),
            }
            if with_reference:
                rows["inference/img"][0]["ref"] = inference(ours, images, True, amp, "reference")
                rows["train step"][0]["ref"] = train_step(ours, images, targets, True, amp, "reference")
            for row, (fns, per) in rows.items():
                r = compare(fns, device, repeat)
                (t_ours, m_ours), (t_tv, m_tv) = r["ours"], r["tv"]
                line = (f"{batch:>5} {row:<15} {t_ours / per * 1e3:>9.1f} {t_tv / per * 1e3:>9.1f} "
                        f"{t_ours / t_tv:>6.2f} {m_ours / 2**20:>9.0f} {m_tv / 2**20:>9.0f} "
                        f"{m_ours / max(m_tv, 1):>6.2f}")
                if with_reference:
                    t_ref, m_ref = r["ref"]
                    line += f" {t_ref / per * 1e3:>9.1f} {t_ref / t_tv:>6.2f} {m_ref / 2**20:>9.0f}"
                print(line, flush=True)
        del tv, ours
    print_finetune(args.trainable_layers, args.finetune_repeat, args.finetune_threads)
    wall, cpu = cpu_small_step(device, args.small_repeat)
    print(f"\ncpu_small training step (forward + backward + SGD), 8 images of 128x128, after 50 steps: "
          f"{wall * 1e3:.0f} ms ({cpu * 1e3:.0f} ms of CPU time)")


if __name__ == "__main__":
    main()
