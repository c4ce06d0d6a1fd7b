"""Flags that several commands share."""
from __future__ import annotations


def add_model_flags(p) -> None:
    """How a loaded model runs (evaluate, predict): batch, device, and the image size it was trained at."""
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--min-size", type=int, default=None, help="override the checkpoint's transform.min_size")
    p.add_argument("--max-size", type=int, default=None, help="override the checkpoint's transform.max_size")
