"""Flip and scale jitter keep boxes and masks in step with the image (checked against numpy and against the
masks' own tight boxes); collate batches images of different sizes."""
import numpy as np
import pytest
import torch

from minimaskrcnn.data import (Compose, RandomHorizontalFlip, RandomScale, ShapesDataset, collate, hflip,
                               resize)


def tight_boxes(masks):
    out = []
    for m in masks.numpy().astype(bool):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        out.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return np.array(out, dtype=np.float32)


@pytest.fixture
def sample():
    image, target = ShapesDataset(3, image_size=40, seed=2, min_objects=3)[1]
    image = image[:, :, :33]  # non-square, so W and H cannot be mixed up unnoticed
    target = dict(target, masks=target["masks"][:, :, :33])
    keep = target["masks"].flatten(1).bool().any(1)  # instances still visible after the crop
    target = {k: (v[keep] if k != "image_id" else v) for k, v in target.items()}
    target["boxes"] = torch.from_numpy(tight_boxes(target["masks"]))
    return image, target


def test_hflip_against_numpy(sample):
    image, target = sample
    flipped, out = hflip(image, target)
    w = image.shape[-1]
    b = target["boxes"].numpy()
    expected = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
    np.testing.assert_array_equal(out["boxes"].numpy(), expected)
    np.testing.assert_array_equal(flipped.numpy(), image.numpy()[:, :, ::-1])
    np.testing.assert_array_equal(out["masks"].numpy(), target["masks"].numpy()[:, :, ::-1])
    np.testing.assert_array_equal(out["boxes"].numpy(), tight_boxes(out["masks"]))  # boxes follow masks
    assert torch.equal(out["labels"], target["labels"]) and out["image_id"] == target["image_id"]
    assert target["boxes"].numpy().tolist() == b.tolist()  # the input target is not modified


def test_random_flip_probability(sample):
    image, target = sample
    assert RandomHorizontalFlip(0.0)(image, target)[0] is image
    assert torch.equal(RandomHorizontalFlip(1.0)(image, target)[0], image.flip(-1))
    torch.manual_seed(0)
    flips = sum(not torch.equal(RandomHorizontalFlip(0.5)(image, target)[0], image) for _ in range(200))
    assert 70 < flips < 130
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(1.5)


def test_resize_scales_boxes_and_masks(sample):
    image, target = sample
    out_image, out = resize(image, target, (80, 66))  # exactly x2: nearest is pixel repetition
    assert out_image.shape == (3, 80, 66)
    np.testing.assert_allclose(out["boxes"].numpy(), target["boxes"].numpy() * 2)
    m = target["masks"].numpy()
    np.testing.assert_array_equal(out["masks"].numpy(), m.repeat(2, axis=1).repeat(2, axis=2))
    assert out["masks"].dtype == torch.uint8
    # bilinear interpolation never leaves the range of the input values
    assert out_image.min() >= image.min() - 1e-6 and out_image.max() <= image.max() + 1e-6


def test_scale_jitter_keeps_boxes_on_masks(sample):
    image, target = sample
    torch.manual_seed(1)
    sizes = set()
    for _ in range(10):
        out_image, out = RandomScale(0.5, 1.5)(image, target)
        h, w = out_image.shape[-2:]
        sizes.add((h, w))
        assert 20 <= h <= 60 and out["masks"].shape[-2:] == (h, w)
        np.testing.assert_allclose(out["boxes"].numpy(), tight_boxes(out["masks"]), atol=1.0)
    assert len(sizes) > 5
    with pytest.raises(ValueError, match="min_scale"):
        RandomScale(2.0, 1.0)


def test_empty_target_and_compose():
    image = torch.rand(3, 10, 12)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, 10, 12, dtype=torch.uint8), "image_id": 1}
    out_image, out = Compose([RandomHorizontalFlip(1.0), lambda i, t: resize(i, t, (5, 6))])(image, target)
    assert out_image.shape == (3, 5, 6) and out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 5, 6)


def test_collate_images_of_different_sizes():
    ds = ShapesDataset(4, image_size=32, transforms=RandomScale(0.5, 2.0))
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 4
    assert len({im.shape for im in images}) > 1
    assert [t["image_id"] for t in targets] == [1, 2, 3, 4]
    assert all(t["masks"].shape[-2:] == im.shape[-2:] for im, t in zip(images, targets))
