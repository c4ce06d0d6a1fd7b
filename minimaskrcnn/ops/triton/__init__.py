"""The GPU path of the RoI ops and NMS: Triton kernels beside the pure-PyTorch reference.

Each of roi_align, roi_pool, nms and batched_nms (and roi_warp, through roi_align) exists twice:
- the reference, pure PyTorch (ops/roi_align.py, ...): the code to read next to the paper; it runs on
  any device, and on the CPU it keeps up with torchvision's C++ kernels (RoIAlign is several times faster);
- a Triton kernel (ops/triton/roi_align.py, ...): a GPU program written in Python, one program per
  output bin (or per 64 x 64 tile of box pairs), which replaces the reference's many small PyTorch
  operations by one launch. Each kernel file says how its op maps onto GPU programs.

Which one runs is decided at the top of each public op, by `use_triton`:
    impl="auto" (the default)   the kernel for CUDA tensors when triton imports, else the reference;
    impl="reference" / "triton" that one; "triton" where it cannot run is a ValueError.
The environment variable MINIMASKRCNN_OPS (auto, reference or triton) stands in for impl="auto", so a
whole run can be switched without touching the code: MINIMASKRCNN_OPS=reference python -m minimaskrcnn ...

Triton's interpreter runs the kernels on CPU tensors, one program after another in numpy: slow, but
it is how the tests check the kernels on a machine without a GPU. Triton decides at @triton.jit time,
that is when a kernel file is first imported, whether to compile or interpret, so TRITON_INTERPRET=1
must be set before that; impl="triton" then accepts CPU tensors.

Importing minimaskrcnn never imports triton: the kernel files are imported on first use (`kernels`).
"""
from __future__ import annotations

import importlib
import os

import torch

IMPLS = ("auto", "reference", "triton")
ENV = "MINIMASKRCNN_OPS"


def import_error() -> str | None:
    """Why triton does not import here, or None when it does."""
    try:
        import triton  # noqa: F401  (Python caches the import: later calls are a dictionary lookup)
    except Exception as error:  # an ImportError, or a broken installation
        return f"{type(error).__name__}: {error}"
    return None


def interpreting() -> bool:
    """Whether Triton's interpreter is switched on (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(impl: str, device: torch.device, op: str) -> bool:
    """True when `op` should run its Triton kernel on tensors of `device`, False for the reference.

    impl: "auto", "reference" or "triton" (see the module docstring). Raises ValueError for an unknown
    impl or MINIMASKRCNN_OPS, and for "triton" where triton does not import or the tensors are not on a
    CUDA device (CPU tensors are accepted under TRITON_INTERPRET=1).
    """
    if impl not in IMPLS:
        raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = os.environ.get(ENV, "") or "auto"
        if impl not in IMPLS:
            raise ValueError(f"the environment variable {ENV} must be one of {IMPLS}, got {impl!r}")
        if impl == "auto":
            return device.type == "cuda" and import_error() is None
    if impl == "reference":
        return False
    error = import_error()
    if error is not None:
        raise ValueError(f"{op}: impl='triton' needs the triton package, which does not import here ({error}); "
                         f"use impl='reference'")
    if device.type != "cuda" and not interpreting():
        raise ValueError(f"{op}: impl='triton' runs on CUDA tensors (or on CPU tensors under TRITON_INTERPRET=1), "
                         f"got tensors on {device}")
    return True


def kernels(op: str):
    """The kernel module ops/triton/<op>.py, imported on first use (it imports triton)."""
    return importlib.import_module(f"{__name__}.{op}")
