"""Region Proposal Network, the first stage of Mask R-CNN (Sec. 3, from Faster R-CNN; Sec. 3.1 "Training").

A small conv head slides over every feature level and predicts, for each of the A anchors at each
location, an objectness logit and 4 box deltas. Then:

- proposals (train and test): decode the deltas on their anchors, clip to the image, drop tiny boxes,
  keep the top `pre_nms_top_n` per level, NMS at 0.7 within each level, keep the top `post_nms_top_n`
  per image. No gradient flows through the proposals (Faster R-CNN's approximate joint training).
- targets (training, no gradient): an anchor is positive when its IoU with a ground-truth box is
  >= 0.7, negative when its best IoU is < 0.3, ignored in between; each ground-truth box's best
  anchor(s), ties included, are positive too, so every object gets one. 256 anchors are sampled per
  image, at most half positive.

Matching anchors to objects and sampling them (`match_boxes`, `sample_labels`) live in matching.py, shared
with the RoI heads (proposal labelling, 1:3 sampling).

Shape glossary:
  N: images; L: feature levels; Hl, Wl: size of level l; A: anchors per location (sizes x ratios)
  T: anchors of an image over all levels, sum_l Hl*Wl*A; G: ground-truth boxes of an image
  P: proposals of an image
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .anchors import grid_anchors
from .config import AnchorConfig, RPNConfig
from .losses import rpn_box_loss, rpn_objectness_loss
from .matching import BACKGROUND, match_boxes, sample_labels
from .ops import batched_nms, box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes
from .transform import ImageBatch


class RPNHead(nn.Module):
    """Shared over levels: 3x3 conv + ReLU, then 1x1 convs to A objectness logits and 4A deltas.

    forward(list of (N, C, Hl, Wl)) -> (list of (N, A, Hl, Wl), list of (N, 4A, Hl, Wl))
    """

    def __init__(self, in_channels: int, conv_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(conv_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(conv_channels, 4 * num_anchors, 1)
        for conv in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(conv.weight, std=0.01)  # Faster R-CNN's init
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hidden = [F.relu(self.conv(x)) for x in features]
        return [self.cls_logits(h) for h in hidden], [self.bbox_pred(h) for h in hidden]


def flatten_predictions(logits: list[torch.Tensor], deltas: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level head outputs -> (N, T) logits and (N, T, 4) deltas, ordered as the anchors:
    level, then location (row-major), then anchor."""
    flat_logits, flat_deltas = [], []
    for lg, dl in zip(logits, deltas):
        N, A, H, W = lg.shape
        flat_logits.append(lg.permute(0, 2, 3, 1).reshape(N, H * W * A))  # (N, A, H, W) -> (N, H, W, A) -> (N, HWA)
        dl = dl.view(N, A, 4, H, W).permute(0, 3, 4, 1, 2)  # (N, A*4, H, W) -> (N, A, 4, H, W) -> (N, H, W, A, 4)
        flat_deltas.append(dl.reshape(N, H * W * A, 4))  # (N, HWA, 4)
    return torch.cat(flat_logits, 1), torch.cat(flat_deltas, 1)


def make_anchors(cfg: AnchorConfig, features: list[torch.Tensor], padded_size: tuple[int, int]) -> list[torch.Tensor]:
    """Anchors of every level, one (Hl*Wl*A, 4) float32 tensor each, in padded-image pixels.

    A level's stride is the padded image size over the feature size (as torchvision computes it),
    e.g. 4 for P2 of an 800x1216 batch whose P2 is 200x304.
    """
    if len(cfg.sizes) != len(features):
        raise ValueError(f"AnchorConfig.sizes has {len(cfg.sizes)} levels but the backbone gives "
                         f"{len(features)} feature maps")
    anchors = []
    for sizes, x in zip(cfg.sizes, features):
        H, W = x.shape[-2:]
        stride = (padded_size[0] // H, padded_size[1] // W)
        anchors.append(grid_anchors(sizes, cfg.aspect_ratios, (H, W), stride).to(x.device, torch.float32))
    return anchors


@torch.no_grad()
def label_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, cfg: RPNConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """anchors (T, 4), gt_boxes (G, 4) -> labels (T,) int64 (1 / 0 / -1 ignored) and matched gt index (T,).

    An image without objects has only negatives (matched index 0, unused)."""
    if gt_boxes.shape[0] == 0:
        zeros = torch.zeros(anchors.shape[0], dtype=torch.int64, device=anchors.device)
        return zeros, zeros
    matches = match_boxes(box_iou(gt_boxes, anchors), cfg.fg_iou_thresh, cfg.bg_iou_thresh, allow_low_quality=True)
    labels = torch.where(matches >= 0, 1, torch.where(matches == BACKGROUND, 0, -1))
    return labels, matches.clamp(min=0)


def rpn_losses(logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, targets: list[dict],
               cfg: RPNConfig) -> dict[str, torch.Tensor]:
    """logits (N, T), deltas (N, T, 4), anchors (T, 4) (the same for every image), targets per image.
    Returns {"loss_objectness", "loss_rpn_box"} over the anchors sampled in all images."""
    T = anchors.shape[0]
    pos_all, neg_all, box_targets = [], [], []
    with torch.no_grad():
        for i, t in enumerate(targets):
            labels, matched = label_anchors(anchors, t["boxes"], cfg)
            pos, neg = sample_labels(labels, cfg.batch_size_per_image, cfg.positive_fraction)
            box_targets.append(encode_boxes(t["boxes"][matched[pos]], anchors[pos]))  # (Pi, 4)
            pos_all.append(pos + i * T)  # indices into the (N*T,) flattened batch
            neg_all.append(neg + i * T)
    pos, neg = torch.cat(pos_all), torch.cat(neg_all)
    sampled = torch.cat([pos, neg])
    sampled_labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).float()
    return {
        "loss_objectness": rpn_objectness_loss(logits.reshape(-1)[sampled], sampled_labels),
        "loss_rpn_box": rpn_box_loss(deltas.reshape(-1, 4)[pos], torch.cat(box_targets), sampled.numel()),
    }


