"""Detections on your own photos (`python -m minimaskrcnn predict`): read each image, run the model, draw the
masks, boxes and "label score" tags, and list everything in predictions.json.

An image that cannot be read is skipped with a one-line warning and listed in predictions.json as skipped; the
others are predicted. Images are read as displayed (EXIF orientation applied), and boxes in predictions.json are
(x1, y1, x2, y2) pixels of the image at its full size. The drawing is capped at MAX_DRAWN pixels on its longer
side, and only the masks drawn are pasted, at that size: a model pastes every mask at the image's full size, and a
figure drawn at 8000 x 8000 pixels took GBs of memory for a picture nobody views at that size.

Glossary: H, W an image's size; h, w its drawn size; D detections.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_DRAWN = 1600  # pixels on the longer side of a drawn image (a phone's 4032 x 3024 photo is drawn 1600 x 1200)


def image_paths(items) -> list[Path]:
    """The files to predict: each argument as given, a folder as the images in it and in its subfolders (sorted by
    path, hidden folders such as .ipynb_checkpoints left out and named in a warning)."""
    found = []
    if not all(str(item).strip() for item in items):  # Path("") is the current folder
        raise ValueError("an image argument is empty: name image files or folders")
    for item in map(Path, items):
        if not item.is_dir():
            found.append(item)
            continue
        inside, hidden = [], []
        for folder, subfolders, files in os.walk(item):  # symlinked folders are not followed (no loops)
            hidden += [Path(folder) / d for d in subfolders if d.startswith(".")]
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            inside += [Path(folder) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if hidden:
            print(f"warning: skipped hidden folder(s) {', '.join(map(str, sorted(hidden)))}", file=sys.stderr)
        if not inside:
            print(f"warning: folder {item} holds no {'/'.join(IMAGE_SUFFIXES)} files", file=sys.stderr)
        found += sorted(inside)
    if not found:
        raise ValueError(f"no images to predict in {', '.join(map(str, items))}")
    return found


def drawn_size(h: int, w: int, cap: int = MAX_DRAWN) -> tuple[int, int]:
    """(h, w) of an (H, W) image drawn with its longer side at most `cap` pixels (never enlarged)."""
    scale = min(1.0, cap / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


@torch.no_grad()
def detect(model, image: torch.Tensor, score_thresh: float, size: tuple[int, int]) -> tuple[dict, dict]:
    """(detections, drawn) of one (3, H, W) image, those scoring at least `score_thresh` only: detections' "boxes"
    (D, 4) in the image's pixels, with "labels" and "scores"; drawn: the same with "boxes" in an image of `size`
    (h, w) and "masks" (D, h, w) pasted at that size. The stages of model.forward (model.py), whose postprocess
    would paste every mask at (H, W): 256 MB a detection for an 8000 x 8000 photo."""
    batch, _ = model.transform([image])
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn(batch, features)
    det = model.roi_heads(features, proposals, batch.image_sizes)[0][0]  # in the resized frame, (D, M, M) masks
    det = {k: v[det["scores"] >= score_thresh] for k, v in det.items()}
    full = model.transform.postprocess([{k: v for k, v in det.items() if k != "masks"}], batch)[0]
    drawn = model.transform.postprocess([det], dataclasses.replace(batch, original_sizes=[size]))[0]
    return full, drawn


def model_from_checkpoint(checkpoint, device: str = "auto", **transform):
    """(model in eval mode on `device`, the checkpoint dict) of a minimaskrcnn checkpoint; transform: min_size /
    max_size overrides of the model's image size (None: as trained)."""
    from .checkpoint import build_model_from_checkpoint
    from .devices import pick_device

    transform = {k: v for k, v in transform.items() if v is not None}
    model, state = build_model_from_checkpoint(checkpoint, **({"transform": transform} if transform else {}))
    return model.to(pick_device(device)).eval(), state


