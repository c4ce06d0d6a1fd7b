"""Data: COCO-format and synthetic datasets, transforms and batching, the COCO downloader and subsets.

Both datasets share one interface: ds[i] -> (image (3, H, W) float32 in [0, 1], target dict with
"boxes" (N, 4) float32 (x1, y1, x2, y2) pixels, "labels" (N,) int64 in 1..K-1, "masks" (N, H, W) uint8,
"image_id" int, and "keypoints" (N, K, 3) float32 (x, y, v) when the data has keypoints); len(ds); ds.num_classes
(background included); ds.class_names; ds.label_to_cat_id; ds.image_ids; ds.coco (pycocotools ground truth for
evaluation); the keypoint layout ds.num_keypoints (0: none), ds.keypoint_names, ds.skeleton, ds.flip_pairs,
ds.keypoint_sigmas (`keypoints.py`).

`download_coco(root, splits)` fetches the official COCO archives (resumable, checksummed);
`make_subset(ann_file, out_file, num_images=..., categories=...)` carves a smaller COCO out of them.
"""
from .coco import CocoDataset, read_rgb
from .coco_json import coco_from_dict, load_coco_json
from .download import download_coco
from .shapes import ShapesDataset
from .subset import make_subset
from .transforms import Compose, RandomHorizontalFlip, RandomScale, collate, hflip, hflip_keypoints, resize

__all__ = ["CocoDataset", "ShapesDataset", "Compose", "RandomHorizontalFlip", "RandomScale", "collate",
           "hflip", "hflip_keypoints", "resize", "coco_from_dict", "load_coco_json", "read_rgb", "download_coco", "make_subset"]
