"""Your functions run Mask R-CNN: one model, with the package's functions and with yours, side by side.

compare(source) runs a model twice from the same weights and seeds, once as it is and once inside
use(source) (in_model.py), and reports:
- inference on held-out images: the detections (boxes, scores, labels, pasted masks) agree within
  TOLERANCE; each stage's output is recorded (anchors, RPN proposals, box head, detections, mask head,
  pasted masks), so that where they differ the first stage that differs is named, with the functions
  of yours that it runs;
- training: a few SGD steps from the same weights and seeds; each step's five losses agree within
  TOLERANCE, and so do the stages that build them (RPN targets, RPN losses, sampled RoIs, mask targets).
The RoI heads keep every candidate RoI during the comparison (batch_size_per_image raised above their
number), so that random picks cannot differ; the `sample_rois` check tests the sampling itself.

The model (default_model): runs/demo/last.pt (`make demo`) when present, else notebook 05's short run,
else a cpu_small model initialised with seed 0 and trained QUICK_STEPS steps on the synthetic shapes.

Shape glossary:
  N: images; R: sampled RoIs of an image; M: mask size
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
from pathlib import Path

import torch

from .in_model import use

TOLERANCE = 1e-4  # relative and absolute: float32 sums in another order differ by ~1e-6
QUICK_STEPS = 20  # steps of the fallback model: enough for objectness scores that are not all alike
# stage -> the functions of yours it runs (named when it is the first stage that differs)
STAGES = {"anchors": "grid_anchors", "RPN targets": "label_anchors, box_iou", "RPN losses": "encode_boxes",
          "RPN proposals": "decode_boxes, nms", "RoI sampling": "sample_rois, box_iou",
          "box head": "roi_align (or roi_pool)", "detections": "decode_boxes, nms", "mask targets": "mask_targets",
          "mask head": "roi_align (or roi_pool)", "losses": "encode_boxes, mask_loss", "pasted masks": "paste_masks"}


def _sorted_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows in lexicographic order: sampled RoIs compared as a set, whatever order they come in."""
    return torch.tensor(sorted(rows.tolist()), dtype=torch.float64).reshape(-1, rows.shape[1])


def _sampling(out):
    rois, labels, matched = out  # per image
    return [_sorted_rows(torch.cat([r.double(), lb[:, None].double(), torch.where(lb > 0, m, -1)[:, None].double()],
                                   dim=1)) for r, lb, m in zip(rois, labels, matched)]


@contextlib.contextmanager
def recording(model, record: dict):
    """Record each stage's output into record[stage] (a list, one entry per call) while the model runs."""
    rpn, roi_heads = importlib.import_module("minimaskrcnn.rpn"), importlib.import_module("minimaskrcnn.roi_heads")
    functions = [(rpn, "make_anchors", "anchors", lambda a, out: out),
                 (rpn, "label_anchors", "RPN targets", lambda a, out: out),
                 (rpn, "rpn_losses", "RPN losses", lambda a, out: out),
                 (roi_heads, "sample_rois", "RoI sampling", lambda a, out: _sampling(out)),
                 (roi_heads, "detect_boxes", "detections", lambda a, out: out),
                 (roi_heads, "mask_targets", "mask targets",  # rows (RoI, its M x M target), as a set
                  lambda a, out: _sorted_rows(torch.cat([a[1].double(), out.flatten(1).double()], dim=1)))]
    undo = []

    def recorder(inner, stage, keep):
        def call(*args, **kwargs):
            out = inner(*args, **kwargs)
            record.setdefault(stage, []).append(keep(args, out))
            return out
        return call
    for module, name, stage, keep in functions:
        undo.append((module, name, getattr(module, name)))
        setattr(module, name, recorder(getattr(module, name), stage, keep))

    def hook(stage, names):  # the heads' outputs are in the order of the sampled RoIs: recorded at inference only
        def keep(module, args, out):
            if not model.training:
                record.setdefault(stage, []).append(dict(zip(names, out if isinstance(out, tuple) else (out,))))
        return keep
    handles = [model.rpn.register_forward_hook(lambda m, a, out: record.setdefault("RPN proposals", []).append(out[0])),
               model.roi_heads.box_predictor.register_forward_hook(hook("box head", ("class logits", "box deltas"))),
               model.roi_heads.mask_predictor.register_forward_hook(hook("mask head", ("mask logits",)))]
    try:
        yield record
    finally:
        for h in handles:
            h.remove()
        for module, name, value in reversed(undo):
            setattr(module, name, value)


