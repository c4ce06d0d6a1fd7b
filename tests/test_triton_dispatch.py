"""Which path an op takes (ops/triton/__init__.py): the reference or the Triton kernel, by device, by the
impl argument and by MINIMASKRCNN_OPS; the clear errors where the kernel cannot run; importing the package
does not import triton; and the kernels compile for a GPU (sm_90) with the loads and atomics the kernel
files describe, checked in the generated PTX, which needs no GPU."""
import os
import subprocess
import sys
import types

import pytest
import torch

from minimaskrcnn.ops import batched_nms, nms, roi_align, roi_pool, roi_warp
from minimaskrcnn.ops.triton import ENV, use_triton

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return monkeypatch


def test_the_device_the_argument_and_the_variable_choose_the_path(clean_env):
    assert use_triton("auto", CUDA, "op") and not use_triton("auto", CPU, "op")
    assert not use_triton("reference", CUDA, "op") and use_triton("triton", CUDA, "op")
    clean_env.setenv(ENV, "reference")
    assert not use_triton("auto", CUDA, "op")  # the variable forces the reference
    assert use_triton("triton", CUDA, "op")  # an explicit argument wins over the variable
    clean_env.setenv(ENV, "triton")
    assert use_triton("auto", CUDA, "op") and not use_triton("reference", CUDA, "op")
    clean_env.setenv(ENV, "auto")
    assert use_triton("auto", CUDA, "op") and not use_triton("auto", CPU, "op")


def test_where_the_kernel_cannot_run_the_error_says_why(clean_env):
    x, rois = torch.randn(1, 2, 5, 5), torch.tensor([[0, 0, 0, 3, 3.0]])
    with pytest.raises(ValueError, match="roi_align: impl must be one of"):
        roi_align(x, rois, 2, impl="fast")
    with pytest.raises(ValueError, match=r"roi_pool: impl='triton' runs on CUDA tensors .*got tensors on cpu"):
        roi_pool(x, rois, 2, impl="triton")
    clean_env.setenv(ENV, "triton")  # forcing the kernel where it cannot run is an error, not a silent fallback
    with pytest.raises(ValueError, match="nms: impl='triton' runs on CUDA tensors"):
        nms(rois[:, 1:], torch.ones(1), 0.5)
    clean_env.setenv(ENV, "fastest")
    with pytest.raises(ValueError, match=f"environment variable {ENV} must be one of"):
        roi_align(x, rois, 2)
    clean_env.delenv(ENV)
    clean_env.setitem(sys.modules, "triton", None)  # as if triton were not installed: import triton fails
    with pytest.raises(ValueError, match="impl='triton' needs the triton package"):
        use_triton("triton", CUDA, "roi_align")
    assert not use_triton("auto", CUDA, "roi_align")  # auto falls back to the reference


def test_the_public_ops_call_the_kernel_exactly_when_chosen(clean_env):
    """A stand-in kernel module records calls; TRITON_INTERPRET=1 lets impl="triton" take CPU tensors."""
    calls = []

    def recorder(name):
        def kernel(*args, **kwargs):
            calls.append(name)
            return torch.zeros(0, dtype=torch.int64) if name == "nms" else torch.zeros(1, 2, 2, 2)
        return kernel

    for name in ("roi_align", "roi_pool", "nms"):
        clean_env.setitem(sys.modules, f"minimaskrcnn.ops.triton.{name}", types.SimpleNamespace(**{name: recorder(name)}))
    clean_env.setenv("TRITON_INTERPRET", "1")
    x, rois = torch.randn(1, 2, 5, 5), torch.tensor([[0, 0, 0, 3, 3.0]])
    boxes, scores, groups = rois[:, 1:], torch.ones(1), torch.zeros(1, dtype=torch.int64)
    runs = [lambda impl: roi_align(x, rois, 2, impl=impl), lambda impl: roi_pool(x, rois, 2, impl=impl),
            lambda impl: roi_warp(x, rois, 2, impl=impl), lambda impl: nms(boxes, scores, 0.5, impl=impl),
            lambda impl: batched_nms(boxes, scores, groups, 0.5, impl=impl)]
    for run in runs:
        run("triton")
    assert calls == ["roi_align", "roi_pool", "roi_align", "nms", "nms"]
    for run in runs:
        run("auto")  # CPU tensors: the reference, even under the interpreter
        run("reference")
    clean_env.setenv(ENV, "triton")
    for run in runs:
        run("reference")  # the argument wins over the variable
    assert len(calls) == 5
    for run in runs:
        run("auto")
    assert len(calls) == 10


