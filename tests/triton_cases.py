"""The cases of test_triton_ops.py: the Triton kernels (ops/triton/) against the pure-PyTorch reference
ops and torchvision: RoIAlign (avg and max, all four combinations of aligned and fixed / adaptive
sampling_ratio), RoIPool (ties to the first pixel), RoIWarp, NMS (ties, identical boxes, chains across
64-box words) and batched NMS; values and gradients, float32 and float64, no RoIs and no boxes, RoIs
outside the map, non-contiguous input.

They run on CUDA tensors where there is a GPU, else on CPU tensors under Triton's interpreter (a process
started with TRITON_INTERPRET=1), one program after another in numpy: slow, so the cases are small.
The file name does not start with test_, so that pytest collects these cases only through
test_triton_ops.py, which picks the way to run them.
"""
from functools import partial

import pytest
import torch
import torchvision.ops

from minimaskrcnn.ops import batched_nms, nms, roi_align, roi_pool, roi_warp
from test_ops import clustered_boxes, random_boxes
from test_roi_align import forward_backward, random_rois

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def both(op, x, boxes, grad_out, **kwargs):
    """(out, grad) of the reference and of the kernel, on the same input and output gradient."""
    reference = forward_backward(partial(op, impl="reference"), x, boxes, grad_out, **kwargs)
    kernel = forward_backward(partial(op, impl="triton"), x, boxes, grad_out, **kwargs)
    return reference, kernel


def assert_same(reference, kernel, dtype):
    (ref_out, ref_grad), (out, grad) = reference, kernel
    assert out.dtype == ref_out.dtype and out.shape == ref_out.shape and out.device == ref_out.device
    torch.testing.assert_close(out, ref_out, rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=TOL[dtype])


