"""The weights a model can start from (`transfer.load_into`, `train --init`), read into our state_dict names.

- "imagenet": torchvision's ImageNet ResNet-50 or -101 (by the model's depth), the backbone the paper starts from
  (Sec. 3.1); "coco": torchvision's COCO Mask R-CNN. Both downloaded by name through `pretrained.download_weights`
  (SHA-256 prefix, torch.hub cache, $MINIMASKRCNN_MIRROR).
- A file: a minimaskrcnn checkpoint (its config and class names come with it), or a torchvision state_dict
  (`maskrcnn_resnet50_fpn`, `keypointrcnn_resnet50_fpn`, a ResNet), recognized by its keys.

A `Source` is what `transfer` needs to load it: the tensors, the source's config (to refuse another architecture)
and its class names (to carry rows by name).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from . import config as config_lib
from . import pretrained
from .checkpoint import read_checkpoint, torch_load
from .convert import convert_torchvision_maskrcnn
from .data.download import DownloadError, file_digest
from .resnet import DEPTHS

IMAGENET_URLS = {  # torchvision's IMAGENET1K_V1 ResNets, which its detection models start from
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    101: "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}
SOURCES = ("imagenet", "coco", "none")  # or a file


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
        return resnet_source(model, pretrained.read_torchvision_state_dict(path), f"imagenet ({path.name})",
                             pretrained.hash_prefix(IMAGENET_URLS[depth]))
    if source == "coco":
        path = download(pretrained.COCO_WEIGHTS_URL, cache, progress)
        return maskrcnn_source(pretrained.read_torchvision_state_dict(path), f"coco ({path.name})",
                               pretrained.hash_prefix(pretrained.COCO_WEIGHTS_URL))
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
    state = pretrained.read_torchvision_state_dict(path)
    digest = file_digest(path, "sha256")
    if "roi_heads.box_predictor.cls_score.weight" in state and "backbone.body.conv1.weight" in state:
        return maskrcnn_source(state, str(path), digest)
    if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        return resnet_source(model, state, str(path), digest)
    raise ValueError(f"init file {path} is neither a minimaskrcnn checkpoint nor a torchvision maskrcnn_resnet50_fpn "
                     f"or resnet state_dict (it has no conv1.weight or backbone.body.conv1.weight)")


def download(url: str, cache, progress: bool) -> Path:
    """pretrained.download_weights, its network errors saying what to do without a network."""
    try:
        return pretrained.download_weights(url, cache, progress)
    except DownloadError as e:
        name = url.rsplit("/", 1)[-1]
        raise DownloadError(f"{e} (without a network: copy {name} into {pretrained.cache_dir(cache)}, or set "
                            f"${pretrained.MIRROR_ENV} to a server that has it)") from e


def maskrcnn_source(state: dict, name: str, checksum: str) -> Source:
    """torchvision's maskrcnn_resnet50_fpn (or keypointrcnn): r50_fpn's architecture. Its files hold no category
    names: a 91-class one is COCO's (labels = COCO category ids)."""
    num_classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    kp = state.get("roi_heads.keypoint_predictor.kps_score_lowres.weight")
    cfg = config_lib.r50_fpn(num_classes) if kp is None else dataclasses.replace(
        config_lib.keypoint_r50_fpn(num_classes), roi_heads=config_lib.RoIHeadsConfig(
            num_keypoints=kp.shape[1], mask_branch="roi_heads.mask_predictor.mask_fcn_logits.weight" in state))
    names = list(pretrained.COCO_CLASS_NAMES) if num_classes == len(pretrained.COCO_CLASS_NAMES) else None
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
