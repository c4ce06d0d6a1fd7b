"""Planted bug (tests/test_check.py): mask_loss puts the binary cross-entropy on all K masks of an RoI, not only on
its ground-truth class's. Otherwise the solution of notebooks/solutions/my_ops.py."""
import torch.nn.functional as F


def mask_loss(mask_logits, labels, targets):
    positive = (labels > 0).nonzero().squeeze(1)
    if len(positive) == 0:
        return mask_logits.sum() * 0.0
    logits = mask_logits[positive]  # BUG: (P, K, M, M), every class's mask
    return F.binary_cross_entropy_with_logits(logits, targets[positive, None].expand_as(logits).to(logits.dtype))
