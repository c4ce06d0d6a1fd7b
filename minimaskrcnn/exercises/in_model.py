"""Your functions inside Mask R-CNN: `use` swaps them in wherever the model calls the package's.

    from minimaskrcnn import exercises
    with exercises.use("my_ops.py"):            # or a module, or {"roi_align": roi_align, "nms": nms, ...}
        out = model(images)                      # runs your roi_align, nms, mask_targets, ...

Each function the source defines under a name of SWAPPABLE replaces the package's function in every
module of minimaskrcnn that holds it (rpn.py, roi_heads.py, poolers.py, transform.py, anchors.py,
ops/ and its re-exports, ...): they are found by identity, so no call site is missed. A thin adapter
turns the package's call into the student-facing signature of the `check` component (the RPN asks
rpn.label_anchors for (labels, matched); yours returns one code per anchor). Everything is put back on
exit, after an error too.

A function that raises NotImplementedError hands that call back to the package's (a skeleton not yet
written does not stop the model); `Swapped.fallbacks` names them. Your function may itself call the
package's under the same name (ops.roi_align inside your mask_targets): that inner call runs the
package's. What the exercises do not cover (RoIAlign's "max" mode, the softmax or class-agnostic mask
loss, other IoU thresholds for the RoIs) also goes to the package's function; `Swapped.not_covered` says so.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path

from .loading import load_module


def _label_anchors(mine, package):
    """rpn.label_anchors(anchors, gt_boxes, cfg) -> (labels 1 / 0 / -1, matched) from one code per anchor."""
    def adapter(anchors, gt_boxes, cfg):
        import torch

        m = mine(anchors, gt_boxes, cfg.fg_iou_thresh, cfg.bg_iou_thresh)
        return torch.where(m >= 0, 1, torch.where(m == -1, 0, -1)), m.clamp(min=0)
    return adapter


def _sample_rois(mine, package):
    """roi_heads.sample_rois(proposals, targets, cfg), all images -> per image rois, labels, matched."""
    def adapter(proposals, targets, cfg):
        import torch

        if cfg.fg_iou_thresh != 0.5 or cfg.bg_iou_thresh != 0.5:  # the exercise's contract: the paper's 0.5
            raise _NotCovered("sample_rois with IoU thresholds other than 0.5")
        out = [mine(p, t["boxes"], t["labels"], cfg.batch_size_per_image, cfg.positive_fraction)
               for p, t in zip(proposals, targets)]
        # matched is meaningful for the foreground only; 0 elsewhere, a valid index for box_targets
        return ([r for r, _, _ in out], [lb for _, lb, _ in out],
                [torch.where(lb > 0, m, 0) for _, lb, m in out])
    return adapter


def _nms(mine, package):
    return lambda boxes, scores, iou_threshold, impl="auto": mine(boxes, scores, iou_threshold)


def _roi_align(mine, package):
    def adapter(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, mode="avg",
                impl="auto"):
        if mode != "avg":
            raise _NotCovered("roi_align with mode='max'")
        return mine(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    return adapter


def _roi_pool(mine, package):
    return lambda input, boxes, output_size, spatial_scale=1.0, impl="auto": mine(input, boxes, output_size,
                                                                                  spatial_scale)


def _mask_loss(mine, package):
    def adapter(mask_logits, labels, targets, kind="sigmoid"):
        if kind != "sigmoid" or mask_logits.shape[1] == 1:
            raise _NotCovered(f"the {kind} mask loss" if kind != "sigmoid" else "class-agnostic masks")
        return mine(mask_logits, labels, targets)  # the heads pass the positive RoIs only
    return adapter


def _same(mine, package):
    return mine


# name -> (module, attribute) of the package's function, and the adapter from the package's call to yours
SWAPPABLE = {
    "box_iou": (("minimaskrcnn.ops.boxes", "box_iou"), _same),
    "encode_boxes": (("minimaskrcnn.ops.boxes", "encode_boxes"), _same),
    "decode_boxes": (("minimaskrcnn.ops.boxes", "decode_boxes"), _same),
    "nms": (("minimaskrcnn.ops.nms", "nms"), _nms),
    "grid_anchors": (("minimaskrcnn.anchors", "grid_anchors"), _same),
    "roi_pool": (("minimaskrcnn.ops.roi_pool", "roi_pool"), _roi_pool),
    "roi_align": (("minimaskrcnn.ops.roi_align", "roi_align"), _roi_align),
    "label_anchors": (("minimaskrcnn.rpn", "label_anchors"), _label_anchors),
    "sample_rois": (("minimaskrcnn.roi_heads", "sample_rois"), _sample_rois),
    "mask_targets": (("minimaskrcnn.roi_heads", "mask_targets"), _same),
    "mask_loss": (("minimaskrcnn.losses", "mask_loss"), _mask_loss),
    "paste_masks": (("minimaskrcnn.transform", "paste_masks"), _same),
}


class _NotCovered(Exception):
    """A call outside the exercise's contract: the package's function takes it."""


@dataclass
class Swapped:
    """What `use` swapped: functions (names), the places patched ("module.attribute"), and the names whose
    calls went back to the package's function at least once (fallbacks: not implemented; not_covered:
    outside the exercise's contract, with why)."""
    functions: list[str]
    places: list[str] = field(default_factory=list)
    fallbacks: set = field(default_factory=set)
    not_covered: set = field(default_factory=set)


