"""minimaskrcnn: a small, readable, from-scratch Mask R-CNN (He et al., 2017) in PyTorch.

The package follows the paper's pipeline, one file per component:
ops (boxes, NMS, RoIPool / RoIWarp / RoIAlign) -> anchors -> backbone (ResNet, FPN) -> RPN ->
RoI heads (box head, mask head, losses) -> model -> data, training and COCO evaluation.
"""
__version__ = "0.1.0"
