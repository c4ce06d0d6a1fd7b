"""COCO evaluation through pycocotools COCOeval, for boxes, masks and keypoints (the paper's Tables 1-4 metrics).

AP is averaged over IoU thresholds .50:.05:.95; AP50 / AP75 at one threshold; APs / APm / APl over
small (< 32^2 pixels), medium and large objects. Detections become COCO result dicts, the format the
COCO evaluation server takes: bbox as [x, y, w, h], the mask binarized at 0.5 (Sec. 3.1, "Inference")
and run-length encoded, keypoints as [x1, y1, v1, ...], and the contiguous label mapped back to the COCO
category id.

Keypoint AP (Sec. 5, Table 4) is the same AP with the IoU replaced by the object keypoint similarity,
OKS = mean over the labelled keypoints of exp(-d^2 / (2 s^2 k^2)): d the distance between predicted and true
keypoint, s^2 the object's area, k = 2 sigma, sigma a keypoint type's own tolerance (COCO's 17 for people;
the dataset's `keypoint_sigmas`). There are no small objects (APs) and 20 detections per image count.

`evaluate(model, dataset)` runs a model over a dataset and scores it; the functions below it do the parts.

Glossary: D detections in an image, H, W the image's original size.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import collate
from .devices import amp_dtype

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")  # pycocotools'


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, batch_size: int = 2, device=None, out_json=None,
             num_workers: int = 0, amp: str = "off", progress: bool = True, verbose: bool = True,
             label_to_cat_id: dict | None = None) -> dict:
    """COCO box, mask and keypoint AP of `model` on `dataset` (which has .coco and .label_to_cat_id).

    Runs the model in eval mode, turns each batch's detections into COCO results at once (full-size
    masks are large), writes them to out_json (the evaluation server's format) when given, prints the
    COCO table when verbose, and returns {"bbox": {"AP", ...}, "segm": {...}} (see `evaluate_coco`): "segm"
    when the model has the mask branch, "keypoints" when it has the keypoint branch (the dataset must then have
    the same keypoints, `check_keypoint_data`).
    label_to_cat_id: the model's own labels -> COCO category ids, when they are not the dataset's (torchvision's
    COCO model predicts the category ids themselves: `pretrained.coco_maskrcnn().label_to_cat_id`); detections
    of a label with no category (COCO's unused ids) are left out, and counted in a warning.
    It draws nothing from the global random generators: evaluating in the middle of a training run does not
    change what the run samples afterwards.
    """
    model = getattr(model, "module", model)
    device = device or next(model.parameters()).device
    device = torch.device(device)
    dtype = amp_dtype(amp, device)
    heads = getattr(getattr(model, "config", None), "roi_heads", None)  # None: a model without our config
    mask_threshold = getattr(heads, "mask_threshold", 0.5)  # RoIHeadsConfig's default
    num_keypoints = getattr(heads, "num_keypoints", 0)
    iou_types = ("bbox",) + ("segm",) * getattr(heads, "mask_branch", True) + ("keypoints",) * bool(num_keypoints)
    if num_keypoints:
        check_keypoint_data(dataset, num_keypoints)  # before the model runs over all the data
    was_training = model.training
    model.eval()
    mapping = dataset.label_to_cat_id if label_to_cat_id is None else label_to_cat_id
    # a DataLoader without a generator of its own draws its workers' base seed from the global one
    loader = DataLoader(dataset, batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    results, image_ids, unmapped = [], [], 0
    try:
        for images, targets in tqdm(loader, desc="evaluate", dynamic_ncols=True, disable=not progress):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                detections = model([im.to(device) for im in images]).detections
            detections = [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in d.items()}
                          for d in detections]
            ids = [int(t["image_id"]) for t in targets]
            known = [torch.tensor([int(lab) in mapping for lab in d["labels"]], dtype=torch.bool) for d in detections]
            unmapped += sum(int((~k).sum()) for k in known)
            detections = [{key: v[k] for key, v in d.items()} for d, k in zip(detections, known)]
            results += detections_to_coco(detections, ids, mapping, mask_threshold)
            image_ids += ids
    except torch.cuda.OutOfMemoryError as e:
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory during evaluation (batch_size={batch_size}): "
                                          f"lower the batch size or the image size\n{e}") from e
    finally:
        model.train(was_training)
    if unmapped:
        warnings.warn(f"left out {unmapped} detection(s) whose label has no category in the label mapping")
    metrics = evaluate_coco(dataset.coco, results, out_json, image_ids=image_ids, iou_types=iou_types,
                            keypoint_sigmas=getattr(dataset, "keypoint_sigmas", None))
    if verbose:
        print(format_table(metrics))
    return metrics


def check_keypoint_data(dataset, num_keypoints: int) -> None:
    """A one-line ValueError unless `dataset` has keypoints of `num_keypoints` types, and OKS sigmas for them: a
    keypoint model scored on data without keypoints would have no keypoint AP to give, and not say why."""
    have = getattr(dataset, "num_keypoints", 0)
    if have != num_keypoints:
        what = f"{have} keypoint types" if have else "no keypoints"
        raise ValueError(f"the model predicts {num_keypoints} keypoint types but {dataset!r} has {what}: evaluate it "
                         f"on keypoint data (COCO's person_keypoints_*.json, ShapesDataset(keypoints=True))")
    if getattr(dataset, "keypoint_sigmas", None) is None:
        raise ValueError(f"{dataset!r} gives no OKS sigmas for its {have} keypoint types, which keypoint AP needs: "
                         f"build it with keypoint_sigmas=(...), one per keypoint type")


def encode_masks(masks, threshold: float = 0.5) -> list[dict]:
    """(D, H, W) (or (D, 1, H, W)) probabilities -> D compressed RLEs, counts as str (JSON-ready)."""
    masks = torch.as_tensor(masks).detach().cpu()
    if masks.ndim == 4:
        masks = masks[:, 0]  # (D, 1, H, W) -> (D, H, W)
    binary = (masks.float() >= threshold).numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))  # pycocotools wants (H, W, D)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def detections_to_coco(detections: list[dict], image_ids: list[int], label_to_cat_id: dict,
                       mask_threshold: float = 0.5) -> list[dict]:
    """Model detections -> COCO result dicts.

    detections[i] (for COCO image image_ids[i]): "boxes" (D, 4) (x1, y1, x2, y2) original-image pixels,
    "labels" (D,) int64 contiguous labels, "scores" (D,), optionally "masks" (D, H, W) probabilities and
    "keypoints" (D, K, 3) (x, y, v) pixels. Returns [{"image_id", "category_id", "bbox": [x, y, w, h], "score"
    [, "segmentation": RLE][, "keypoints": [x1, y1, v1, ...]]}, ...]; a keypoint result's score is its box's.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"got {len(detections)} detection dicts but {len(image_ids)} image_ids")
    results = []
    for det, image_id in zip(detections, image_ids):
        for key in ("boxes", "labels", "scores"):
            if key not in det:
                raise ValueError(f"detections for image {image_id} lack '{key}'")
        boxes = torch.as_tensor(det["boxes"]).detach().cpu().double().reshape(-1, 4)
        labels = torch.as_tensor(det["labels"]).detach().cpu().tolist()
        scores = torch.as_tensor(det["scores"]).detach().cpu().tolist()
        if not (len(boxes) == len(labels) == len(scores)):
            raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
        unknown = sorted({lab for lab in labels if lab not in label_to_cat_id})
        if unknown:
            raise ValueError(f"image {image_id}: labels {unknown} are not in label_to_cat_id")
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()  # (D, 4)
        rles = encode_masks(det["masks"], mask_threshold) if det.get("masks") is not None and len(boxes) else None
        keypoints = det.get("keypoints")
        if keypoints is not None:  # (D, K, 3) -> D lists of 3K numbers
            keypoints = torch.as_tensor(keypoints).detach().cpu().double().flatten(start_dim=1).tolist()
        for k in range(len(boxes)):
            result = {"image_id": int(image_id), "category_id": int(label_to_cat_id[labels[k]]),
                      "bbox": [round(v, 3) for v in xywh[k]], "score": float(scores[k])}
            if rles is not None:
                result["segmentation"] = rles[k]
            if keypoints is not None:
                result["keypoints"] = [round(v, 3) for v in keypoints[k]]
            results.append(result)
    return results


def save_results(results: list[dict], out_json: str | os.PathLike) -> Path:
    """Write COCO results as JSON (the evaluation server's format); returns the path."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results))
    return out_json


def _run_cocoeval(coco_gt, results: list[dict], iou_type: str, image_ids, sigmas=None) -> np.ndarray:
    """COCOeval stats (12,), or (10,) for keypoints, for one iou_type, pycocotools' progress prints silenced."""
    # loadRes adds keys (id, area, iscrowd) to the dicts it gets: give it copies, leave the caller's alone.
    # For segm, without a bbox it takes a result's area from its mask (not w*h), which decides the
    # small/medium/large bucket of unmatched detections; for keypoints (the server's format has no bbox
    # nor mask) from the keypoints' extent.
    drop = {"bbox": {"keypoints"}, "segm": {"bbox", "keypoints"}, "keypoints": {"bbox", "segmentation"}}[iou_type]
    results = [{k: v for k, v in r.items() if k not in drop} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=float)
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=float)


