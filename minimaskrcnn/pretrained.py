"""torchvision's COCO-trained Mask R-CNN in one call: download, verify, convert into our model.

    from minimaskrcnn import pretrained
    coco = pretrained.coco_maskrcnn()          # fetches 170 MB once, then reuses the cached file
    det = coco.model([image]).detections[0]     # image: (3, H, W) float32 in [0, 1]
    [coco.class_names[int(lab)] for lab in det["labels"]]   # e.g. ["person", "dog"]

The weights are torchvision's `maskrcnn_resnet50_fpn` COCO checkpoint, the paper's ResNet-50-FPN
(Sec. 3.1) trained on COCO train2017. torchvision's file name ends in the first hex digits of the
file's SHA-256 (as every torch.hub file does: "<name>-<prefix>.pth"); they are checked after the
download and again each time the cached file is loaded, so a corrupt file never loads silently.

`read_source` reads any weights `transfer.load_into` starts a model from (ImageNet's ResNets, the COCO model, a
torchvision state_dict file, a minimaskrcnn checkpoint) into our state_dict names; `transfer.coco_maskrcnn(categories)`
is this model fine-tuning-ready for your own categories.

A mirror: $MINIMASKRCNN_MIRROR, a base URL that serves the same files under the same names, replaces
download.pytorch.org/models (the file and its checksum stay those of the URL).

The cache folder: the `cache` argument > $MINIMASKRCNN_CACHE > torch.hub's checkpoint folder
(`torch.hub.get_dir()/checkpoints`, i.e. $TORCH_HOME/hub/checkpoints), where torchvision itself keeps
the same file, so weights torchvision already downloaded are reused without network.

Labels: torchvision's COCO model predicts COCO category ids directly (1..90, with gaps where COCO 2014
dropped 10 categories), hence 91 outputs with background at 0. `COCO_CLASS_NAMES` is indexed by label,
"N/A" at the gaps; `label_to_cat_id` (identity on the 80 real ids) is what `evaluate`-style code needs.

Shape glossary: D detections of one image; H, W its size.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config as config_lib
from .checkpoint import read_checkpoint, torch_load, with_overrides
from .convert import convert_torchvision_maskrcnn
from .data.download import DownloadError, fetch, file_digest
from .resnet import DEPTHS

COCO_WEIGHTS_URL = "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
IMAGENET_URLS = {  # torchvision's IMAGENET1K_V1 ResNets, which its detection models start from
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    101: "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}
SOURCES = ("imagenet", "coco", "none")  # or a file
CACHE_ENV = "MINIMASKRCNN_CACHE"
MIRROR_ENV = "MINIMASKRCNN_MIRROR"  # a base URL serving torchvision's weight files under their names
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
    report: object = None  # transfer.InitReport, for a model made for your categories (transfer.coco_maskrcnn)

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


def mirrored(url: str) -> str:
    """url, or the same file name under $MINIMASKRCNN_MIRROR when it is set."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    return f"{base.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if base else url


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
    fetch(mirrored(url), path, f"sha256:{prefix}", progress=progress, timeout=timeout)
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
    For your own categories: `transfer.coco_maskrcnn(categories)`.
    """
    return load_torchvision_weights(download_weights(url, cache, progress, timeout), **overrides)


# ------------------------------------------------------------------------------------------------
# Any pretrained weights, read for transfer.load_into: downloads by name, torchvision files, our checkpoints
# ------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """Weights to load, in our state_dict names. config: the source's config dict (partial for a bare ResNet).
    class_names: by label, background at 0 (None: unknown). scope: the names it must cover ("" everything; a
    ResNet: the backbone's body and a C4 model's res5 head)."""

    name: str
    checksum: str
    state: dict
    config: dict
    class_names: list[str] | None
    scope: tuple = ("",)


def read_source(model, source: str, cache, progress: bool) -> Source:
    """The weights `source` names, converted into our names (downloaded when it is "imagenet" or "coco")."""
    if source == "imagenet":
        depth = model.config.backbone.depth
        if depth not in IMAGENET_URLS:
            raise ValueError(f"init imagenet: torchvision's ImageNet weights are ResNet-50 and ResNet-101; this "
                             f"model has backbone.depth {depth}: use a preset with depth 50 or 101, or --init none")
        path = download(IMAGENET_URLS[depth], cache, progress)
        return resnet_source(model, read_torchvision_state_dict(path), f"imagenet ({path.name})",
                             hash_prefix(IMAGENET_URLS[depth]))
    if source == "coco":
        path = download(COCO_WEIGHTS_URL, cache, progress)
        return maskrcnn_source(read_torchvision_state_dict(path), f"coco ({path.name})",
                               hash_prefix(COCO_WEIGHTS_URL))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"init {source}: no such file (the sources are {', '.join(SOURCES)} or a file: "
                                f"a minimaskrcnn checkpoint or a torchvision state_dict)")
    state = torch_load(path, "init file")
    if isinstance(state, dict) and "model" in state:  # a minimaskrcnn checkpoint: verified by its own checksum
        state = read_checkpoint(path)
        if state.get("model_config") is None:
            raise ValueError(f"init file {path} stores no model_config, so its architecture is unknown")
        names = list(state.get("class_names") or []) or None
        return Source(str(path), state.get("checksum") or file_digest(path, "sha256"), state["model"],
                      state["model_config"], names)
    state = read_torchvision_state_dict(path)
    digest = file_digest(path, "sha256")
    if "roi_heads.box_predictor.cls_score.weight" in state and "backbone.body.conv1.weight" in state:
        return maskrcnn_source(state, str(path), digest)
    if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        return resnet_source(model, state, str(path), digest)
    raise ValueError(f"init file {path} is neither a minimaskrcnn checkpoint nor a torchvision maskrcnn_resnet50_fpn "
                     f"or resnet state_dict (it has no conv1.weight or backbone.body.conv1.weight)")


def download(url: str, cache, progress: bool) -> Path:
    """download_weights, its network errors saying what to do without a network."""
    try:
        return download_weights(url, cache, progress)
    except DownloadError as e:
        name = url.rsplit("/", 1)[-1]
        raise DownloadError(f"{e} (without a network: copy {name} into {cache_dir(cache)}, or set "
                            f"${MIRROR_ENV} to a server that has it)") from e


def maskrcnn_source(state: dict, name: str, checksum: str) -> Source:
    """torchvision's maskrcnn_resnet50_fpn (or keypointrcnn): r50_fpn's architecture. Its files hold no category
    names: a 91-class one is COCO's (labels = COCO category ids)."""
    num_classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    kp = state.get("roi_heads.keypoint_predictor.kps_score_lowres.weight")
    cfg = config_lib.r50_fpn(num_classes) if kp is None else dataclasses.replace(
        config_lib.keypoint_r50_fpn(num_classes), roi_heads=config_lib.RoIHeadsConfig(
            num_keypoints=kp.shape[1], mask_branch="roi_heads.mask_predictor.mask_fcn_logits.weight" in state))
    names = list(COCO_CLASS_NAMES) if num_classes == len(COCO_CLASS_NAMES) else None
    return Source(name, checksum, convert_torchvision_maskrcnn(state), config_lib.to_dict(cfg), names)


def resnet_source(model, state: dict, name: str, checksum: str) -> Source:
    """A torchvision ResNet (ImageNet): the backbone's body, and for a C4 model its res5 head (layer4)."""
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in (1, 2, 3, 4))
    depth = next((d for d, (kind, b) in DEPTHS.items() if b == blocks and (kind == "bottleneck") == bottleneck), None)
    if depth is None:
        raise ValueError(f"init file {name} is a ResNet of {blocks} blocks per stage, none of depths {list(DEPTHS)}")
    c4 = model.config.backbone.variant == "c4"
    ours = {}
    for k, v in state.items():
        if k.startswith("fc."):  # the ImageNet classifier
            continue
        ours[f"roi_heads.box_head.res5.{k[len('layer4.'):]}" if c4 and k.startswith("layer4.")
             else f"backbone.body.{k}"] = v
    cfg = {"backbone": {"depth": depth, "stem_channels": state["conv1.weight"].shape[0], "norm": "bn"}}
    return Source(name, checksum, ours, cfg, None, scope=("backbone.body.", "roi_heads.box_head.res5."))
