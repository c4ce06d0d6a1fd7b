"""RoIPool (ops/roi_pool.py) against torchvision.ops.roi_pool, values and gradients, plus hand-computed
roundings; RoIWarp (ops/roi_warp.py) against a loop reference (RoIPool's rounding, then the paper's
bilinear sampling one point at a time) and against torchvision's roi_align on boxes rounded here; the edge
cases and bad arguments for both."""
import pytest
import torch
import torchvision.ops

from minimaskrcnn.ops import roi_pool, roi_warp
from test_roi_align import DEVICES, TOL, forward_backward, random_rois, roi_align_loops


def round_half_away(x):
    return torch.where(x >= 0, torch.floor(x + 0.5), torch.ceil(x - 0.5))


def quantized(rois, spatial_scale):
    """RoIPool's first rounding, done here independently: corners to whole feature pixels, in feature units."""
    return torch.cat([rois[:, :1], round_half_away(rois[:, 1:] * spatial_scale)], dim=1)


# --- RoIPool ---

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [1.0, 1 / 4, 1 / 32])
def test_roi_pool_values_and_gradients_match_torchvision(device, dtype, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=dtype).to(device)
    rois = random_rois(gen, 20, 2, 9 / scale, 11 / scale).to(dtype=dtype, device=device)
    grad_out = torch.randn(20, 3, 3, 4, generator=gen, dtype=dtype).to(device)
    ours, our_grad = forward_backward(roi_pool, x, rois, grad_out, output_size=(3, 4), spatial_scale=scale)
    theirs, their_grad = forward_backward(torchvision.ops.roi_pool, x, rois, grad_out, output_size=(3, 4),
                                          spatial_scale=scale)
    assert ours.dtype == dtype and ours.shape == (20, 3, 3, 4)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=TOL[dtype])


def test_roi_pool_by_hand_rounds_half_away_from_zero():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # pixel (y, x) holds 4y + x
    # The RoI (0, 0)-(3, 3) covers pixels 0..3 inclusive: 2x2 bins of 2x2 pixels, each bin's max its
    # bottom-right pixel. (0.4, 0.4)-(2.5, 2.5) rounds to the same (2.5 -> 3; round-half-even would give 2).
    rois = torch.tensor([[0, 0, 0, 3, 3], [0, 0.4, 0.4, 2.5, 2.5]])
    expected = [[5.0, 7.0], [13.0, 15.0]]
    assert roi_pool(x, rois, 2)[:, 0].tolist() == [expected, expected]
    # 3 pixels into 2 bins: bin size 1.5, edges rounded outward to [0, 2) and [1, 3): they share pixel 1
    assert roi_pool(x, torch.tensor([[0, 0, 0, 2, 2.0]]), 2)[0, 0].tolist() == [[5.0, 6.0], [9.0, 10.0]]
    # Wholly outside the map: every bin is empty and gives 0
    assert roi_pool(x, torch.tensor([[0, 6, 6, 9, 9.0]]), 2).abs().max() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_roi_pool_bin_edges_by_hand_on_every_device(device):
    """7 pixels into 3 bins: size 7/3, edges rounded outward: [0, 3), [2, 5), [4, 7). On CUDA, dividing by
    a Python number multiplies by 1/3 and the last bin ended at ceil(3 * 2.3333335) = 8."""
    x = torch.arange(81.0).view(1, 1, 9, 9).to(device)  # pixel (y, x) holds 9y + x
    out = roi_pool(x, torch.tensor([[0, 0, 0, 6, 6.0]], device=device), 3)
    assert out[0, 0].tolist() == [[9 * y + x for x in (2, 4, 6)] for y in (2, 4, 6)]


