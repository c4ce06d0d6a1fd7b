"""Starting from pretrained weights: the paper's ImageNet initialization, and fine-tuning to your own classes.

Sec. 3.1: "the backbone is initialized from ImageNet-pretrained weights"; the FPN and the heads start afresh.
Fine-tuning a detector to new classes starts from a whole trained detector (torchvision's COCO Mask R-CNN, or one of
your own runs) instead, and only the tensors that have one slice per class need a new start:

    tensor                                           rows (dim 0) per class
    roi_heads.box_predictor.cls_score.{weight,bias}    1   (the class logit)
    roi_heads.box_predictor.bbox_pred.{weight,bias}    4   (dx, dy, dw, dh of that class's box)
    roi_heads.mask_predictor.mask_fcn_logits.*         1   (that class's mask channel; FCN head)
    roi_heads.mask_predictor.mask_fc_logits.*          M*M (that class's M x M mask; MLP head)

Row 0 is the background, which every source has: it is always carried over. A category of your data whose name is
one of the source's categories (case and surrounding spaces aside) keeps the source's rows too: a "person" and
"dog" dataset starts from COCO's person and dog classifier, box regressor and mask. The other rows keep the model's
fresh initialization. The keypoint predictor has one channel per keypoint type: it starts afresh when the number
of types differs. Nothing else may differ: a source of another architecture is refused in one line that names the
differing config fields, never loaded in part behind a warning about "skipped incompatible shapes".

    from minimaskrcnn import transfer
    model = MaskRCNN(config.r50_fpn(num_classes=4))
    report = transfer.load_into(model, "coco", ["dog", "person", "unicorn"])
    print(report)   # what was loaded, what starts afresh, which categories were carried, which stages are frozen

Sources: "imagenet" (torchvision's ImageNet ResNet-50 / -101 by the model's depth), "coco" (torchvision's COCO
Mask R-CNN, `pretrained.COCO_WEIGHTS_URL`), or a file: a minimaskrcnn checkpoint (runs/demo/last.pt) or a
torchvision state_dict (`maskrcnn_resnet50_fpn`, `resnet50`, `resnet101`), recognized by its keys. Downloads go
through `pretrained.download_weights` (SHA-256 prefix, torch.hub cache, $MINIMASKRCNN_MIRROR).

Which stages train is the model's config (BackboneConfig.trainable_layers, `resnet.freeze_early_layers`); the
report lists the frozen ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config as config_lib
from . import pretrained
from .checkpoint import with_overrides

CLASS_TENSORS = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.",
                 "roi_heads.mask_predictor.mask_fcn_logits.", "roi_heads.mask_predictor.mask_fc_logits.")
KEYPOINT_TENSORS = ("roi_heads.keypoint_predictor.kps_score_lowres.",)  # one channel per keypoint type
BRANCHES = ("roi_heads.mask_head.", "roi_heads.mask_predictor.", "roi_heads.keypoint_head.",
            "roi_heads.keypoint_predictor.")  # a model may have them or not (mask_branch, num_keypoints)
# The config fields that shape weights (norm: frozen_bn and bn hold the same tensors, gn others)
ARCHITECTURE = {"backbone": ("depth", "variant", "norm", "stem_channels", "fpn_channels"),
                "anchors": ("sizes", "aspect_ratios"), "rpn": ("conv_channels",),
                "roi_heads": ("box_pool_size", "mask_pool_size", "box_head_dim", "mask_head", "mask_head_channels",
                              "mask_head_convs", "class_agnostic_masks", "keypoint_head_channels",
                              "keypoint_head_convs")}


@dataclass
class InitReport:
    """What an init did. loaded / fresh: state_dict names (BatchNorm's step counters left out); a class tensor of
    which only some rows were carried is in `fresh`. carried: the categories that kept the source's rows, by name.
    frozen: the backbone stages that get no gradient (their BatchNorm statistics stay as loaded)."""

    source: str  # "imagenet", "coco", "none" or the file
    checksum: str  # the file's SHA-256 (a prefix for a download: the one its name carries), "" for none
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    fresh_modules: list[str] = field(default_factory=list)  # `fresh`, whole modules named once

    def __str__(self) -> str:
        checksum = f", sha256 {self.checksum[:12]}" if self.checksum else ""
        lines = [f"init: {self.source}{checksum}: {len(self.loaded)} tensors loaded, {len(self.fresh)} "
                 f"initialized afresh"]
        if self.fresh_modules:
            lines.append(f"  afresh: {', '.join(self.fresh_modules)}")
        if self.carried:
            lines.append(f"  categories carried by name: {', '.join(self.carried)} (and the background)")
        lines.append(f"  frozen: {', '.join(self.frozen) if self.frozen else 'nothing'}")
        return "\n".join(lines)

    def record(self) -> dict:
        """What a checkpoint keeps of it (`training.loop.Run.state`)."""
        return {"source": self.source, "checksum": self.checksum, "carried": list(self.carried),
                "frozen": list(self.frozen), "loaded": len(self.loaded), "fresh": len(self.fresh)}


def load_into(model, source: str, categories=None, *, cache=None, progress: bool = True) -> InitReport:
    """Initialize `model` (our MaskRCNN) from `source` ("imagenet", "coco", "none" or a file) and say what was done.

    categories: the model's category names in label order, background excluded (the dataset's class_names[1:]),
    used to carry rows by name; None: rows are loaded only when the class counts agree. ValueError (one line) for
    another architecture, duplicate names, or a file that holds no weights this package knows; network failures
    raise `download.DownloadError`. The model's frozen-BN eps is not changed (torchvision runs its COCO weights
    with 0: `convert.coco_config`).
    """
    if str(source) == "none":  # nothing to load, nothing carried by name
        own = list(weight_names(model.state_dict()))
        return InitReport("none", "", fresh=own, fresh_modules=group_modules(own, own), frozen=frozen_stages(model))
    num_classes = model.config.num_classes
    if categories is not None:
        categories = check_categories(categories, num_classes)
    src = pretrained.read_source(model, source, cache, progress)
    check_architecture(model, src)
    target = model.state_dict()
    loaded, fresh = [], []
    rows = class_rows(src.class_names, categories, src_count(src), num_classes)
    with torch.no_grad():
        for name, tensor in target.items():
            if name.endswith("num_batches_tracked"):
                if name in src.state:
                    tensor.copy_(src.state[name])
                continue
            got = src.state.get(name)
            if got is None:  # outside a ResNet's reach, or a branch the source has not
                fresh.append(name)
            elif is_class_tensor(name, model.config):
                per_class = tensor.shape[0] // num_classes  # 1, 4 or M*M rows
                for ours, theirs in rows:
                    tensor[ours * per_class:(ours + 1) * per_class] = got[theirs * per_class:(theirs + 1) * per_class]
                (loaded if len(rows) == num_classes else fresh).append(name)
            elif name.startswith(KEYPOINT_TENSORS) and got.shape != tensor.shape:
                fresh.append(name)  # other keypoint types
            else:
                tensor.copy_(got)
                loaded.append(name)
    by_name = categories is not None and src.class_names is not None
    carried = [categories[ours - 1] for ours, _ in rows if ours > 0] if by_name else []
    return InitReport(src.name, src.checksum, loaded, fresh, carried, frozen_stages(model),
                      group_modules(fresh, list(weight_names(target))))


def is_class_tensor(name: str, model_config) -> bool:
    """Whether the tensor has a slice per class: the box predictor's, and the mask predictor's last layer unless
    the masks are class-agnostic (one mask for all classes)."""
    if name.startswith(CLASS_TENSORS[:2]):
        return True
    return name.startswith(CLASS_TENSORS[2:]) and not model_config.roi_heads.class_agnostic_masks


def check_categories(categories, num_classes: int) -> list[str]:
    """The names as strings; ValueError unless there is one per object class and no two are the same name."""
    categories = [str(c) for c in categories]
    if len(categories) + 1 != num_classes:
        raise ValueError(f"{len(categories)} categories for a model of {num_classes} classes: categories name the "
                         f"{num_classes - 1} object classes in label order, the background left out")
    seen, twice = set(), []
    for name in categories:
        key = name.strip().lower()
        if key in seen:
            twice.append(name)
        seen.add(key)
    if twice:
        raise ValueError(f"duplicate category names {sorted(set(twice))}: each label needs its own name (rows are "
                         f"carried by name); rename or merge them in the annotations")
    return categories


def class_rows(source_names, categories, source_count: int, num_classes: int) -> list[tuple[int, int]]:
    """(our label, source label) pairs whose rows are copied: the background, then each category whose name the
    source has; all labels when names are unknown on either side but the counts agree."""
    if source_names is None or categories is None:
        return [(k, k) for k in range(num_classes)] if source_count == num_classes else [(0, 0)]
    index = {n.strip().lower(): k for k, n in enumerate(source_names) if k > 0 and n != "N/A"}
    return [(0, 0)] + [(ours, index[n.strip().lower()]) for ours, n in enumerate(categories, 1)
                       if n.strip().lower() in index]


def src_count(src: pretrained.Source) -> int:
    logits = src.state.get("roi_heads.box_predictor.cls_score.bias")
    return 0 if logits is None else logits.shape[0]


# ------------------------------------------------------------------------------------------------
# Checking the architecture
# ------------------------------------------------------------------------------------------------


def check_architecture(model, src: pretrained.Source) -> None:
    """ValueError naming the differing config fields unless every tensor the source holds for this model has the
    model's shape (class and keypoint tensors: the same shape per class / keypoint type)."""
    target = model.state_dict()
    ours_has = {b for b in BRANCHES if any(k.startswith(b) for k in target)}
    theirs_has = {b for b in BRANCHES if any(k.startswith(b) for k in src.state)}
    problems = []
    for name, tensor in target.items():
        got = src.state.get(name)
        if name.endswith("num_batches_tracked"):
            continue
        if got is None:
            if name.startswith(src.scope) and not name.startswith(tuple(ours_has - theirs_has)):
                problems.append(f"{name} missing")
        elif is_class_tensor(name, model.config):
            if got.shape[1:] != tensor.shape[1:] or got.shape[0] * model.config.num_classes != \
                    tensor.shape[0] * src_count(src):
                problems.append(f"{name} {tuple(got.shape)} != {tuple(tensor.shape)}")
        elif name.startswith(KEYPOINT_TENSORS):  # (C, Kp, 4, 4) weight, (Kp,) bias: only Kp may differ
            if got.dim() != tensor.dim() or got.dim() == 4 and (got.shape[0], got.shape[2:]) != \
                    (tensor.shape[0], tensor.shape[2:]):
                problems.append(f"{name} {tuple(got.shape)} != {tuple(tensor.shape)}")
        elif got.shape != tensor.shape:
            problems.append(f"{name} {tuple(got.shape)} != {tuple(tensor.shape)}")
    extra = [k for k in src.state if k not in target and not k.endswith("num_batches_tracked")
             and not k.startswith(tuple(theirs_has - ours_has))]
    problems += [f"{k} unexpected" for k in extra]
    if problems:
        fields = architecture_differences(src.config, config_lib.to_dict(model.config))
        what = ", ".join(fields) if fields else f"{len(problems)} tensors differ, e.g. {problems[0]}"
        raise ValueError(f"init {src.name} is another architecture than this model: {what} (source != model); "
                         f"choose a source of the model's architecture, or the preset of the source")


