"""Planted bug (tests/test_check.py): mask_loss is a per-pixel softmax cross-entropy across the classes (the
multinomial loss of Table 2b), so that the classes compete for every pixel. Otherwise the solution of
notebooks/solutions/my_ops.py."""
import torch
import torch.nn.functional as F


def mask_loss(mask_logits, labels, targets):
    positive = (labels > 0).nonzero().squeeze(1)
    if len(positive) == 0:
        return mask_logits.sum() * 0.0
    # BUG: the pixel's class is the RoI's class where the target is >= 0.5, else background; a softmax over K
    pixel_class = torch.where(targets[positive] >= 0.5, labels[positive][:, None, None], 0)
    return F.cross_entropy(mask_logits[positive], pixel_class)
