"""RoIAlign (ops/roi_align.py) against three independent references: torchvision.ops.roi_align (values and
gradients), a loop-by-loop transcription of the paper's definition written below, and 5x5 cases worked out
by hand. Plus float64 gradcheck, mode="max", the edge cases and bad arguments."""
import math

import pytest
import torch
import torchvision.ops

from minimaskrcnn.ops import roi_align

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


# --- the reference: Sec. 3 of the paper, one sampling point at a time, with torchvision's conventions ---

def bilinear(fmap, y, x):
    """The value of fmap (C, H, W) at real coordinates (y, x): 0 beyond one pixel outside the map,
    the border pixel just outside it, else the 4-neighbour weighted average."""
    C, H, W = fmap.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return torch.zeros(C, dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def roi_align_loops(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, mode="avg"):
    """input (N, C, H, W) float64, rois (K, 5) -> (K, C, P, Q), with a Python loop over everything."""
    P, Q = output_size
    out = torch.zeros(rois.shape[0], input.shape[1], P, Q, dtype=torch.float64)
    offset = 0.5 if aligned else 0.0
    for k, (n, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (v * spatial_scale - offset for v in (x1, y1, x2, y2))
        w, h = x2 - x1, y2 - y1
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(h / P)
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(w / Q)
        for p in range(P):
            for q in range(Q):
                points = [bilinear(input[int(n)].double(), y1 + p * h / P + (i + 0.5) * h / P / gy,
                                   x1 + q * w / Q + (j + 0.5) * w / Q / gx)
                          for i in range(gy) for j in range(gx)]
                if not points:
                    continue  # a zero-size RoI has no points: 0
                stacked = torch.stack(points)
                out[k, :, p, q] = stacked.mean(0) if mode == "avg" else stacked.amax(0)
    return out


def random_rois(gen, num, image_count, image_h, image_w):
    """(num, 5) RoIs in image pixels; about a third reach outside the image, some are thin or empty."""
    x1 = torch.rand(num, generator=gen, dtype=torch.float64) * 1.3 * image_w - 0.2 * image_w
    y1 = torch.rand(num, generator=gen, dtype=torch.float64) * 1.3 * image_h - 0.2 * image_h
    w = torch.rand(num, generator=gen, dtype=torch.float64) * 0.7 * image_w
    h = torch.rand(num, generator=gen, dtype=torch.float64) * 0.7 * image_h
    w[:2] = 0.0  # zero width, and
    h[1:3] = 0.0  # zero height
    n = torch.randint(image_count, (num,), generator=gen).double()
    return torch.stack([n, x1, y1, x1 + w, y1 + h], dim=1)


def forward_backward(op, x, rois, grad_out, **kwargs):
    x = x.detach().requires_grad_()
    out = op(x, rois, **kwargs)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    return out, grad


# --- torchvision ---

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_values_and_gradients_match_torchvision(device, dtype, seed, aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(seed)
    scale = 1 / 4
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=dtype).to(device)
    rois = random_rois(gen, 20, 2, 9 * 4, 11 * 4).to(dtype=dtype, device=device)
    kwargs = dict(output_size=(3, 4), spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
    grad_out = torch.randn(20, 3, 3, 4, generator=gen, dtype=dtype).to(device)
    ours, our_grad = forward_backward(roi_align, x, rois, grad_out, **kwargs)
    theirs, their_grad = forward_backward(torchvision.ops.roi_align, x, rois, grad_out, **kwargs)
    assert ours.dtype == dtype and ours.shape == (20, 3, 3, 4)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_fpn_sized_case_matches_torchvision(device):
    """Stride 32 with boxes in image pixels, adaptive sampling up to several points per bin, 7x7."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 25, 38, generator=gen).to(device)  # P5 of an 800x1216 image
    rois = random_rois(gen, 16, 1, 800, 1216).float().to(device)
    kwargs = dict(output_size=7, spatial_scale=1 / 32, sampling_ratio=0, aligned=True)
    torch.testing.assert_close(roi_align(x, rois, **kwargs), torchvision.ops.roi_align(x, rois, **kwargs),
                               rtol=0, atol=1e-5)


# --- the loop reference ---

@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 3])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_matches_loop_reference(aligned, sampling_ratio, mode):
    gen = torch.Generator().manual_seed(sampling_ratio + 10 * aligned)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 8, 2, 12, 14)
    kwargs = dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)
    torch.testing.assert_close(roi_align(x, rois, mode=mode, **kwargs), roi_align_loops(x, rois, mode=mode, **kwargs),
                               rtol=0, atol=1e-12)


# --- by hand: a 5x5 map holding f(y, x) = 5y + x, which bilinear interpolation reproduces exactly ---

LINEAR_5X5 = torch.arange(25, dtype=torch.float64).view(1, 1, 5, 5)


@pytest.mark.parametrize("aligned, expected", [
    # aligned=False: the RoI [1, 3] has bins [1, 2], [2, 3] and one point per bin at their centers 1.5, 2.5
    (False, [[5 * 1.5 + 1.5, 5 * 1.5 + 2.5], [5 * 2.5 + 1.5, 5 * 2.5 + 2.5]]),
    # aligned=True: shifted by half a pixel to [0.5, 2.5], the points sit on pixels 1 and 2
    (True, [[6.0, 7.0], [11.0, 12.0]]),
])
def test_hand_computed_5x5(aligned, expected):
    rois = torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]], dtype=torch.float64)
    out = roi_align(LINEAR_5X5, rois, 2, sampling_ratio=1, aligned=aligned)
    assert out[0, 0].tolist() == expected


def test_hand_computed_5x5_borders_and_small_rois():
    rois = torch.tensor([
        [0, -1.0, 0.0, 1.0, 2.0],  # x points -0.5 (reads column 0) and 0.5, y points 0.5, 1.5: 5 + 0.25
        [0, -4.0, -4.0, -2.0, -2.0],  # wholly beyond one pixel outside: 0
        [0, 1.0, 1.0, 1.5, 1.5],  # aligned=False stretches it to 1x1: its single point is (1.5, 1.5)
        [0, 3.0, 3.0, 6.0, 6.0],  # points 3.75, 5.25 per axis; 5.25 > 5 is outside (0), 3.75 interpolates
    ], dtype=torch.float64)
    out = roi_align(LINEAR_5X5, rois, 1, sampling_ratio=2)[:, 0, 0, 0]
    assert out.tolist() == [5.25, 0.0, 9.0, (5 * 3.75 + 3.75) / 4]
    # aligned=True keeps the 0.5 x 0.5 size: adaptive sampling gives 1 point at 1.25 - 0.5 = 0.75
    out = roi_align(LINEAR_5X5, rois[2:3], 1, sampling_ratio=-1, aligned=True)
    assert out.item() == 5 * 0.75 + 0.75


def test_max_mode_by_hand():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 1, 3] = 8.0
    rois = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]], dtype=torch.float64)
    # 2x2 bins of 2x2 pixels with points at 0.5 and 1.5 pixels into each. The top-right bin's points:
    # x = 2.5 weighs pixel column 3 by 0.5, x = 3.5 lies past the last column and reads it alone (weight 1);
    # y = 0.5 and 1.5 weigh row 1 by 0.5. So its points see 2, 4, 2, 4: max 4, average 3. The others see 0.
    assert roi_align(x, rois, 2, sampling_ratio=2, mode="max")[0, 0].tolist() == [[0.0, 4.0], [0.0, 0.0]]
    assert roi_align(x, rois, 2, sampling_ratio=2, mode="avg")[0, 0].tolist() == [[0.0, 3.0], [0.0, 0.0]]


# --- gradcheck ---

@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("aligned", [False, True])
def test_gradcheck(mode, aligned):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # inside the map, so that no two sampling points of a bin tie (a max has no gradient at a tie)
    rois = torch.tensor([[0, 0.3, 0.6, 4.1, 3.2], [1, 1.2, 0.4, 3.7, 4.4], [1, 2.5, 1.5, 3.0, 2.5]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 2), 1.0, 2, aligned, mode), (x,))


# --- edge cases, against torchvision ---

def compare(x, rois, device, **kwargs):
    x = x.to(device)
    rois = [r.to(device) for r in rois] if isinstance(rois, list) else rois.to(device)
    grad_out = torch.randn(roi_align(x, rois, **kwargs).shape, generator=torch.Generator().manual_seed(0)).to(device)
    ours, our_grad = forward_backward(roi_align, x, rois, grad_out, **kwargs)
    theirs, their_grad = forward_backward(torchvision.ops.roi_align, x, rois, grad_out, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-5)
    return ours


@pytest.mark.parametrize("device", DEVICES)
def test_no_boxes(device):
    x = torch.randn(2, 3, 5, 5)
    assert compare(x, torch.zeros(0, 5), device, output_size=2).shape == (0, 3, 2, 2)
    assert compare(x, [torch.zeros(0, 4), torch.zeros(0, 4)], device, output_size=2).shape == (0, 3, 2, 2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aligned", [False, True])
def test_boxes_outside_empty_and_on_a_1x1_map(device, aligned):
    rois = torch.tensor([[0, -5, -5, 2, 2], [0, 3, 3, 9, 9], [0, 20, 20, 30, 30], [0, -30, 2, -20, 4],
                         [0, 2, 1, 2, 4], [0, 1, 2, 4, 2], [0, 2, 2, 2, 2]], dtype=torch.float32)
    out = compare(torch.randn(1, 2, 6, 6), rois, device, output_size=3, sampling_ratio=2, aligned=aligned)
    assert out[2].abs().max() == 0 and out[3].abs().max() == 0  # wholly outside: zeros
    compare(torch.randn(1, 2, 1, 1), rois, device, output_size=3, spatial_scale=0.25, aligned=aligned)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_index_list_input_and_non_contiguous_input(device):
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(3, 8, 7, 4, generator=gen)
    x = base.transpose(1, 3)[:, ::2]  # (3, 2, 7, 8) non-contiguous
    assert not x.is_contiguous()
    rois = random_rois(gen, 6, 1, 14, 16).float()
    rois[:, 0] = 2  # all on the last image
    out = compare(x, rois, device, output_size=(2, 3), spatial_scale=0.5)
    as_list = [torch.zeros(0, 4), rois[:2, 1:], rois[2:, 1:]]  # images 1 and 2
    listed = compare(x, as_list, device, output_size=(2, 3), spatial_scale=0.5)
    torch.testing.assert_close(listed[2:], out[2:])


# --- bad arguments ---

def test_bad_arguments_raise_value_errors_naming_the_argument():
    x = torch.randn(2, 3, 5, 5)
    good = torch.tensor([[0, 0, 0, 2, 2.0]])
    with pytest.raises(ValueError, match="boxes"):
        roi_align(x, good[:, 1:], 2)  # (K, 4) without the batch index
    with pytest.raises(ValueError, match=r"boxes\[1\]"):
        roi_align(x, [good[:, 1:], good], 2)
    for size in (0, (2, -1), (2, 2, 2)):
        with pytest.raises(ValueError, match="output_size"):
            roi_align(x, good, size)
    with pytest.raises(ValueError, match="boxes are on meta"):
        roi_align(x, good.to("meta"), 2)
    with pytest.raises(ValueError, match="mode"):
        roi_align(x, good, 2, mode="median")
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(x, torch.tensor([[2, 0, 0, 2, 2.0]]), 2)
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_align(x, good, 2, spatial_scale=0.0)
    with pytest.raises(ValueError, match="input"):
        roi_align(x[0], good, 2)
