"""Detections on your own photos (`python -m minimaskrcnn predict`): read each image, run the model, draw the
masks, boxes and "label score" tags, and list everything in predictions.json.

An image that cannot be read is skipped with a one-line warning and listed in predictions.json as skipped; the
others are predicted. Boxes in predictions.json are (x1, y1, x2, y2) pixels of the image as stored.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_paths(items) -> list[Path]:
    """The files to predict: each argument as given, a folder as its images (sorted by name)."""
    found = []
    for item in map(Path, items):
        if item.is_dir():
            inside = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                print(f"warning: folder {item} holds no {'/'.join(IMAGE_SUFFIXES)} files", file=sys.stderr)
            found += inside
        else:
            found.append(item)
    if not found:
        raise ValueError(f"no images to predict in {', '.join(map(str, items))}")
    return found


def model_from_checkpoint(checkpoint, device: str = "auto", **transform):
    """(model in eval mode on `device`, the checkpoint dict) of a minimaskrcnn checkpoint; transform: min_size /
    max_size overrides of the model's image size (None: as trained)."""
    from .checkpoint import build_model_from_checkpoint
    from .devices import pick_device

    transform = {k: v for k, v in transform.items() if v is not None}
    model, state = build_model_from_checkpoint(checkpoint, **({"transform": transform} if transform else {}))
    return model.to(pick_device(device)).eval(), state


def load_predictor(checkpoint=None, weights=None, cache=None, device: str = "auto", **transform):
    """(model in eval mode on `device`, class names indexed by label) from a minimaskrcnn checkpoint, or from
    torchvision's weights: weights="coco" (downloaded once, `pretrained.py`) or a torchvision .pth file."""
    if checkpoint is not None:
        model, state = model_from_checkpoint(checkpoint, device, **transform)
        return model, state.get("class_names") or [str(i) for i in range(model.config.num_classes)]
    from . import pretrained
    from .devices import pick_device

    transform = {k: v for k, v in transform.items() if v is not None}
    overrides = {"transform": transform} if transform else {}
    if weights == "coco":
        if not pretrained.is_cached(cache=cache):
            print(f"downloading torchvision's COCO weights (170 MB) to {pretrained.weights_path(cache=cache)}")
        loaded = pretrained.coco_maskrcnn(cache=cache, **overrides)
    elif Path(weights).is_file():
        loaded = pretrained.load_torchvision_weights(weights, **overrides)
    else:
        raise FileNotFoundError(f"--weights {weights}: no such file (--weights coco: torchvision's COCO model)")
    return loaded.model.to(pick_device(device)).eval(), loaded.class_names


def predict_images(model, names: list[str], images: list[Path], out: Path, score_thresh: float = 0.5) -> list[str]:
    """Draw the detections scoring at least `score_thresh` of every image into out/<name>_pred.png and list
    them in out/predictions.json; returns the images skipped because they could not be read."""
    import matplotlib.pyplot as plt

    from .data import read_rgb
    from .data.coco import to_tensor_image
    from .viz import draw_detections

    device = next(model.parameters()).device
    config = getattr(model, "config", None)
    mask_threshold = config.roi_heads.mask_threshold if config is not None else 0.5  # RoIHeadsConfig's default
    summary, skipped, stems = [], [], set()
    for path in images:
        try:
            image = to_tensor_image(read_rgb(path))  # (3, H, W)
        except (ValueError, OSError) as e:  # unreadable or not an image: skip it, keep the others
            print(f"warning: skipped {path}: {e}", file=sys.stderr)
            summary.append({"image": str(path), "skipped": str(e)})
            skipped.append(str(path))
            continue
        with torch.no_grad():
            det = {k: v.cpu() for k, v in model([image.to(device)]).detections[0].items()}
        h, w = image.shape[-2:]
        fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
        fig.subplots_adjust(0, 0, 1, 1)
        draw_detections(ax, image, det, names, score_thresh, mask_threshold)
        stem = path.stem if path.stem not in stems else f"{path.stem}_{len(summary)}"  # a/x.jpg and b/x.png
        stems.add(stem)
        drawn = out / f"{stem}_pred.png"
        fig.savefig(drawn, dpi=100)
        plt.close(fig)
        keep = det["scores"] >= score_thresh
        found = [{"label": names[int(lab)], "score": round(float(s), 4), "box": [round(v, 1) for v in b.tolist()]}
                 for lab, s, b in zip(det["labels"][keep], det["scores"][keep], det["boxes"][keep])]
        summary.append({"image": str(path), "drawn": str(drawn), "detections": found})
        print(f"{path}: {len(found)} detection(s) -> {drawn}")
    (out / "predictions.json").write_text(json.dumps(summary, indent=1))
    return skipped
