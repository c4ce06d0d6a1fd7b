"""Speed of our RoI ops and NMS against torchvision's compiled kernels, on Mask R-CNN's own workloads.

    python benchmarks/ops.py                      # CPU, and CUDA too when there is a GPU
    python benchmarks/ops.py --device cpu --repeat 5 --threads 1

Workloads (an 800x1216 input, batch of 2, FPN levels P2-P5 of 256 channels, strides 4 to 32):
  (a) box head: 1024 RoIs, each pooled from its FPN level (assign_fpn_levels, as the model does), 7x7,
      sampling_ratio 2;
  (b) mask head: the same RoIs at 14x14;
  (c) nms on 1,000 and 4,000 boxes: RPN-like (jittered around a few dozen objects, IoU 0.7, most
      suppressed) and uniformly random (most kept, the worst case for the sequential walk).
Each time is the median of --repeat runs after one warm-up, in milliseconds. Our ops run on each path
they have on the device (ops/triton/__init__.py): on the CPU the reference (pure PyTorch); on CUDA the
Triton kernels ("triton", the default there) and the reference too. Each ratio is that path's time over
torchvision's (below 1: ours is faster).
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from functools import partial

import torch
import torchvision
import torchvision.ops as tv

from minimaskrcnn import ops
from minimaskrcnn.ops.triton import import_error
from minimaskrcnn.poolers import assign_fpn_levels

IMAGE_SIZE = (800, 1216)
STRIDES = (4, 8, 16, 32)  # P2-P5
CHANNELS = 256


def timed(fn, device, repeat):
    """Median wall time of fn() in ms, after one warm-up run."""
    def once():
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3
    once()
    return statistics.median(once() for _ in range(repeat))


def fpn_workload(device, num_rois=1024, seed=0):
    """Feature maps P2-P5 of 2 images and RoIs (K, 5) spread over them: proposal-like, sqrt(area)
    log-uniform in 32..512 pixels and aspect ratio (h / w) log-uniform in 0.5..2."""
    gen = torch.Generator().manual_seed(seed)
    H, W = IMAGE_SIZE
    features = [torch.randn(2, CHANNELS, H // s, W // s, generator=gen).to(device) for s in STRIDES]
    scale = torch.exp(torch.empty(num_rois, 1).uniform_(math.log(32), math.log(512), generator=gen))
    ratio = torch.exp(torch.empty(num_rois, 1).uniform_(math.log(0.5), math.log(2), generator=gen))
    wh = torch.cat([scale / ratio.sqrt(), scale * ratio.sqrt()], dim=1)  # w * h = scale^2, h / w = ratio
    xy = torch.rand(num_rois, 2, generator=gen) * torch.tensor([W, H]) - wh / 2
    image = torch.arange(num_rois)[:, None] % 2
    rois = torch.cat([image, xy, xy + wh], dim=1).float().to(device)
    return features, rois


def multilevel(roi_op, features, rois, level, output_size, **kwargs):
    """Pool each RoI from its level, as the model's pooler does: one call per level, then scatter."""
    out = features[0].new_zeros(len(rois), CHANNELS, output_size, output_size)
    for i, x in enumerate(features):
        members = torch.nonzero(level == i).squeeze(1)
        out[members] = roi_op(x, rois[members], output_size, spatial_scale=1 / STRIDES[i], **kwargs)
    return out


def paths(device):
    """Our paths that run on device: the Triton kernels (CUDA, when triton imports) and the reference."""
    return ("triton", "reference") if device.type == "cuda" and import_error() is None else ("reference",)


def roi_rows(device, repeat):
    """Rows (workload, pass, [ms of each of our paths], torchvision's ms)."""
    features, rois = fpn_workload(device)
    level = assign_fpn_levels(rois[:, 1:], 2, 5)
    rows = []
    for workload, size in (("box 7x7", 7), ("mask 14x14", 14)):
        for name, ours, theirs, kwargs in (("roi_align", ops.roi_align, tv.roi_align, dict(sampling_ratio=2)),
                                           ("roi_pool", ops.roi_pool, tv.roi_pool, {})):
            times = []
            for op in [partial(ours, impl=impl) for impl in paths(device)] + [theirs]:
                leaves = [x.detach().requires_grad_() for x in features]
                forward = lambda: multilevel(op, [x.detach() for x in leaves], rois, level, size, **kwargs)
                grad_out = torch.ones(len(rois), CHANNELS, size, size, device=device)
                both = lambda: torch.autograd.grad(multilevel(op, leaves, rois, level, size, **kwargs), leaves,
                                                   grad_out)
                times.append((timed(forward, device, repeat), timed(both, device, repeat)))
            rows.append((f"{name} {workload}", "forward", [t[0] for t in times[:-1]], times[-1][0]))
            rows.append((f"{name} {workload}", "fwd+bwd", [t[1] for t in times[:-1]], times[-1][1]))
    return rows


def nms_boxes(kind, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    H, W = IMAGE_SIZE
    if kind == "random":
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([W, H])
        wh = 8 + torch.rand(n, 2, generator=gen) * 120
        return torch.cat([xy, xy + wh], dim=1), torch.rand(n, generator=gen)
    objects = torch.rand(40, 2, generator=gen) * torch.tensor([W, H])  # RPN-like: proposals around objects
    sizes = torch.exp(torch.empty(40, 2).uniform_(3.0, 6.0, generator=gen))
    pick = torch.randint(40, (n,), generator=gen)
    center = objects[pick] + torch.randn(n, 2, generator=gen) * 0.15 * sizes[pick]
    wh = sizes[pick] * torch.exp(torch.randn(n, 2, generator=gen) * 0.15)
    return torch.cat([center - wh / 2, center + wh / 2], dim=1), torch.rand(n, generator=gen)


def nms_rows(device, repeat):
    rows = []
    for kind in ("rpn-like", "random"):
        for n in (1000, 4000):
            boxes, scores = (t.to(device) for t in nms_boxes(kind, n))
            kept = len(tv.nms(boxes, scores, 0.7))
            ours = [timed(lambda: ops.nms(boxes, scores, 0.7, impl=impl), device, repeat) for impl in paths(device)]
            rows.append((f"nms {n} {kind} (keeps {kept})", "forward", ours,
                         timed(lambda: tv.nms(boxes, scores, 0.7), device, repeat)))
    return rows


def environment(device):
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return (f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, "
            f"device {device} ({name})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], action="append",
                        help="repeat for several; default: cpu, and cuda when available")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in map(torch.device, devices):
        print(environment(device))
        names = paths(device)
        print(f"{'op / workload':40s} {'pass':8s}" + "".join(f"{name + ' ms':>13s}" for name in names)
              + f"{'tv ms':>9s}" + "".join(f"{name + '/tv':>13s}" for name in names))
        for what, pass_, ours, theirs in roi_rows(device, args.repeat) + nms_rows(device, args.repeat):
            print(f"{what:40s} {pass_:8s}" + "".join(f"{t:13.2f}" for t in ours) + f"{theirs:9.2f}"
                  + "".join(f"{t / theirs:13.2f}" for t in ours), flush=True)
        print()


if __name__ == "__main__":
    main()
