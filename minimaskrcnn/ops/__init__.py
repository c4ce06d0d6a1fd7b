"""The geometric core, from scratch in PyTorch, with torchvision.ops' signatures and conventions.

Boxes are (x1, y1, x2, y2) in pixels everywhere.

roi_align, roi_pool, roi_warp, nms and batched_nms have two paths: the pure-PyTorch reference in these
files, and Triton kernels (ops/triton/) that they use for CUDA tensors when triton imports. Their impl
argument ("auto", "reference", "triton") or the environment variable MINIMASKRCNN_OPS picks one.
"""
from .boxes import box_area, box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes
from .nms import batched_nms, nms
from .roi_align import roi_align, roi_align_matrix
from .roi_pool import roi_pool
from .roi_warp import roi_warp

__all__ = ["box_area", "box_iou", "clip_boxes", "remove_small_boxes", "encode_boxes", "decode_boxes",
           "nms", "batched_nms", "roi_pool", "roi_warp", "roi_align", "roi_align_matrix"]
