"""A stand-in detector for the tests of `predict` (no weights to load): the stages predict.detect runs, answering
each image with fixed detections that the real postprocess pastes and scales."""
import torch

from minimaskrcnn.transform import ImageBatch, ImageTransform


class Unresized(ImageTransform):
    """The model's transform without the resizing (the stand-ins' "resized frame" is the image itself)."""

    def __init__(self):
        super().__init__(None)

    def __call__(self, images, targets=None):
        sizes = [tuple(im.shape[-2:]) for im in images]
        return ImageBatch(torch.stack(images), sizes, sizes), None


class StandIn(torch.nn.Module):
    """Eval-mode stand-in with the stages predict.detect runs (transform, backbone, rpn, roi_heads), answering
    every image with `answer(h, w)`: detections in its pixels, "masks" (D, M, M) probabilities as the mask head
    gives them, pasted into the boxes by the real postprocess. `seen`: the (H, W) of each image run."""

    def __init__(self, answer):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))  # predict asks for the model's device
        self.transform, self.answer, self.seen = Unresized(), answer, []

    def backbone(self, tensors):
        return {}

    def rpn(self, batch, features):
        self.seen.append(batch.original_sizes[0])
        return [], {}

    def roi_heads(self, features, proposals, image_sizes):
        return [self.answer(*image_sizes[0])], {}