def architecture_differences(source: dict, ours: dict) -> list[str]:
    """"section.field source != ours" for the weight-shaping fields the source's config names."""
    lines = []
    for section, names in ARCHITECTURE.items():
        for name in names:
            if name not in source.get(section, {}):
                continue
            a, b = source[section][name], ours[section][name]
            if name == "norm":
                a, b = ("bn" if a == "frozen_bn" else a), ("bn" if b == "frozen_bn" else b)
            if plain(a) != plain(b):
                lines.append(f"{section}.{name} {source[section][name]!r} != {ours[section][name]!r}")
    return lines


def plain(v):
    return tuple(plain(x) for x in v) if isinstance(v, (list, tuple)) else v


# ------------------------------------------------------------------------------------------------
# What the report names
# ------------------------------------------------------------------------------------------------


def weight_names(state: dict):
    """The names of a state_dict but BatchNorm's step counters."""
    return (k for k in state if not k.endswith("num_batches_tracked"))


def group_modules(names: list[str], all_names: list[str]) -> list[str]:
    """`names` with each module named once, as high up as the whole module is in `names`: ImageNet's fresh
    tensors read "backbone.fpn, rpn, roi_heads", COCO's "roi_heads.box_predictor, ...mask_fcn_logits"."""
    chosen, inside = [], set(names)
    for name in names:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if all(k in inside for k in all_names if k.startswith(prefix + ".")):
                break
        else:
            prefix = name
        if prefix not in chosen:
            chosen.append(prefix)
    return chosen


