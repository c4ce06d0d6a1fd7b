"""`python -m minimaskrcnn evaluate`: COCO box and mask AP (and keypoint AP, for a keypoint model) of a checkpoint,
on the held-out set its run used or on the data named here."""
from __future__ import annotations

import time
from pathlib import Path

from .. import paths
from ..devices import check_device_name
from .flags import add_model_flags, check_flag, check_none_empty, model_flags_in_flag_terms


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--annotations", default=None, help="a COCO-format JSON to evaluate on (with --images)")
    p.add_argument("--images", default=None, help="the image folder of --annotations")
    p.add_argument("--data", default=None, help="COCO root or 'shapes' (default: the held-out set the "
                                                 "checkpoint's run used)")
    p.add_argument("--split", default="val2017", help="COCO split of --data (default: val2017)")
    p.add_argument("--num-images", type=int, default=200, help="held-out synthetic images (--data shapes)")
    p.add_argument("--out", default=None, help="results JSON (default: results_<JSON name>_<path hash>.json next to "
                                               "the checkpoint)")
    p.add_argument("--overwrite", action="store_true",
                   help="the results file exists: move it into replaced-<time>/ beside it and write anew")
    add_model_flags(p)


def default_results_name(dataset) -> str:
    """results_<JSON name>_<8 hex digits of its absolute path>.json: two files that share a name (instances.json in
    two folders) get results files of their own, where the second used to replace the first; evaluating the same
    file again gives the same name. Synthetic shapes: results_shapes_<images>.json."""
    import hashlib

    if not hasattr(dataset, "ann_file"):
        return f"results_shapes_{len(dataset)}.json"
    where = hashlib.sha256(str(Path(dataset.ann_file).resolve()).encode()).hexdigest()[:8]
    return f"results_{Path(dataset.ann_file).stem}_{where}.json"


def run(args) -> None:
    from ..data.sources import check_same_classes, evaluation_set
    from ..evaluation import evaluate, summary_line
    from ..predict import model_from_checkpoint

    check_none_empty(args, {f"--{name}": name for name in ("checkpoint", "annotations", "images", "data", "split",
                                                           "out")})
    check_device_name("--device", args.device)
    check_flag("--batch-size", args.batch_size, 1)
    check_flag("--num-images", args.num_images, 1)
    start = time.perf_counter()
    try:
        model, state = model_from_checkpoint(args.checkpoint, args.device, min_size=args.min_size,
                                             max_size=args.max_size)
    except ValueError as e:
        raise model_flags_in_flag_terms(e) from e
    dataset = evaluation_set(state, args.checkpoint, args.annotations, args.images, args.data, args.split,
                             args.num_images)
    check_same_classes(dataset, state.get("class_names"), model.config.num_classes,
                       f"checkpoint {args.checkpoint} was trained on")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name(default_results_name(dataset))
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the results file, e.g. {out / 'results.json'}")
    paths.writable_folder(out.parent)  # before the inference, whose results would be lost
    paths.make_room(out.parent, [out.name], args.overwrite, "choose another --out")  # earlier results are kept
    metrics = evaluate(model, dataset, args.batch_size, out_json=out)
    print(f"results: {out}")
    print(summary_line(metrics, time.perf_counter() - start))