def functions_of(source, names=None) -> dict:
    """{name: function} of the SWAPPABLE names that `source` (a path to a .py file, a module or a dict)
    defines as callables; `names` keeps only those."""
    if isinstance(source, (str, Path)):
        source = load_module(source)
    items = source if isinstance(source, dict) else vars(source)
    if not isinstance(source, (dict, types.ModuleType)):
        raise ValueError(f"use() takes a path to a .py file, a module or a dict of functions, got "
                         f"{type(source).__name__}")
    found = {n: f for n, f in items.items() if n in SWAPPABLE and callable(f) and (names is None or n in names)}
    unknown = sorted(set(items) - set(SWAPPABLE)) if isinstance(source, dict) else []
    if unknown:
        raise ValueError(f"use(): {', '.join(unknown)} cannot be swapped into the model; the names are "
                         f"{', '.join(SWAPPABLE)}")
    return found


def _wrap(name: str, mine, package, swapped: Swapped):
    adapted = SWAPPABLE[name][1](mine, package)
    inside = threading.local()  # your function may call the package's (ops.roi_align inside your mask_targets)

    def yours_or_the_package(*args, **kwargs):
        if getattr(inside, "yours", False):
            return package(*args, **kwargs)
        inside.yours = True
        try:
            return adapted(*args, **kwargs)
        except NotImplementedError:
            swapped.fallbacks.add(name)
        except _NotCovered as why:
            swapped.not_covered.add(f"{name} ({why})")
        finally:
            inside.yours = False
        return package(*args, **kwargs)
    yours_or_the_package.__name__ = yours_or_the_package.__qualname__ = f"yours_{name}"
    yours_or_the_package.__wrapped__ = mine
    return yours_or_the_package


@contextlib.contextmanager
def use(source, names=None):
    """Run the model with your functions: `with use("my_ops.py"): model(images)`. Yields a Swapped."""
    mine = functions_of(source, names)
    importlib.import_module("minimaskrcnn.model")  # every module the model runs is loaded before the swap
    swapped, undo = Swapped(sorted(mine, key=list(SWAPPABLE).index)), []
    try:
        for name in swapped.functions:
            (module_name, attribute), _ = SWAPPABLE[name]
            package = getattr(importlib.import_module(module_name), attribute)
            replacement = _wrap(name, mine[name], package, swapped)
            for module in [m for n, m in list(sys.modules.items())
                           if n.split(".")[0] == "minimaskrcnn" and not n.startswith("minimaskrcnn.exercises")]:
                for attr, value in list(vars(module).items()):
                    if value is package:
                        setattr(module, attr, replacement)
                        undo.append((module, attr, value))
                        swapped.places.append(f"{module.__name__}.{attr}")
        yield swapped
    finally:
        for module, attr, value in reversed(undo):
            setattr(module, attr, value)
