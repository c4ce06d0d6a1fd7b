"""The Triton kernels against the reference ops (the cases are in triton_cases.py), on every machine.

With CUDA the cases run here, natively on CUDA tensors. Without, they run under Triton's interpreter,
on CPU tensors. Triton decides whether to compile or to interpret a @triton.jit function when it is
defined, its own library's functions (tl.sum, ...) included, that is when triton is first imported;
this process has imported it already (torchvision does), so the interpreted run is a child pytest
process started with TRITON_INTERPRET=1.
"""
import os
import subprocess
import sys
from pathlib import Path

import torch

CASES = Path(__file__).with_name("triton_cases.py")

if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
    from triton_cases import *  # noqa: F401,F403  (pytest collects the imported test functions)
else:
    def test_kernels_under_the_triton_interpreter():
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
                                cwd=CASES.parents[1], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
