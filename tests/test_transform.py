"""Pre/post-processing (transform.py) against torchvision's GeneralizedRCNNTransform and
paste_masks_in_image, plus hand-computed cases."""
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from minimaskrcnn.config import TransformConfig
from minimaskrcnn.transform import ImageTransform, pad_batch, paste_masks, resize_boxes, resized_size

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("size", [(480, 640), (640, 480), (333, 1000), (100, 100), (427, 640)])
def test_resized_size_rounds_like_torchvision(size):
    tv = GeneralizedRCNNTransform(800, 1333, MEAN, STD).eval()
    out, _ = tv([torch.rand(3, *size)])
    assert resized_size(size, 800, 1333) == tuple(out.image_sizes[0])


def test_resized_size_hand_cases():
    assert resized_size((400, 600), 800, 1333) == (800, 1200)  # shorter side to 800
    assert resized_size((300, 1000), 800, 1333) == (399, 1333)  # longer side capped: 1333/1000 = 1.333
    assert resized_size((128, 128), 128, 128) == (128, 128)


def test_transform_matches_torchvision_images_boxes_masks():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 150, 200, generator=g), torch.rand(3, 170, 130, generator=g)]
    targets = []
    for im in images:
        masks = (torch.rand(2, *im.shape[1:], generator=g) > 0.5).to(torch.uint8)
        targets.append({"boxes": torch.tensor([[10.0, 20.0, 100.0, 90.0], [5.5, 6.5, 50.0, 60.0]]),
                        "labels": torch.tensor([1, 2]), "masks": masks})
    tv = GeneralizedRCNNTransform(224, 300, MEAN, STD, size_divisible=32).train()
    tv_batch, tv_targets = tv(images, [dict(t) for t in targets])
    ours = ImageTransform(TransformConfig(min_size=224, max_size=300, size_divisible=32))
    batch, new_targets = ours(images, targets)

    assert batch.tensors.shape == tv_batch.tensors.shape
    assert batch.tensors.shape[-2] % 32 == 0 and batch.tensors.shape[-1] % 32 == 0
    torch.testing.assert_close(batch.tensors, tv_batch.tensors, rtol=0, atol=1e-6)
    assert batch.image_sizes == [tuple(s) for s in tv_batch.image_sizes]
    assert batch.original_sizes == [(150, 200), (170, 130)]
    for t, tvt, orig in zip(new_targets, tv_targets, targets):
        torch.testing.assert_close(t["boxes"], tvt["boxes"])
        assert torch.equal(t["masks"], tvt["masks"])
        assert t["masks"].dtype == torch.uint8
        assert t["boxes"] is not orig["boxes"]  # the caller's targets are not modified
    assert targets[0]["masks"].shape == (2, 150, 200)


def test_pad_batch_zero_pads_bottom_right():
    a, b = torch.ones(3, 5, 7), 2 * torch.ones(3, 9, 4)
    out = pad_batch([a, b], 8)
    assert out.shape == (2, 3, 16, 8)
    assert out[0, :, :5, :7].eq(1).all() and out[0, :, 5:].eq(0).all() and out[0, :, :, 7:].eq(0).all()
    assert out[1, :, :9, :4].eq(2).all() and out[1, :, 9:].eq(0).all() and out[1, :, :, 4:].eq(0).all()


def test_resize_boxes_back_and_forth():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert torch.allclose(resize_boxes(boxes, (100, 200), (50, 400)), torch.tensor([[20.0, 10.0, 60.0, 30.0]]))
    assert torch.allclose(resize_boxes(resize_boxes(boxes, (100, 200), (57, 333)), (57, 333), (100, 200)), boxes)


def _iou(a, b):
    inter = (a & b).sum().item()
    union = (a | b).sum().item()
    return inter / max(union, 1)


