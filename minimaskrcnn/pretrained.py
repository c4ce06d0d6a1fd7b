"""torchvision's COCO-trained Mask R-CNN in one call: download, verify, convert into our model.

    from minimaskrcnn import pretrained
    coco = pretrained.coco_maskrcnn()          # fetches 170 MB once, then reuses the cached file
    det = coco.model([image]).detections[0]     # image: (3, H, W) float32 in [0, 1]
    [coco.class_names[int(lab)] for lab in det["labels"]]   # e.g. ["person", "dog"]

The weights are torchvision's `maskrcnn_resnet50_fpn` COCO checkpoint, the paper's ResNet-50-FPN
(Sec. 3.1) trained on COCO train2017. torchvision's file name ends in the first hex digits of the
file's SHA-256 (as every torch.hub file does: "<name>-<prefix>.pth"); they are checked after the
download and again each time the cached file is loaded, so a corrupt file never loads silently.

The cache folder: the `cache` argument > $MINIMASKRCNN_CACHE > torch.hub's checkpoint folder
(`torch.hub.get_dir()/checkpoints`, i.e. $TORCH_HOME/hub/checkpoints), where torchvision itself keeps
the same file, so weights torchvision already downloaded are reused without network.

Labels: torchvision's COCO model predicts COCO category ids directly (1..90, with gaps where COCO 2014
dropped 10 categories), hence 91 outputs with background at 0. `COCO_CLASS_NAMES` is indexed by label,
"N/A" at the gaps; `label_to_cat_id` (identity on the 80 real ids) is what `evaluate`-style code needs.

Shape glossary: D detections of one image; H, W its size.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config as config_lib
from .checkpoint import torch_load, with_overrides
from .data.download import fetch, file_digest

COCO_WEIGHTS_URL = "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
CACHE_ENV = "MINIMASKRCNN_CACHE"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's rule: the hex after the last '-' of the stem

# Indexed by label = COCO category id; "N/A": an id COCO does not use (written here, not imported, because
# the package never imports torchvision; tests compare it with torchvision's and COCO's own lists).
COCO_CLASS_NAMES = [
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
    "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]  # 91 entries


@dataclass
class Pretrained:
    """model: our MaskRCNN in eval mode. class_names: indexed by label (91 for COCO, "N/A" at unused ids).
    label_to_cat_id: {label: COCO category id} for the real classes (identity for torchvision's COCO model)."""

    model: torch.nn.Module
    class_names: list[str]
    label_to_cat_id: dict[int, int] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        """The names of the real classes, in label order (80 for COCO)."""
        return [self.class_names[label] for label in sorted(self.label_to_cat_id)]


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where downloaded weights live: `cache` > $MINIMASKRCNN_CACHE > torch.hub.get_dir()/checkpoints."""
    if cache is not None and str(cache) != "":
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def hash_prefix(url: str) -> str:
    """The SHA-256 prefix written into a torch.hub file name: ".../name-bf2d0c1e.pth" -> "bf2d0c1e"."""
    found = _HASH_IN_NAME.findall(url.rsplit("/", 1)[-1])
    if not found:
        raise ValueError(f"cannot check {url}: its file name does not end in '-<first 8+ hex digits of its "
                         f"SHA-256>.<ext>' as torch.hub's file names do")
    return found[-1]  # the hex after the last '-'


def weights_path(url: str | None = None, cache=None) -> Path:
    """The cached file for `url` (default COCO_WEIGHTS_URL): <cache folder>/<file name of the URL>."""
    return cache_dir(cache) / (url or COCO_WEIGHTS_URL).rsplit("/", 1)[-1]


def is_cached(url: str | None = None, cache=None) -> bool:
    """Whether the weights are in the cache folder already (nothing is downloaded or verified here)."""
    return weights_path(url, cache).is_file()


def download_weights(url: str | None = None, cache=None, progress: bool = True, timeout: float = 60.0) -> Path:
    """The verified local file of `url` (default COCO_WEIGHTS_URL), downloaded into the cache if missing.

    A cached file is re-hashed (about a second for 170 MB) and reused without network. A file whose SHA-256
    does not start with the prefix in its name is moved to <file>.corrupt and ValueError names the URL, both
    digests and what to do; network failures raise `download.DownloadError`.
    """
    url = url or COCO_WEIGHTS_URL
    prefix, path = hash_prefix(url), weights_path(url, cache)
    if path.is_file():
        got = file_digest(path, "sha256")
        if got.startswith(prefix):
            return path
        bad = path.with_name(path.name + ".corrupt")
        path.replace(bad)
        raise ValueError(f"the cached weights {path} are corrupt: sha256 {got}, expected {prefix}... (from {url}); "
                         f"moved to {bad}: run again to download afresh")
    fetch(url, path, f"sha256:{prefix}", progress=progress, timeout=timeout)
    return path


def read_torchvision_state_dict(path) -> dict[str, torch.Tensor]:
    """A torchvision-format checkpoint (a bare state_dict, as torchvision publishes them). ValueError /
    FileNotFoundError naming the file when it is missing, unreadable or something else."""
    state = torch_load(path, "weights file")
    if not isinstance(state, dict) or "model" in state or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"weights file {path} is not a torchvision state_dict (a minimaskrcnn checkpoint "
                         f"loads with --checkpoint / checkpoint.build_model_from_checkpoint)")
    return state


def load_torchvision_weights(path, **overrides) -> Pretrained:
    """Our MaskRCNN (eval mode) with the weights of a torchvision `maskrcnn_resnet50_fpn` checkpoint file.

    Built from `convert.coco_config()`: torchvision runs its COCO weights with frozen-BN eps 0 (pass
    backbone={"frozen_bn_eps": 1e-5} for a model you fine-tuned with torchvision's defaults). The class
    count is read from the checkpoint. overrides: `section={field: value}` for fields that hold no weights,
    e.g. transform={"min_size": 600}.
    """
    from .convert import coco_config, load_torchvision_maskrcnn
    from .model import MaskRCNN

    state = read_torchvision_state_dict(path)
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise ValueError(f"weights file {path} is not a torchvision maskrcnn_resnet50_fpn state_dict (no {key})")
    num_classes = state[key].shape[0]  # (K, 1024): one row per class, background included
    config = config_lib.from_dict(with_overrides(config_lib.to_dict(coco_config(num_classes)), overrides))
    model = MaskRCNN(config)
    try:
        load_torchvision_maskrcnn(model, state)
    except ValueError as e:  # the strict loader's report lists every key; the first line names the problem
        raise ValueError(f"weights file {path}: {' '.join(str(e).split())}") from e
    if num_classes == len(COCO_CLASS_NAMES):
        names = list(COCO_CLASS_NAMES)
        label_to_cat_id = {i: i for i, n in enumerate(names) if i > 0 and n != "N/A"}
    else:
        names = ["background"] + [str(i) for i in range(1, num_classes)]
        label_to_cat_id = {i: i for i in range(1, num_classes)}
    return Pretrained(model.eval(), names, label_to_cat_id)


def coco_maskrcnn(cache=None, url: str | None = None, progress: bool = True, timeout: float = 60.0,
                  **overrides) -> Pretrained:
    """torchvision's COCO-trained Mask R-CNN as our model: downloaded (once), verified, converted.

    cache: the weights folder (see `cache_dir`). url: default COCO_WEIGHTS_URL. overrides as in
    `load_torchvision_weights`, e.g. transform={"min_size": 512} for faster, coarser detection.
    """
    return load_torchvision_weights(download_weights(url, cache, progress, timeout), **overrides)


# ---------------------------------- the keypoint model of Sec. 5: torchvision's keypointrcnn_resnet50_fpn

# torchvision's COCO_V1 keypoint weights (keypoint AP 65.0, box AP 54.6 on val2017; 226 MB), trained on COCO's
# people (person_keypoints_train2017): 2 classes (background, person), 17 keypoints, no mask branch
COCO_KEYPOINT_WEIGHTS_URL = "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
COCO_PERSON_CLASS_NAMES = ["__background__", "person"]  # label 1 is COCO category 1


@dataclass
class PretrainedKeypoints(Pretrained):
    """Pretrained, plus the keypoint layout its model predicts (data/keypoints.py): keypoint_names (K),
    skeleton (0-based pairs to draw as limbs), flip_pairs, keypoint_sigmas (COCO's OKS sigmas for people)."""

    keypoint_names: list[str] = field(default_factory=list)
    skeleton: list[tuple[int, int]] = field(default_factory=list)
    flip_pairs: list[tuple[int, int]] = field(default_factory=list)
    keypoint_sigmas: tuple | None = None


def load_torchvision_keypoint_weights(path, **overrides) -> PretrainedKeypoints:
    """Our keypoint MaskRCNN (eval mode) with the weights of a torchvision `keypointrcnn_resnet50_fpn` checkpoint
    file: built from `convert.keypoint_coco_config()` (frozen-BN eps 0, as torchvision runs COCO_V1), classes and
    keypoints counted from the checkpoint. overrides as in `load_torchvision_weights`."""
    import dataclasses

    from .convert import keypoint_coco_config, load_torchvision_keypointrcnn
    from .data.keypoints import COCO_PERSON_KEYPOINTS, COCO_PERSON_SIGMAS, COCO_PERSON_SKELETON, flip_pairs_from_names
    from .model import MaskRCNN

    state = read_torchvision_state_dict(path)
    key, classes = "roi_heads.keypoint_predictor.kps_score_lowres.weight", "roi_heads.box_predictor.cls_score.weight"
    if key not in state or classes not in state:
        raise ValueError(f"weights file {path} is not a torchvision keypointrcnn_resnet50_fpn state_dict (no {key})")
    num_classes, K = state[classes].shape[0], state[key].shape[1]  # (C, 1024); (512, K, 4, 4): a transposed conv
    config = keypoint_coco_config(num_classes)
    config = dataclasses.replace(config, roi_heads=dataclasses.replace(config.roi_heads, num_keypoints=K))
    config = config_lib.from_dict(with_overrides(config_lib.to_dict(config), overrides))
    model = MaskRCNN(config)
    try:
        load_torchvision_keypointrcnn(model, state)
    except ValueError as e:
        raise ValueError(f"weights file {path}: {' '.join(str(e).split())}") from e
    names = (list(COCO_PERSON_CLASS_NAMES) if num_classes == 2 else
             ["background"] + [str(i) for i in range(1, num_classes)])
    people = K == len(COCO_PERSON_KEYPOINTS)
    keypoint_names = list(COCO_PERSON_KEYPOINTS) if people else [f"keypoint_{i}" for i in range(K)]
    return PretrainedKeypoints(model.eval(), names, {i: i for i in range(1, num_classes)}, keypoint_names,
                               list(COCO_PERSON_SKELETON) if people else [], flip_pairs_from_names(keypoint_names),
                               COCO_PERSON_SIGMAS if people else None)


def coco_keypointrcnn(cache=None, url: str | None = None, progress: bool = True, timeout: float = 60.0,
                      **overrides) -> PretrainedKeypoints:
    """torchvision's COCO-trained keypoint R-CNN (people, 17 keypoints) as our model: downloaded (once, 226 MB),
    verified against the SHA-256 prefix in its name, converted. As `coco_maskrcnn`; url default
    COCO_KEYPOINT_WEIGHTS_URL.

        kp = pretrained.coco_keypointrcnn()
        det = kp.model([image]).detections[0]   # "keypoints" (D, 17, 3), "keypoint_scores" (D, 17)
        viz_keypoints.draw_keypoint_detections(ax, image, det, kp.class_names, kp.skeleton)
    """
    url = url or COCO_KEYPOINT_WEIGHTS_URL
    return load_torchvision_keypoint_weights(download_weights(url, cache, progress, timeout), **overrides)