def evaluate_coco(coco_gt, results: list[dict], out_json=None, image_ids=None,
                  iou_types=("bbox", "segm"), keypoint_sigmas=None) -> dict:
    """COCO AP of `results` (from detections_to_coco) against the ground truth `coco_gt` (ds.coco).

    image_ids: restrict the evaluation to these images (default: all images of coco_gt).
    out_json: where to write the results JSON (optional).
    iou_types: of "bbox", "segm", "keypoints"; keypoint_sigmas: K OKS sigmas for "keypoints" (ds.keypoint_sigmas;
    None: pycocotools' own, COCO's 17 for people).
    Returns {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", ...}, "segm": {...}}, values in
    [0, 1] ("keypoints": KEYPOINT_STAT_NAMES); -1 (pycocotools' convention) where no ground truth falls in an
    area range. An empty result list gives zeros (pycocotools' loadRes cannot take one).
    """
    if out_json is not None:
        save_results(results, out_json)
    known = set(coco_gt.getImgIds())
    stray = sorted({r["image_id"] for r in results} - known)
    if stray:
        raise ValueError(f"results refer to image ids not in the ground truth: {stray[:5]}")
    metrics = {}
    for iou_type in iou_types:
        field = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
        usable = [r for r in results if field in r]
        if results and not usable:
            raise ValueError(f"{iou_type} evaluation asked for but no result has a '{field}'")
        names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES
        sigmas = keypoint_sigmas if iou_type == "keypoints" else None
        stats = _run_cocoeval(coco_gt, usable, iou_type, image_ids, sigmas) if usable else np.zeros(len(names))
        metrics[iou_type] = {name: float(v) for name, v in zip(names, stats)}
    return metrics