def difference(a, b, where: str = "") -> str | None:
    """None when a and b agree (tensors within TOLERANCE, integers exactly, nested lists / dicts alike), else
    what differs and where ("call 2, image 0, boxes: largest difference 0.5")."""
    at = f"{where}: " if where else ""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.shape != b.shape:
            return f"{at}shape {tuple(a.shape)} against {tuple(getattr(b, 'shape', ()))}"
        if not a.is_floating_point():
            return None if torch.equal(a, b.to(a.dtype)) else f"{at}different values"
        if torch.allclose(a.double(), b.double(), rtol=TOLERANCE, atol=TOLERANCE):
            return None
        return f"{at}largest difference {float((a.double() - b.double()).abs().max()):.3g}"
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{at}keys {sorted(a)} against {sorted(b)}"
        return next(filter(None, (difference(a[k], b[k], f"{where}, {k}" if where else k) for k in a)), None)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{at}{len(a)} entries against {len(b)}"
        label = "call" if not where else "item"
        return next(filter(None, (difference(x, y, f"{where}, {label} {i}" if where else f"{label} {i + 1}")
                                  for i, (x, y) in enumerate(zip(a, b)))), None)
    return None if a == b else f"{at}{a!r} against {b!r}"


def default_model(checkpoint=None):
    """(model, what it is): `checkpoint` when given, else the demo's, else notebook 05's, else a quick
    cpu_small model. The comparison's images are the synthetic shapes: the model must have their 4 classes."""
    from .. import paths
    from ..checkpoint import build_model_from_checkpoint

    runs = paths.runs_dir()
    for path in [checkpoint] if checkpoint else [runs / "demo" / "last.pt", runs / "notebooks" / "05_train_on_shapes"
                                                  / "last.pt"]:
        if checkpoint or path.exists():
            model, state = build_model_from_checkpoint(path)
            if model.config.num_classes != 4:
                raise ValueError(f"checkpoint {path} has {model.config.num_classes} classes; the in-model comparison "
                                 f"runs on the synthetic shapes (4 classes: a cpu_small model, e.g. make demo's)")
            steps = state.get("progress", {}).get("step", "?")
            shown = path if checkpoint else Path(path).relative_to(runs.parent)
            return model.eval(), f"{shown}, {steps} training steps"
    return quick_model(), f"no checkpoint found: a cpu_small model, seed 0, trained {QUICK_STEPS} steps"


