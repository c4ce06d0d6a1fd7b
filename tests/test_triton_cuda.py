"""On a GPU: the Triton kernels on Mask R-CNN's own workloads (FPN maps of 256 channels, hundreds of RoIs,
thousands of RPN boxes) against torchvision's CUDA kernels, and the whole model on both paths, in float32
and under bfloat16 autocast. Skipped without CUDA; test_triton_ops.py checks the kernels on every machine."""
import pytest
import torch
import torchvision.ops

from minimaskrcnn.config import cpu_small
from minimaskrcnn.model import MaskRCNN
from minimaskrcnn.ops import batched_nms, nms, roi_align, roi_pool
from minimaskrcnn.ops.triton import ENV
from test_ops import clustered_boxes
from test_roi_align import forward_backward, random_rois

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]


def fpn_level(seed=0, rois=512):
    """P3 of two 800x1216 images (stride 8, 256 channels) and RoIs in image pixels, some outside."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 256, 100, 152, generator=gen).cuda()
    boxes = random_rois(gen, rois, 2, 800, 1216).float().cuda()
    return x, boxes, gen


@pytest.mark.parametrize("aligned, sampling_ratio", [(True, 2), (False, -1), (True, 0)])
@pytest.mark.parametrize("size", [7, 14])
def test_roi_align_on_an_fpn_level_matches_torchvision(aligned, sampling_ratio, size):
    x, boxes, gen = fpn_level()
    grad_out = torch.randn(len(boxes), 256, size, size, generator=gen).cuda()
    kwargs = dict(output_size=size, spatial_scale=1 / 8, sampling_ratio=sampling_ratio, aligned=aligned)
    out, grad = forward_backward(roi_align, x, boxes, grad_out, **kwargs)  # the default: Triton on CUDA
    theirs, their_grad = forward_backward(torchvision.ops.roi_align, x, boxes, grad_out, **kwargs)
    torch.testing.assert_close(out, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, their_grad, rtol=1e-5, atol=1e-4)  # atomic adds: any order


@pytest.mark.parametrize("size", [7, 14])
def test_roi_pool_on_an_fpn_level_matches_torchvision(size):
    x, boxes, gen = fpn_level(1)
    grad_out = torch.randn(len(boxes), 256, size, size, generator=gen).cuda()
    out, grad = forward_backward(roi_pool, x, boxes, grad_out, output_size=size, spatial_scale=1 / 8)
    theirs, their_grad = forward_backward(torchvision.ops.roi_pool, x, boxes, grad_out, output_size=size,
                                          spatial_scale=1 / 8)
    torch.testing.assert_close(out, theirs, rtol=0, atol=0)  # a max selects: exactly the same values
    torch.testing.assert_close(grad, their_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [4000, 20000])
def test_nms_on_rpn_sized_inputs_matches_torchvision(n):
    """4,000 and 20,000 boxes: 63 and 313 words per row of the mask, the scan's widest tiles."""
    gen = torch.Generator().manual_seed(n)
    boxes = clustered_boxes(gen, n, clusters=50).cuda()
    scores = torch.rand(n, generator=gen).cuda()
    levels = torch.randint(5, (n,), generator=gen).cuda()
    for threshold in (0.5, 0.7):
        assert torch.equal(nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))
        assert torch.equal(batched_nms(boxes, scores, levels, threshold),
                           torchvision.ops.batched_nms(boxes, scores, levels, threshold))


def losses_and_gradients(model, images, targets, amp):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        torch.manual_seed(0)  # the same RoIs sampled on both paths (NMS keeps the same proposals)
        losses = model.train()(images, targets).losses
    sum(losses.values()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return {name: loss.detach() for name, loss in losses.items()}, grads


@pytest.mark.parametrize("amp", [False, True])
def test_the_model_gives_the_same_losses_and_gradients_on_both_paths(amp, monkeypatch):
    from minimaskrcnn.data import ShapesDataset, collate

    data = ShapesDataset(4, image_size=128, seed=0)
    images, targets = collate([data[i] for i in range(4)])
    images = [im.cuda() for im in images]
    targets = [{k: v.cuda() if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small(data.num_classes)).cuda()
    monkeypatch.setenv(ENV, "auto")  # Triton on CUDA
    kernel_losses, kernel_grads = losses_and_gradients(model, images, targets, amp)
    monkeypatch.setenv(ENV, "reference")
    losses, grads = losses_and_gradients(model, images, targets, amp)
    tol = dict(rtol=2e-2, atol=2e-2) if amp else dict(rtol=1e-4, atol=1e-5)
    assert losses.keys() == kernel_losses.keys() and grads.keys() == kernel_grads.keys()
    for name, loss in losses.items():
        assert torch.isfinite(kernel_losses[name])
        torch.testing.assert_close(kernel_losses[name], loss, **tol, msg=name)
    for name, grad in grads.items():
        torch.testing.assert_close(kernel_grads[name], grad, rtol=tol["rtol"], atol=tol["atol"] * 10, msg=name)


@pytest.mark.parametrize("op", ["align avg", "align max", "pool"])
def test_gradcheck_of_the_kernels_in_float64(op):
    """The backward kernels against numerical derivatives (random values: no ties at a max)."""
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 4.1, 3.2], [1, 1.2, 0.4, 3.7, 4.4], [1, 2.5, 1.5, 3.0, 2.5]],
                        dtype=torch.float64, device="cuda")
    if op == "pool":
        run = lambda t: roi_pool(t, rois, (2, 3), impl="triton")
    else:
        run = lambda t: roi_align(t, rois, (2, 2), 1.0, 2, True, op.split()[1], impl="triton")
    assert torch.autograd.gradcheck(run, (x,))
