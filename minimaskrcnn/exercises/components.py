"""The twelve components of the implement-it-yourself checks, in the order of notebook 09."""
from __future__ import annotations

from .anchors import GRID_ANCHORS
from .backward import BILINEAR_BACKWARD
from .boxes import BOX_CODER, BOX_IOU
from .core import Component
from .masks import MASK_LOSS, MASK_TARGETS
from .matching import LABEL_ANCHORS
from .nms import NMS
from .paste import PASTE_MASKS
from .roi_align import ROI_ALIGN
from .roi_pool import ROI_POOL
from .sampling import SAMPLE_ROIS

# In the notebook's order: Faster R-CNN's geometry, then what Mask R-CNN adds, then a backward pass by hand.
COMPONENTS: dict[str, Component] = {c.name: c for c in (
    BOX_IOU, BOX_CODER, NMS, GRID_ANCHORS, ROI_POOL, ROI_ALIGN,
    LABEL_ANCHORS, SAMPLE_ROIS, MASK_TARGETS, MASK_LOSS, PASTE_MASKS, BILINEAR_BACKWARD)}


def get_component(name: str) -> Component:
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}: choose one of {', '.join(COMPONENTS)} (or 'all')")
    return COMPONENTS[name]