def format_table(metrics: dict) -> str:
    """A compact table of the six AP numbers per iou_type, in percent as in the paper (keypoints have no APs)."""
    names = {t: {"bbox": "box", "segm": "mask", "keypoints": "keypoint"}.get(t, t) for t in metrics}
    width = max([6] + [len(name) for name in names.values()])
    rows = [f"{'':{width}}" + "".join(f"{n:>7}" for n in STAT_NAMES[:6])]
    for iou_type, m in metrics.items():
        rows.append(f"{names[iou_type]:{width}}" + "".join(f"{100 * m[n]:7.1f}" if m.get(n, -1) >= 0
                                                           else f"{'-':>7}" for n in STAT_NAMES[:6]))
    return "\n".join(rows)


def format_duration(seconds: float) -> str:
    """9m41s style."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def headline_ap(metrics: dict) -> float:
    """The headline number of `evaluate`'s metrics: mask AP when there is one, else box AP."""
    return metrics["segm"]["AP"] if "segm" in metrics else metrics["bbox"]["AP"]


def summary_line(metrics: dict, seconds: float | None = None) -> str:
    """`box AP 0.812 | mask AP 0.790 | keypoint AP 0.650 | 9m41s` (mask and keypoint AP when evaluated, the time
    part only when seconds is given)."""
    parts = [f"box AP {metrics['bbox']['AP']:.3f}"]
    if "segm" in metrics:
        parts.append(f"mask AP {metrics['segm']['AP']:.3f}")
    if "keypoints" in metrics:
        parts.append(f"keypoint AP {metrics['keypoints']['AP']:.3f}")
    if seconds is not None:
        parts.append(format_duration(seconds))
    return " | ".join(parts)