def frozen_stages(model) -> list[str]:
    """The backbone stages whose parameters get no gradient: "stem", "layer1".."layer4", "res5" (the C4 head)."""
    body = getattr(getattr(model, "backbone", None), "body", None)
    if body is None:
        return []
    stages = {"stem": [body.conv1, body.bn1]} | {n: [m] for n, m in body.named_children() if n.startswith("layer")}
    res5 = getattr(getattr(model.roi_heads, "box_head", None), "res5", None)
    if res5 is not None:
        stages["res5"] = [res5]
    return [name for name, modules in stages.items()
            if not any(p.requires_grad for m in modules for p in m.parameters())]


def coco_maskrcnn(categories=None, num_classes: int | None = None, *, cache=None, progress: bool = True,
                  **overrides) -> pretrained.Pretrained:
    """torchvision's COCO Mask R-CNN made for your categories (names in label order, background left out), ready to
    fine-tune (train mode): len(categories) + 1 classes, the rows of the categories COCO has carried, `.report`.
    num_classes (background included) without categories: only the background's rows are carried. overrides as in
    `pretrained.load_torchvision_weights`; the frozen BatchNorm's eps is 0, as torchvision runs these weights."""
    from .convert import coco_config
    from .model import MaskRCNN

    if categories is None and num_classes is None:
        raise ValueError("coco_maskrcnn: give your categories (or num_classes); pretrained.coco_maskrcnn() is COCO's")
    if categories is not None:
        categories = [str(c) for c in categories]
        num_classes = num_classes or len(categories) + 1
    cfg = config_lib.from_dict(with_overrides(config_lib.to_dict(coco_config(num_classes)), overrides))
    model = MaskRCNN(cfg)
    report = load_into(model, "coco", categories, cache=cache, progress=progress)
    names = ["background", *(categories or [str(k) for k in range(1, num_classes)])]
    return pretrained.Pretrained(model.train(), names, {k: k for k in range(1, num_classes)}, report)
