"""`python -m minimaskrcnn predict`: a model's detections drawn on your photos, and listed in predictions.json
(predict.py does the work)."""
from __future__ import annotations

from pathlib import Path

from .. import paths
from ..devices import check_device_name
from .flags import add_model_flags, check_flag, check_not_empty, model_flags_in_flag_terms


def add_arguments(p) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a minimaskrcnn checkpoint (e.g. runs/demo/last.pt)")
    which.add_argument("--weights", help="'coco': torchvision's COCO-trained model (downloaded once, 170 MB); "
                                         "'coco-keypoints': its COCO person keypoint model (226 MB); or a "
                                         "torchvision maskrcnn_resnet50_fpn / keypointrcnn_resnet50_fpn .pth file")
    p.add_argument("images", nargs="+", help="image files, or folders (every image in them and their subfolders, "
                                             "sorted)")
    p.add_argument("--out", default="predictions", help="folder for the drawn images and predictions.json")
    p.add_argument("--score-thresh", type=float, default=0.5, help="draw and list the detections scoring at least "
                                                                    "this (0 to 1)")
    p.add_argument("--cache", default=None, help="folder of downloaded weights (default: $MINIMASKRCNN_CACHE "
                                                 "or torch.hub's, where torchvision keeps the same file)")
    add_model_flags(p)


def run(args) -> None:
    from ..predict import image_paths, load_predictor, predict_images

    check_device_name("--device", args.device)
    check_flag("--score-thresh", args.score_thresh, 0, 1, integer=False)  # a score is a probability
    check_flag("--batch-size", args.batch_size, 1)
    check_not_empty("--out", args.out, "the folder for the drawn images and predictions.json")
    images = image_paths(args.images)
    paths.writable_folder(Path(args.out))  # before a model is loaded
    try:
        model, names, skeleton = load_predictor(args.checkpoint, args.weights, args.cache, args.device,
                                      min_size=args.min_size, max_size=args.max_size)
    except ValueError as e:
        raise model_flags_in_flag_terms(e) from e
    skipped = predict_images(model, names, images, Path(args.out), args.score_thresh, skeleton)
    if len(skipped) == len(images):
        raise ValueError(f"none of the {len(images)} image(s) could be read (see the warnings above)")
    if skipped:
        print(f"{len(images) - len(skipped)} image(s) predicted, {len(skipped)} skipped: {', '.join(skipped)}; "
              f"see {Path(args.out) / 'predictions.json'}")
