"""The keypoint branch (Sec. 5, "Mask R-CNN for Human Pose Estimation"): a keypoint is a one-hot mask.

The paper estimates pose with the same model and one more head: each of the K keypoint types of an instance
(17 for COCO people: nose, eyes, ears, shoulders, ...) is "a one-hot mask", an m x m grid whose single
foreground cell holds the keypoint, and the head predicts K such masks per RoI, as the mask branch predicts
one per class:

- head: the mask branch's FCN (`MaskFCNHead`), deeper and wider, "eight 3x3 512-d conv layers", on 14x14
  RoIAlign features from the FPN levels; then `KeypointPredictor`: a 4x4 deconvolution of stride 2 to K
  channels (28x28) and a 2x bilinear upsampling, (R, K, 56, 56) logits: "a relatively high resolution output
  (compared to masks) is required for keypoint-level localization accuracy".
- targets (`keypoint_targets`): for each positive RoI and each visible keypoint (v > 0), the index y * m + x of
  the grid cell that holds it. A keypoint outside the RoI has no cell: it is not a target.
- loss (`losses.keypoint_loss`): "the cross-entropy loss over an m^2-way softmax output", one softmax per
  (RoI, keypoint) over the positions, averaged over the visible keypoints. The positions compete (exactly one
  cell is the keypoint), unlike the mask's per-pixel sigmoids; the K keypoints stay independent of each other.
- inference (`heatmaps_to_keypoints`): each heatmap resized to its box's pixels (bicubic, as Detectron and
  torchvision do), the argmax cell's centre as the keypoint and its logit as the keypoint's score.

Keypoints are (x, y, v) in the boxes' pixel frame (COCO's v: 0 not labelled, 1 labelled but hidden, 2 visible).
Module names (keypoint_head.convs.i, keypoint_predictor.kps_score_lowres) map onto torchvision's
keypointrcnn_resnet50_fpn (convert.py); targets and inference compute what its roi_heads.py does.

Shape glossary:
  R: RoIs; C: input channels; S: RoI feature size (14); K: keypoint types; m: heatmap size, 4S (56)
  P: positive RoIs; D: detections; h, w: a detection's box in whole pixels
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import RoIHeadsConfig
from .mask_head import MaskFCNHead


class KeypointPredictor(nn.Module):
    """(R, C, S, S) -> keypoint logits (R, K, 4S, 4S): a 4x4 stride-2 deconv (padding 1, so exactly 2S), then
    a 2x bilinear upsampling (half-pixel centres). No ReLU: the deconv's outputs are the logits."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, kernel_size=4, stride=2, padding=1)
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.kps_score_lowres.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.kps_score_lowres(x)  # (R, C, S, S) -> (R, K, 2S, 2S)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)  # (R, K, 4S, 4S)


def build_keypoint_branch(cfg: RoIHeadsConfig, in_channels: int) -> tuple[nn.Module, nn.Module]:
    """(keypoint_head, keypoint_predictor) for RoI features of in_channels channels."""
    head = MaskFCNHead(in_channels, cfg.keypoint_head_channels, cfg.keypoint_head_convs)
    return head, KeypointPredictor(head.out_channels, cfg.num_keypoints)


@torch.no_grad()
def keypoint_targets(keypoints: torch.Tensor, rois: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cell of each keypoint in the size x size grid laid over its RoI (Sec. 5, "one-hot mask").

    keypoints: (P, K, 3) float (x, y, v) of each RoI's matched ground truth, in the RoIs' pixel frame;
    rois: (P, 4) positive RoIs (x1, y1, x2, y2). Returns cells (P, K) int64, the index y * size + x of the
    keypoint's cell (0 where not valid), and valid (P, K) bool: labelled (v > 0) and inside the RoI.

    Cell x = floor((x - x1) * size / (x2 - x1)); a keypoint exactly on the RoI's right (bottom) edge goes to the
    last cell rather than one past it, as in Detectron and torchvision.
    """
    x1, y1, x2, y2 = (rois[:, i, None] for i in range(4))  # (P, 1) each
    x, y = keypoints[..., 0], keypoints[..., 1]  # (P, K) each
    cx = ((x - x1) * (size / (x2 - x1))).floor().long()
    cy = ((y - y1) * (size / (y2 - y1))).floor().long()
    cx[x == x2] = size - 1
    cy[y == y2] = size - 1
    valid = (cx >= 0) & (cy >= 0) & (cx < size) & (cy < size) & (keypoints[..., 2] > 0)
    return torch.where(valid, cy * size + cx, 0), valid


def heatmaps_to_keypoints(heatmaps: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints and their scores from the heatmaps of the detections (Sec. 5, inference).

    heatmaps: (D, K, m, m) logits; boxes: (D, 4) the detections (x1, y1, x2, y2) in pixels.
    Returns keypoints (D, K, 3) float32 (x, y, 1) in the boxes' frame, and scores (D, K) float32, the logit
    at each keypoint (the third column is 1, "predicted", as torchvision returns it).

    Each box's heatmaps are resized bicubically to h x w whole pixels (the box's size rounded up, at least 1);
    the keypoint is the centre of the argmax pixel, (x_int + 0.5) * (box width / w) + x1: scaled back by
    width / w, which is 1 unless the box's size is fractional. One resize per detection, as its size is its own.
    """
    D, K = heatmaps.shape[:2]
    heatmaps = heatmaps.float()
    size = (boxes[:, 2:] - boxes[:, :2]).float().clamp(min=1)  # (D, 2) box width, height in pixels
    pixels = size.ceil()  # (D, 2) w, h: the resized heatmap's size
    positions = torch.zeros(D, K, 2, dtype=torch.long, device=heatmaps.device)  # (x_int, y_int)
    scores = torch.zeros(D, K, device=heatmaps.device)
    for i in range(D):
        w, h = int(pixels[i, 0]), int(pixels[i, 1])
        resized = F.interpolate(heatmaps[i][:, None], size=(h, w), mode="bicubic", align_corners=False)[:, 0]
        best = resized.reshape(K, h * w).argmax(dim=1)  # (K,) flat index y_int * w + x_int
        positions[i] = torch.stack([best % w, best // w], dim=1)
        scores[i] = resized.reshape(K, h * w).gather(1, best[:, None])[:, 0]
    xy = (positions.float() + 0.5) * (size / pixels)[:, None] + boxes[:, None, :2].float()  # (D, K, 2)
    return torch.cat([xy, torch.ones(D, K, 1, device=xy.device)], dim=2), scores
