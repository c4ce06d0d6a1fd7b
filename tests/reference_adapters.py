"""The package's and torchvision's own functions in the student-facing signatures of the `check` components
(minimaskrcnn/exercises), for tests/test_check.py: both must pass every component they implement."""
import math

import torch
import torchvision
from torchvision.models.detection import _utils as tv_utils, roi_heads as tv_roi_heads
from torchvision.models.detection.anchor_utils import AnchorGenerator

from minimaskrcnn import losses, roi_heads, rpn, transform
from minimaskrcnn.anchors import grid_anchors
from minimaskrcnn.config import RoIHeadsConfig, RPNConfig
from minimaskrcnn.ops import box_iou, decode_boxes, encode_boxes, nms, roi_align, roi_pool


def package_label_anchors(anchors, gt_boxes, fg_iou_thresh=0.7, bg_iou_thresh=0.3):
    labels, matched = rpn.label_anchors(anchors, gt_boxes, RPNConfig(fg_iou_thresh=fg_iou_thresh,
                                                                     bg_iou_thresh=bg_iou_thresh))
    return torch.where(labels == 1, matched, torch.where(labels == 0, -1, -2))


def package_sample_rois(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25):
    cfg = RoIHeadsConfig(batch_size_per_image=batch_size, positive_fraction=positive_fraction)
    rois, labels, matched = roi_heads.sample_rois([proposals], [{"boxes": gt_boxes, "labels": gt_labels}], cfg)
    return rois[0], labels[0], matched[0]


def package_mask_loss(mask_logits, labels, targets):
    positive = labels > 0  # the package's loss takes the positive RoIs only (RoIHeads selects them)
    return losses.mask_loss(mask_logits[positive], labels[positive], targets[positive])


PACKAGE = {"box_iou": {"box_iou": box_iou}, "box_coder": {"encode_boxes": encode_boxes, "decode_boxes": decode_boxes},
           "nms": {"nms": nms}, "grid_anchors": {"grid_anchors": grid_anchors}, "roi_pool": {"roi_pool": roi_pool},
           "roi_align": {"roi_align": roi_align}, "label_anchors": {"label_anchors": package_label_anchors},
           "sample_rois": {"sample_rois": package_sample_rois},
           "mask_targets": {"mask_targets": roi_heads.mask_targets},
           "mask_loss": {"mask_loss": package_mask_loss}, "paste_masks": {"paste_masks": transform.paste_masks}}

CLIP = math.log(1000.0 / 16)


def tv_encode(gt_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    return tv_utils.BoxCoder(weights, CLIP).encode_single(gt_boxes, proposals)


def tv_decode(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    return tv_utils.BoxCoder(weights, CLIP).decode_single(deltas, proposals)


def tv_grid_anchors(sizes, aspect_ratios, feature_size, stride):
    generator = AnchorGenerator((tuple(sizes),), (tuple(aspect_ratios),))
    stride_y, stride_x = (stride, stride) if isinstance(stride, (int, float)) else stride
    strides = [[torch.tensor(stride_y), torch.tensor(stride_x)]]
    generator.cell_anchors = [generator.generate_anchors(list(sizes), list(aspect_ratios))]
    return generator.grid_anchors([list(feature_size)], strides)[0]


def tv_label_anchors(anchors, gt_boxes, fg_iou_thresh=0.7, bg_iou_thresh=0.3):
    if gt_boxes.shape[0] == 0:  # torchvision's RPN labels an image without objects all background itself
        return torch.full((anchors.shape[0],), -1, dtype=torch.int64)
    matcher = tv_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
    return matcher(torchvision.ops.box_iou(gt_boxes, anchors))


def tv_sample_rois(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25):
    heads = tv_roi_heads.RoIHeads(None, None, None, 0.5, 0.5, batch_size, positive_fraction, None, 0.05, 0.5, 100)
    rois, matched, labels, _ = heads.select_training_samples([proposals], [{"boxes": gt_boxes, "labels": gt_labels}])
    return rois[0], labels[0], matched[0]


def tv_mask_loss(mask_logits, labels, targets):
    """torchvision's maskrcnn_loss builds its own targets with roi_align: each positive RoI gets its target as
    its own "ground-truth mask" and the box (-0.5, -0.5, M - 0.5, M - 0.5), whose 1 x 1 bins sample exactly
    the mask's pixels."""
    positive = torch.nonzero(labels > 0).squeeze(1)
    M = mask_logits.shape[-1]
    boxes = torch.tensor([[-0.5, -0.5, M - 0.5, M - 0.5]]).repeat(len(positive), 1)
    return tv_roi_heads.maskrcnn_loss(mask_logits[positive], [boxes], [targets[positive]], [labels[positive]],
                                      [torch.arange(len(positive))])


def tv_paste_masks(masks, boxes, image_size):
    return tv_roi_heads.paste_masks_in_image(masks[:, None], boxes, image_size)[:, 0]


TORCHVISION = {"box_iou": {"box_iou": torchvision.ops.box_iou},
               "box_coder": {"encode_boxes": tv_encode, "decode_boxes": tv_decode},
               "nms": {"nms": torchvision.ops.nms}, "grid_anchors": {"grid_anchors": tv_grid_anchors},
               "roi_pool": {"roi_pool": torchvision.ops.roi_pool},
               "roi_align": {"roi_align": torchvision.ops.roi_align},
               "label_anchors": {"label_anchors": tv_label_anchors}, "sample_rois": {"sample_rois": tv_sample_rois},
               "mask_targets": {"mask_targets": tv_roi_heads.project_masks_on_boxes},
               "mask_loss": {"mask_loss": tv_mask_loss}, "paste_masks": {"paste_masks": tv_paste_masks}}