def small_case(seed, dtype, num_rois=5, output=(2, 2)):
    """A 2-image (C=3, 7x8) map, RoIs in image pixels at stride 4 (a third reach outside the map, two
    have zero width or height), and an output gradient."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 7, 8, generator=gen, dtype=dtype)
    rois = random_rois(gen, num_rois, 2, 7 * 4, 8 * 4).to(dtype)
    grad_out = torch.randn(num_rois, 3, *output, generator=gen, dtype=dtype)
    return x.to(DEVICE), rois.to(DEVICE), grad_out.to(DEVICE)


# --- RoIAlign ---

@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_matches_reference(mode, aligned, sampling_ratio):
    x, rois, grad_out = small_case(10 * aligned + sampling_ratio, torch.float32)
    kwargs = dict(output_size=(2, 2), spatial_scale=1 / 4, sampling_ratio=sampling_ratio, aligned=aligned, mode=mode)
    reference, kernel = both(roi_align, x, rois, grad_out, **kwargs)
    assert_same(reference, kernel, torch.float32)
    assert kernel[0].abs().sum() > 0 and kernel[1].abs().sum() > 0  # a real comparison, not zeros against zeros


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_float64_and_torchvision(mode):
    x, rois, grad_out = small_case(3, torch.float64, output=(3, 2))
    kwargs = dict(output_size=(3, 2), spatial_scale=1 / 4, sampling_ratio=-1, aligned=True)
    reference, kernel = both(roi_align, x, rois, grad_out, mode=mode, **kwargs)
    assert_same(reference, kernel, torch.float64)
    if mode == "avg":  # torchvision has no max mode
        theirs = forward_backward(torchvision.ops.roi_align, x, rois, grad_out, **kwargs)
        assert_same(theirs, kernel, torch.float64)


def test_roi_align_max_gradient_splits_ties_like_the_reference():
    """A map of 0s and 1s: many points of a bin tie at the max, and the gradient is shared among them
    (torch.amax's rule, in the reference)."""
    x = (torch.arange(2 * 7 * 8).view(1, 2, 7, 8) % 3 == 0).double().to(DEVICE)
    rois = torch.tensor([[0, 0.0, 0.0, 7.0, 6.0], [0, 1.0, 0.5, 6.5, 6.5]], dtype=torch.float64, device=DEVICE)
    grad_out = torch.ones(2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    reference, kernel = both(roi_align, x, rois, grad_out, output_size=2, sampling_ratio=3, mode="max")
    assert_same(reference, kernel, torch.float64)


def test_roi_align_no_rois_outside_the_map_and_non_contiguous_input():
    base = torch.randn(2, 7, 8, 3, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    x = base.permute(0, 3, 1, 2)  # (2, 3, 7, 8), channels last in memory
    assert not x.is_contiguous()
    outside = torch.tensor([[0, 40.0, 40.0, 60.0, 60.0], [1, -30.0, 2.0, -20.0, 4.0], [1, -5.0, -5.0, 9.0, 9.0]],
                           device=DEVICE)
    grad_out = torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    reference, kernel = both(roi_align, x, outside, grad_out, output_size=2, spatial_scale=0.5, sampling_ratio=2)
    assert_same(reference, kernel, torch.float32)
    assert kernel[0][:2].abs().max() == 0  # wholly outside: zeros
    for boxes in (outside[:0], [torch.zeros(0, 4, device=DEVICE), torch.zeros(0, 4, device=DEVICE)]):
        out, grad = forward_backward(partial(roi_align, impl="triton"), x, boxes, torch.zeros(0, 3, 2, 2, device=DEVICE),
                                     output_size=2)
        assert out.shape == (0, 3, 2, 2) and grad.shape == x.shape and grad.abs().max() == 0


def test_roi_warp_runs_on_the_kernel():
    x, rois, grad_out = small_case(6, torch.float64, output=(2, 2))
    reference, kernel = both(roi_warp, x, rois, grad_out, output_size=2, spatial_scale=1 / 4, sampling_ratio=2)
    assert_same(reference, kernel, torch.float64)


# --- RoIPool ---

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 1 / 4])
def test_roi_pool_matches_reference_and_torchvision(dtype, scale):
    x, rois, grad_out = small_case(int(8 * scale), dtype, num_rois=6, output=(2, 3))
    rois[:, 1:] /= 4 * scale  # RoIs in the pixels of an image of stride 1 / scale
    reference, kernel = both(roi_pool, x, rois, grad_out, output_size=(2, 3), spatial_scale=scale)
    assert_same(reference, kernel, dtype)
    theirs = forward_backward(torchvision.ops.roi_pool, x, rois, grad_out, output_size=(2, 3), spatial_scale=scale)
    assert_same(theirs, kernel, dtype)
    assert kernel[0].abs().sum() > 0


def test_roi_pool_ties_go_to_the_first_pixel_and_empty_bins_are_zero():
    """Values 0, 1, 2 repeat across the map, so every bin has ties at its max: the whole gradient must
    reach the first of them in row-major order (where torchvision sends it). The last RoI lies wholly
    outside the map: all its bins are empty."""
    x = (torch.arange(2 * 7 * 8, dtype=torch.float32).view(1, 2, 7, 8) % 3).to(DEVICE)
    rois = torch.tensor([[0, 0, 0, 7, 6], [0, 1, 2, 5, 6], [0, 2.4, 0.6, 3.5, 3.5], [0, 10, 10, 14, 14]],
                        dtype=torch.float32, device=DEVICE)
    grad_out = torch.arange(4 * 2 * 2 * 2, dtype=torch.float32, device=DEVICE).view(4, 2, 2, 2) + 1
    reference, kernel = both(roi_pool, x, rois, grad_out, output_size=2)
    assert_same(reference, kernel, torch.float32)
    theirs = forward_backward(torchvision.ops.roi_pool, x, rois, grad_out, output_size=2)
    assert_same(theirs, kernel, torch.float32)
    assert kernel[0][3].abs().max() == 0


def test_roi_pool_no_rois_and_non_contiguous_input():
    x = torch.randn(2, 8, 7, 3, generator=torch.Generator().manual_seed(9)).to(DEVICE).transpose(1, 3)  # (2, 3, 7, 8)
    rois = torch.tensor([[1, 0.0, 0.0, 5.0, 4.0], [0, 3.0, 1.0, 7.0, 6.0]], device=DEVICE)
    grad_out = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    assert_same(*both(roi_pool, x, rois, grad_out, output_size=2), torch.float32)
    out, grad = forward_backward(partial(roi_pool, impl="triton"), x, rois[:0], grad_out[:0], output_size=2)
    assert out.shape == (0, 3, 2, 2) and grad.abs().max() == 0


# --- NMS ---

@pytest.mark.parametrize("dtype, kind", [(torch.float32, "random"), (torch.float64, "clustered")])
def test_nms_matches_reference_and_torchvision(dtype, kind):
    gen = torch.Generator().manual_seed(0)
    # 150 and 200 boxes: 3 and 4 words of 64; clustered boxes suppress in chains across the words
    boxes = random_boxes(gen, 150, dtype=dtype) if kind == "random" else clustered_boxes(gen, 200, dtype=dtype)
    scores = (torch.rand(len(boxes), generator=gen, dtype=dtype) * 20).round()  # many tied scores
    boxes, scores = boxes.to(DEVICE), scores.to(DEVICE)
    groups = torch.randint(3, (len(boxes),), generator=gen).to(DEVICE)
    for threshold in (0.3, 0.7):
        keep = nms(boxes, scores, threshold, impl="triton")
        assert keep.dtype == torch.int64 and keep.device == boxes.device
        assert torch.equal(keep, nms(boxes, scores, threshold, impl="reference"))
        assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
        grouped = batched_nms(boxes, scores, groups, threshold, impl="triton")
        assert torch.equal(grouped, batched_nms(boxes, scores, groups, threshold, impl="reference"))
        assert torch.equal(grouped, torchvision.ops.batched_nms(boxes, scores, groups, threshold))


@pytest.mark.parametrize("n", [65, 130])
def test_nms_chain_across_word_boundaries(n):
    """Boxes sliding by 2 pixels: at IoU 0.5 each kept box suppresses only its successor, the longest
    chain for the scan's fixed point; n around the 64-box word."""
    x = 2.0 * torch.arange(float(n))
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1).to(DEVICE)
    scores = torch.linspace(1, 0, n).to(DEVICE)
    assert nms(boxes, scores, 0.5, impl="triton").tolist() == list(range(0, n, 2))
    assert torch.equal(nms(boxes, scores, 0.2, impl="triton"), torchvision.ops.nms(boxes, scores, 0.2))


