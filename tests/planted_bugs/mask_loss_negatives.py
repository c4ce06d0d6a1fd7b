"""Planted bug (tests/test_check.py): mask_loss counts the background RoIs too (their channel 0 against their
targets). Otherwise the solution of notebooks/solutions/my_ops.py."""
import torch
import torch.nn.functional as F


def mask_loss(mask_logits, labels, targets):
    every = torch.arange(len(labels))  # BUG: positive and background RoIs alike
    if len(every) == 0:
        return mask_logits.sum() * 0.0
    logits = mask_logits[every, labels]
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