def test_paste_masks_matches_torchvision():
    g = torch.Generator().manual_seed(1)
    D, M, H, W = 12, 28, 90, 130
    masks = torch.rand(D, M, M, generator=g)
    masks = masks.reshape(D, 1, M, M)
    xy = torch.rand(D, 2, generator=g) * torch.tensor([W, H]) - 10
    wh = torch.rand(D, 2, generator=g) * 80 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, W - 1.0, H - 1.0])  # the whole image
    boxes[1] = torch.tensor([-20.0, -15.0, 30.0, 12.0])  # partly outside
    expected = paste_masks_in_image(masks, boxes, (H, W), padding=1)[:, 0]
    ours = paste_masks(masks[:, 0], boxes, (H, W))
    assert ours.shape == (D, H, W) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    for a, b in zip(ours, expected):
        assert _iou(a >= 0.5, b >= 0.5) >= 0.98


def test_paste_masks_is_float32_under_autocast():
    g = torch.Generator().manual_seed(2)
    masks, boxes = torch.rand(5, 28, 28, generator=g), torch.tensor([[3.0, 4.0, 60.0, 41.5]] * 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # would run the matrix products in bf16
        ours = paste_masks(masks, boxes, (50, 70))
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, paste_masks(masks, boxes, (50, 70)), rtol=0, atol=1e-6)


def test_paste_masks_hand_case():
    # A 2x2 mask of ones on box (4, 4, 8, 8): padding makes it a 4x4 map on the box grown by 4/2
    # about its centre, (2, 2, 10, 10), i.e. pixels 2..10, whose outermost pixels sample the zero
    # border; inside the original box the probability is 1, outside the grown box 0.
    out = paste_masks(torch.ones(1, 2, 2), torch.tensor([[4.0, 4.0, 8.0, 8.0]]), (12, 12))[0]
    assert out[:3].eq(0).all() and out[:, :3].eq(0).all() and out[10:].eq(0).all() and out[:, 10:].eq(0).all()
    assert out[5:8, 5:8].eq(1).all()
    assert 0 < out[3, 6] < 1  # the zero border fades in


def test_paste_masks_empty():
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (5, 6)).shape == (0, 5, 6)


def test_postprocess_returns_original_frame():
    t = ImageTransform(TransformConfig(min_size=64, max_size=100))
    batch, _ = t([torch.rand(3, 32, 48)])
    assert batch.image_sizes == [(64, 96)]
    det = {"boxes": torch.tensor([[8.0, 16.0, 40.0, 48.0]]), "labels": torch.tensor([1]),
           "scores": torch.tensor([0.9]), "masks": torch.ones(1, 28, 28)}
    out = t.postprocess([det], batch)[0]
    assert torch.allclose(out["boxes"], torch.tensor([[4.0, 8.0, 20.0, 24.0]]))
    assert out["masks"].shape == (1, 32, 48)
    assert out["masks"][0, 10:22, 6:18].eq(1).all() and out["masks"][0, :, 25:].eq(0).all()


@pytest.mark.parametrize("images, targets, match", [
    ([torch.rand(1, 10, 10)], None, r"images\[0\]"),
    ([torch.zeros(3, 10, 10, dtype=torch.uint8)], None, r"images\[0\]"),
    ([], None, "images"),
    ([torch.rand(3, 10, 10)], [{"boxes": torch.zeros(1, 4)}], r'targets\[0\] has no "labels"'),
    ([torch.rand(3, 10, 10)], [{"boxes": torch.zeros(1, 5), "labels": torch.ones(1, dtype=torch.long)}],
     r'targets\[0\]\["boxes"\]'),
    ([torch.rand(3, 10, 10)], [{"boxes": torch.zeros(1, 4), "labels": torch.ones(1)}], r'\["labels"\]'),
    ([torch.rand(3, 10, 10)], [{"boxes": torch.zeros(1, 4), "labels": torch.ones(1, dtype=torch.long),
                                "masks": torch.zeros(1, 9, 10, dtype=torch.uint8)}], r'\["masks"\]'),
])
def test_bad_input_raises_value_error(images, targets, match):
    with pytest.raises(ValueError, match=match):
        ImageTransform(TransformConfig())(images, targets)