def load_predictor(checkpoint=None, weights=None, cache=None, device: str = "auto", **transform):
    """(model in eval mode on `device`, class names indexed by label, skeleton) from a minimaskrcnn checkpoint, or
    from torchvision's weights: weights="coco" or "coco-keypoints" (downloaded once, `pretrained.py`) or a
    torchvision maskrcnn_resnet50_fpn / keypointrcnn_resnet50_fpn .pth file. skeleton: the 0-based pairs of
    keypoints to draw as limbs ([] for a model without the keypoint branch, or a layout that names none)."""
    if checkpoint is not None:
        model, state = model_from_checkpoint(checkpoint, device, **transform)
        names = state.get("class_names") or [str(i) for i in range(model.config.num_classes)]
        return model, names, [tuple(pair) for pair in (state.get("keypoints") or {}).get("skeleton", [])]
    from . import pretrained
    from .devices import pick_device

    transform = {k: v for k, v in transform.items() if v is not None}
    overrides = {"transform": transform} if transform else {}
    if weights in ("coco", "coco-keypoints"):
        url = pretrained.COCO_WEIGHTS_URL if weights == "coco" else pretrained.COCO_KEYPOINT_WEIGHTS_URL
        if not pretrained.is_cached(url, cache=cache):
            print(f"downloading torchvision's COCO weights ({'170' if weights == 'coco' else '226'} MB) to "
                  f"{pretrained.weights_path(url, cache=cache)}")
        loaded = (pretrained.coco_maskrcnn(cache=cache, **overrides) if weights == "coco" else
                  pretrained.coco_keypointrcnn(cache=cache, **overrides))
    elif Path(weights).is_file():
        load = (pretrained.load_torchvision_keypoint_weights if holds_keypoint_head(weights) else
                pretrained.load_torchvision_weights)
        loaded = load(weights, **overrides)
    else:
        raise FileNotFoundError(f"--weights {weights}: no such file (--weights coco: torchvision's COCO model; "
                                f"coco-keypoints: its COCO keypoint model)")
    return loaded.model.to(pick_device(device)).eval(), loaded.class_names, list(getattr(loaded, "skeleton", []))


def holds_keypoint_head(path) -> bool:
    """Whether a torchvision weights file is a keypointrcnn's (it has a keypoint predictor); the tensors are
    mapped, not read. False for anything torch cannot open: the loader then says what is wrong with it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (not a zip checkpoint: the loader's own message names the problem)
        return False
    return isinstance(state, dict) and "roi_heads.keypoint_predictor.kps_score_lowres.weight" in state


def predict_images(model, names: list[str], images: list[Path], out: Path, score_thresh: float = 0.5,
                   skeleton=()) -> list[str]:
    """Draw the detections scoring at least `score_thresh` of every image into out/<name>_pred.png (at most
    MAX_DRAWN pixels on a side) and list them in out/predictions.json (full-size pixels); returns the images
    skipped because they could not be read. A keypoint model's keypoints are drawn too (those with a positive
    heatmap logit, the limbs of `skeleton` between them) and listed as [x, y, score] per keypoint type."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from .data import read_rgb
    from .data.coco import to_tensor_image
    from .viz_keypoints import draw_keypoint_detections

    device = next(model.parameters()).device
    config = getattr(model, "config", None)
    mask_threshold = config.roi_heads.mask_threshold if config is not None else 0.5  # RoIHeadsConfig's default
    summary, skipped, stems = [], [], set()
    for path in images:
        try:
            rgb = read_rgb(path)  # (H, W, 3) uint8
        except (ValueError, OSError) as e:  # unreadable or not an image: skip it, keep the others
            print(f"warning: skipped {path}: {e}", file=sys.stderr)
            summary.append({"image": str(path), "skipped": str(e)})
            skipped.append(str(path))
            continue
        h, w = drawn_size(*rgb.shape[:2])
        shown = rgb if (h, w) == rgb.shape[:2] else np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        image = to_tensor_image(rgb).to(device)  # (3, H, W)
        del rgb  # the full-size copies go as soon as they are used: the model's input is the largest
        det, drawn_det = detect(model, image, score_thresh, (h, w))
        del image
        fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
        fig.subplots_adjust(0, 0, 1, 1)
        draw_keypoint_detections(ax, to_tensor_image(shown), {k: v.cpu() for k, v in drawn_det.items()}, names,
                                 skeleton, score_thresh, mask_threshold=mask_threshold)
        stem = path.stem if path.stem not in stems else f"{path.stem}_{len(summary)}"  # a/x.jpg and b/x.png
        stems.add(stem)
        drawn = out / f"{stem}_pred.png"
        fig.savefig(drawn, dpi=100)
        plt.close(fig)
        found = [{"label": names[int(lab)], "score": round(float(s), 4), "box": [round(v, 1) for v in b.tolist()]}
                 for lab, s, b in zip(det["labels"].cpu(), det["scores"].cpu(), det["boxes"].cpu())]
        if "keypoints" in det:  # (D, K, 3) (x, y, 1) and (D, K) scores -> D lists of K [x, y, score]
            points = torch.cat([det["keypoints"][..., :2], det["keypoint_scores"][..., None]], dim=2).cpu()
            for entry, kp in zip(found, points.tolist()):
                entry["keypoints"] = [[round(x, 1), round(y, 1), round(k, 2)] for x, y, k in kp]
        summary.append({"image": str(path), "drawn": str(drawn), "detections": found})
        print(f"{path}: {len(found)} detection(s) -> {drawn}")
    (out / "predictions.json").write_text(json.dumps(summary, indent=1))
    return skipped