@torch.no_grad()
def select_proposals(boxes: torch.Tensor, logits: torch.Tensor, anchors_per_level: list[int],
                     image_sizes: list[tuple[int, int]], cfg: RPNConfig, training: bool):
    """Decoded boxes (N, T, 4) and objectness logits (N, T) -> per image proposals (P, 4) and their
    objectness probabilities (P,), highest first, P <= post_nms_top_n."""
    pre_n = cfg.pre_nms_top_n_train if training else cfg.pre_nms_top_n_test
    post_n = cfg.post_nms_top_n_train if training else cfg.post_nms_top_n_test
    # the top pre_n anchors of each level, so that small-anchor levels (many more anchors) do not crowd out the others
    top, start = [], 0
    for n in anchors_per_level:
        top.append(logits[:, start:start + n].topk(min(pre_n, n), dim=1).indices + start)  # (N, k)
        start += n
    top = torch.cat(top, dim=1)  # (N, K)
    level = torch.repeat_interleave(torch.arange(len(anchors_per_level), device=logits.device),
                                    torch.tensor(anchors_per_level, device=logits.device))[top]  # (N, K)
    scores = logits.gather(1, top).sigmoid()  # (N, K)
    boxes = boxes[torch.arange(boxes.shape[0], device=boxes.device)[:, None], top]  # (N, K, 4)
    proposals, probabilities = [], []
    for b, s, lvl, size in zip(boxes, scores, level, image_sizes):
        b = clip_boxes(b, size)
        keep = remove_small_boxes(b, cfg.min_size)
        keep = keep[s[keep] >= cfg.score_thresh]
        keep = keep[batched_nms(b[keep], s[keep], lvl[keep], cfg.nms_thresh)[:post_n]]  # NMS within each level
        proposals.append(b[keep])
        probabilities.append(s[keep])
    return proposals, probabilities


class RPN(nn.Module):
    """forward(batch, features, targets=None) -> (proposals: list of (P, 4) per image, losses dict).

    Proposals are in the resized (padded-batch) image's pixels. Losses are computed whenever targets
    are given ("boxes" (G, 4) in the same frame); the train / test proposal counts follow self.training.
    """

    def __init__(self, cfg: RPNConfig, anchor_cfg: AnchorConfig, in_channels: int):
        super().__init__()
        self.cfg, self.anchor_cfg = cfg, anchor_cfg
        num_anchors = len(anchor_cfg.sizes[0]) * len(anchor_cfg.aspect_ratios)  # the same at every level
        self.head = RPNHead(in_channels, cfg.conv_channels or in_channels, num_anchors)

    def forward(self, batch: ImageBatch, features: dict[str, torch.Tensor], targets: list[dict] | None = None):
        maps = list(features.values())
        anchors = make_anchors(self.anchor_cfg, maps, batch.tensors.shape[-2:])
        logits, deltas = flatten_predictions(*self.head(maps))  # (N, T), (N, T, 4)
        anchors_per_level = [a.shape[0] for a in anchors]
        anchors = torch.cat(anchors)  # (T, 4)
        N, T = logits.shape
        boxes = decode_boxes(deltas.detach().float().reshape(N * T, 4), anchors.repeat(N, 1))  # (N*T, 4)
        proposals, _ = select_proposals(boxes.view(N, T, 4), logits.detach().float(), anchors_per_level,
                                        batch.image_sizes, self.cfg, self.training)
        losses = {} if targets is None else rpn_losses(logits, deltas, anchors, targets, self.cfg)
        return proposals, losses