def quick_model(steps: int = QUICK_STEPS, seed: int = 0):
    """A cpu_small model trained `steps` steps of 4 synthetic images with the demo's AdamW (linear warmup)."""
    from ..config import get_config
    from ..data import ShapesDataset
    from ..model import MaskRCNN
    from ..training import DEMO

    torch.manual_seed(seed)
    model = MaskRCNN(get_config("cpu_small"))
    shapes = DEMO.data.train  # the demo's shapes: their size and seed
    data = ShapesDataset(4 * steps, shapes.image_size, seed=shapes.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=DEMO.lr, weight_decay=DEMO.weight_decay)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = DEMO.lr * (step + 1) / steps
        images, targets = zip(*(data[4 * step + i] for i in range(4)))
        loss = sum(model(list(images), list(targets)).losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _run(model, images, batches, seed: int, lr: float) -> dict:
    """Inference on `images`, then one SGD step per batch; every stage recorded. The model is left trained."""
    record = {}
    with recording(model, record):
        model.eval()
        with torch.no_grad():
            torch.manual_seed(seed)
            record["pasted masks"] = [model(images).detections]
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for step, (batch_images, targets) in enumerate(batches):
            torch.manual_seed(seed + 1 + step)  # the same RPN samples in both runs
            losses = model(batch_images, targets).losses
            record.setdefault("losses", []).append({k: v.detach() for k, v in losses.items()})
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    model.eval()
    return record


def compare(source, model=None, *, checkpoint=None, names=None, images: int = 2, steps: int = 2, seed: int = 0,
            lr: float = 0.005, what: str = "given", print_=print) -> bool:
    """Run `model` (else default_model(checkpoint)) with the package's functions and with yours (use(source,
    names)): the inference on `images` held-out images and `steps` training steps of 2 images. Prints the
    report (`what`: the model, in words); True when the detections and the losses agree within TOLERANCE."""
    from ..data import ShapesDataset
    from ..data.sources import build
    from ..training import DEMO

    if model is None:
        model, what = default_model(checkpoint)
    shapes = DEMO.data.train  # the demo's shapes: the held-out ones, and others no run trained on
    held_out = build(shapes.held_out(images))
    train = ShapesDataset(2 * steps, shapes.image_size, seed=shapes.seed + 2)
    inputs = [held_out[i][0] for i in range(images)]
    batches = [tuple(map(list, zip(train[2 * s], train[2 * s + 1]))) for s in range(steps)]
    initial, cfg = copy.deepcopy(model.state_dict()), model.roi_heads.cfg
    every_roi = 4 * (model.rpn.cfg.post_nms_top_n_train + max(len(t["boxes"]) for _, t in train) + 1)
    runs = {}
    try:
        model.roi_heads.cfg = dataclasses.replace(cfg, batch_size_per_image=every_roi)
        for who in ("package", "yours"):
            model.load_state_dict(initial)
            with use(source, names) if who == "yours" else contextlib.nullcontext() as swapped, \
                    torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
                runs[who] = _run(model, inputs, batches, seed, lr)
    finally:
        model.roi_heads.cfg = cfg
        model.load_state_dict(initial)
    return report(runs["package"], runs["yours"], swapped, what, print_)


def report(package: dict, yours: dict, swapped, model: str, print_=print) -> bool:
    print_(f"in the model ({model}): yours in place of the package's: {', '.join(swapped.functions) or 'none'}")
    for kind, names in (("not implemented yet, the package's ran instead", swapped.fallbacks),
                        ("outside the exercises, the package's ran instead", swapped.not_covered)):
        if names:
            print_(f"  {kind}: {', '.join(sorted(names))}")
    first = None
    for stage in STAGES:
        if stage not in package:
            continue
        problem = difference(package[stage], yours.get(stage, []))
        print_(f"  {'SAME' if problem is None else 'DIFF'}  {stage}" + ("" if problem is None else f": {problem}"))
        first = first or (None if problem is None else stage)
    detections = difference(package["pasted masks"], yours["pasted masks"]) is None
    losses = difference(package["losses"], yours["losses"]) is None
    counts = [len(d["boxes"]) for d in package["pasted masks"][0]]
    print_(f"  the detections ({' and '.join(map(str, counts))} on {len(counts)} held-out image"
           f"{'s' * (len(counts) > 1)}): {'identical' if detections else 'DIFFERENT'} (within {TOLERANCE:g})")
    for step, (a, b) in enumerate(zip(package["losses"], yours["losses"])):
        shown = ", ".join(f"{k} {float(a[k]):.5f}" + ("" if difference(a[k], b[k]) is None else f" / yours "
                                                      f"{float(b[k]):.5f}") for k in a)
        print_(f"  training step {step + 1}: {shown}")
    print_(f"  losses: {'equal' if losses else 'DIFFERENT'} (within {TOLERANCE:g})")
    if first is not None:
        print_(f"  the first stage whose outputs differ: {first} (it runs your {STAGES[first]})")
    print_("in the model: " + ("PASS, identical detections and equal losses" if detections and losses else "FAIL"))
    return detections and losses