def test_importing_the_package_does_not_import_triton():
    code = ("import sys, torch; import minimaskrcnn, minimaskrcnn.ops, minimaskrcnn.model; "
            "from minimaskrcnn.ops import roi_align, nms; "
            "roi_align(torch.randn(1, 2, 5, 5), torch.tensor([[0, 0, 0, 3, 3.0]]), 2); "
            "nms(torch.tensor([[0, 0, 3, 3.0]]), torch.ones(1), 0.5); "
            "assert 'triton' not in sys.modules, 'triton was imported'")
    env = {k: v for k, v in os.environ.items() if k != ENV}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


# --- the kernels compile for a GPU ---

def ptx_for_gpu(kernel, arguments: str, constexprs: dict, num_warps: int) -> str:
    """The PTX of kernel compiled for sm_90 (H100, H200); no GPU needed. arguments: "name:type ...", the
    kernel's runtime arguments in order, "*fp32" a pointer, "i32" an integer; a trailing "/16" marks one
    that a real launch finds divisible by 16 (aligned pointers, 256 channels), as Triton then assumes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, attrs = {}, {}
    for argument in arguments.split():
        name, kind = argument.split(":")
        signature[name] = kind.removesuffix("/16")
        if kind.endswith("/16"):
            attrs[(kernel.arg_names.index(name),)] = [["tt.divisibility", 16]]
    signature.update({name: "constexpr" for name in constexprs})
    source = ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}).asm["ptx"]


if os.environ.get("TRITON_INTERPRET") != "1":  # interpreted kernels cannot be compiled
    def test_kernels_compile_for_a_gpu_with_coalesced_loads_and_atomic_adds():
        """Each program reads its channels 16 bytes per thread and load (ld.global.v4: coalesced), the
        backward kernels add with atomics (vectors of 4 for RoIAlign's average), divisions are exact."""
        from minimaskrcnn.ops.triton import nms as nms_kernels
        from minimaskrcnn.ops.triton import roi_align as align
        from minimaskrcnn.ops.triton import roi_pool as pool

        bins = {"P": 7, "Q": 7, "BLOCK_C": 256}
        sizes = "H:i32 W:i32 C:i32/16"
        for dtype, MAX in (("fp32", False), ("fp32", True), ("fp64", False)):
            t = f"*{dtype}/16"
            options = {**bins, "ALIGNED": True, "MAX": MAX}
            forward = ptx_for_gpu(align.roi_align_forward_kernel,
                                  f"x_ptr:{t} rois_ptr:{t} box_ptr:{t} out_ptr:{t} {sizes} sampling_ratio:i32", options, 2)
            backward = ptx_for_gpu(align.roi_align_backward_kernel, f"grad_out_ptr:{t} x_ptr:{t} rois_ptr:{t} box_ptr:{t} "
                                   f"grad_ptr:{t} {sizes} sampling_ratio:i32", options, 2)
            assert ("ld.global.v4.b32" if dtype == "fp32" else "ld.global.v2.b64") in forward
            assert f"atom.global.gpu.relaxed.add.{'v4.' if dtype == 'fp32' and not MAX else ''}{dtype[:1]}{dtype[2:]}" in backward
            assert dtype == "fp64" or ("div.rn.f32" in forward and "div.full" not in forward + backward)
        t = "*fp32/16"
        forward = ptx_for_gpu(pool.roi_pool_forward_kernel,
                              f"x_ptr:{t} rois_ptr:{t} box_ptr:{t} out_ptr:{t} argmax_ptr:*i32/16 {sizes}", bins, 2)
        backward = ptx_for_gpu(pool.roi_pool_backward_kernel,
                               f"grad_out_ptr:{t} rois_ptr:{t} argmax_ptr:*i32/16 grad_ptr:{t} {sizes}", bins, 2)
        assert "ld.global.v4.b32" in forward and "st.global.v4.b32" in forward
        assert "atom.global.gpu.relaxed.add.f32" in backward
        mask = ptx_for_gpu(nms_kernels.nms_mask_kernel, f"boxes_ptr:{t} groups_ptr:*i64 threshold_ptr:{t} mask_ptr:*i64 "
                           "n:i32 B:i32", {"HAS_GROUPS": True, "TINY": torch.finfo(torch.float32).tiny, "WORD": 64}, 4)
        assert "st.global.b64" in mask and "div.rn.f32" in mask  # a 64-bit word per row; the exact IoU
        scan = ptx_for_gpu(nms_kernels.nms_scan_kernel, "mask_ptr:*i64 keep_ptr:*i8 n:i32 B:i32",
                           {"WORD": 64, "BLOCK_B": 64}, 4)
        assert "ld.global.b64" in scan and "st.global.b8" in scan