@pytest.mark.parametrize("device", DEVICES)
def test_roi_pool_edge_cases_match_torchvision(device):
    gen = torch.Generator().manual_seed(4)
    rois = torch.tensor([[0, -5, -5, 2, 2], [0, 3, 3, 9, 9], [0, 20, 20, 30, 30], [0, 2, 1, 2, 4],
                         [0, 1, 2, 4, 2], [0, 2, 2, 2, 2]], dtype=torch.float32).to(device)
    base = torch.randn(3, 6, 6, 4, generator=gen).to(device)
    cases = [
        (base.permute(0, 3, 1, 2), rois, 1.0),  # non-contiguous (N, C, H, W)
        (base[:, :1, :1].permute(0, 3, 1, 2), rois, 1 / 32),  # 1x1 map, stride 32
        (base.permute(0, 3, 1, 2), rois.clone().index_fill_(1, torch.tensor([0], device=device), 2.0), 0.5),
        (base.permute(0, 3, 1, 2), [rois[:0, 1:], rois[:3, 1:], rois[3:, 1:]], 1.0),  # list, image 0 empty
        (base.permute(0, 3, 1, 2), rois[:0], 1.0),  # no boxes
    ]
    for x, boxes, scale in cases:
        grad_out = torch.randn(len(rois) if not isinstance(boxes, torch.Tensor) else len(boxes), 4, 2, 3,
                               generator=gen).to(device)
        ours, our_grad = forward_backward(roi_pool, x, boxes, grad_out, output_size=(2, 3), spatial_scale=scale)
        theirs, their_grad = forward_backward(torchvision.ops.roi_pool, x, boxes, grad_out, output_size=(2, 3),
                                              spatial_scale=scale)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-6)


def test_roi_pool_gradcheck():
    """Random values have no ties, so the max is differentiable; one RoI reaches outside (empty bins)."""
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 4.1, 3.2], [1, 1.2, 0.4, 3.7, 4.4], [1, 4.0, 3.0, 9.0, 9.0]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (2, 3)), (x,))


# --- RoIWarp ---

@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 1 / 3])
def test_roi_warp_matches_loop_reference(sampling_ratio, scale):
    gen = torch.Generator().manual_seed(sampling_ratio)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 8, 2, 6 / scale, 7 / scale)
    rois[0, 1:] = torch.tensor([0.5, 1.5, 2.5, 3.5]) / scale  # exact halves: round away from zero
    expected = roi_align_loops(x, quantized(rois, scale), (2, 3), 1.0, sampling_ratio, aligned=False)
    torch.testing.assert_close(roi_warp(x, rois, (2, 3), scale, sampling_ratio), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_warp_matches_torchvision_roi_align_on_rounded_boxes(device, dtype):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=dtype).to(device)
    rois = random_rois(gen, 20, 2, 9 * 8, 11 * 8).to(dtype=dtype, device=device)
    grad_out = torch.randn(20, 3, 3, 3, generator=gen, dtype=dtype).to(device)
    ours, our_grad = forward_backward(roi_warp, x, rois, grad_out, output_size=3, spatial_scale=1 / 8)
    theirs, their_grad = forward_backward(torchvision.ops.roi_align, x, quantized(rois, 1 / 8), grad_out,
                                          output_size=3, aligned=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=TOL[dtype])
    assert roi_warp(x, rois[:0], 3).shape == (0, 3, 3, 3)


def test_roi_warp_gradcheck():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 4.1, 3.2], [0, 1.2, 0.4, 3.7, 4.4]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_warp(t, rois, (2, 2), 1.0, 2), (x,))


# --- bad arguments, both ops ---

@pytest.mark.parametrize("op", [roi_pool, roi_warp])
def test_bad_arguments_raise_value_errors_naming_the_argument(op):
    x = torch.randn(2, 3, 5, 5)
    good = torch.tensor([[0, 0, 0, 2, 2.0]])
    with pytest.raises(ValueError, match="boxes"):
        op(x, good[:, 1:], 2)
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        op(x, [good], 2)
    for size in (0, (-1, 2)):
        with pytest.raises(ValueError, match="output_size"):
            op(x, good, size)
    with pytest.raises(ValueError, match="boxes are on meta"):
        op(x, good.to("meta"), 2)
    with pytest.raises(ValueError, match="batch indices"):
        op(x, torch.tensor([[-1, 0, 0, 2, 2.0]]), 2)