def test_nms_by_hand_ties_identical_boxes_threshold_and_empty():
    run = partial(nms, impl="triton")
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10.0]], device=DEVICE)
    assert run(boxes, torch.ones(4, device=DEVICE), 0.5).tolist() == [0, 2]  # tied scores: lower index first
    assert run(boxes, torch.tensor([0.1, 0.2, 0.3, 0.9], device=DEVICE), 0.5).tolist() == [3, 2]
    half = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5.0]], device=DEVICE)  # IoU exactly 0.5
    assert run(half, torch.tensor([0.9, 0.8], device=DEVICE), 0.5).tolist() == [0, 1]
    assert run(half, torch.tensor([0.9, 0.8], device=DEVICE), 0.49).tolist() == [0]
    points = torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5.0]], device=DEVICE)  # zero area: IoU 0, both stay
    assert run(points, torch.tensor([0.9, 0.8], device=DEVICE), 0.5).tolist() == [0, 1]
    groups = torch.tensor([0, 1, 1, 1], device=DEVICE)
    assert batched_nms(boxes, torch.tensor([0.1, 0.2, 0.3, 0.9], device=DEVICE), groups, 0.5,
                       impl="triton").tolist() == [3, 2, 0]
    empty = torch.zeros(0, 4, device=DEVICE)
    assert run(empty, torch.zeros(0, device=DEVICE), 0.5).tolist() == []
    assert batched_nms(empty, torch.zeros(0, device=DEVICE), torch.zeros(0, dtype=torch.int64, device=DEVICE), 0.5,
                       impl="triton").tolist() == []
