"""Pieces the kernels share: exact division and the size of a program's block of channels."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def divide_rn(a, b):
    """a / b rounded to the nearest float, as PyTorch divides on the CPU. Triton's float32 '/' is a fast
    approximation (off by up to 2 units in the last place), enough to move a bin edge such as
    ceil(3 * (7 / 3)) from 7 to 8, or to tip an IoU over the NMS threshold. b may be an integer."""
    b = b + tl.zeros_like(a)  # b as a float of a's type
    if a.dtype == tl.float32:
        q = tl.div_rn(a, b)
    else:  # Triton's float64 '/' is correctly rounded already
        q = a / b
    return q


def block_and_warps(channels: int) -> tuple[int, int]:
    """Channels per program (a power of 2, at most 256) and warps of 32 threads to read them: 2 warps
    for 256 float32 channels, so that each thread reads 4 neighbouring channels (16 bytes) at once."""
    block = min(max(triton.next_power_of_2(channels), 16), 256)
    return block, max(1, min(4, block // 128))

