"""The assembled model (model.py): output shapes and dtypes in train and eval mode, an image without
objects, the presets (cpu_small, R50-FPN, R50-C4) and the paper's ablation switches each run a training
step, bad input, CUDA with autocast, and a real learning test (overfitting two drawn images)."""
import dataclasses
import time

import pytest
import torch

from minimaskrcnn.config import cpu_small, r50_c4, r50_fpn
from minimaskrcnn.convert import load_imagenet_resnet
from minimaskrcnn.model import LOSS_NAMES, MaskRCNN, MaskRCNNOutput

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")


def drawn_image(shapes, size=(96, 112), seed=0):
    """An image with filled rectangles ("box", label 1) and discs ("disc", label 2) on a noisy
    background, and its targets. shapes: list of (kind, x1, y1, x2, y2)."""
    g = torch.Generator().manual_seed(seed)
    H, W = size
    image = 0.1 * torch.rand(3, H, W, generator=g) + 0.2
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    boxes, labels, masks = [], [], []
    for i, (kind, x1, y1, x2, y2) in enumerate(shapes):
        if kind == "box":
            m = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
        else:
            cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        colour = torch.tensor([0.9, 0.3, 0.2]) if kind == "box" else torch.tensor([0.2, 0.8, 0.9])
        image[:, m] = colour[:, None]
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
        labels.append(1 if kind == "box" else 2)
        masks.append(m.to(torch.uint8))
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": torch.tensor(labels, dtype=torch.int64),
              "masks": torch.stack(masks) if masks else torch.zeros(0, H, W, dtype=torch.uint8)}
    return image, target


def two_images():
    a = drawn_image([("box", 10, 12, 50, 40), ("disc", 60, 50, 100, 90)], seed=0)
    b = drawn_image([("disc", 20, 30, 56, 66), ("box", 64, 8, 104, 30)], seed=1)
    return [a[0], b[0]], [a[1], b[1]]


def small(cfg, size=96):
    """A preset at a small input size, so that the big presets run in a test."""
    return dataclasses.replace(cfg, transform=dataclasses.replace(cfg.transform, min_size=size, max_size=size))


def check_losses(losses):
    assert set(losses) == set(LOSS_NAMES)
    for name, v in losses.items():
        assert v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v), name


def check_detections(detections, images, num_classes):
    assert len(detections) == len(images)
    for d, im in zip(detections, images):
        D = d["boxes"].shape[0]
        assert d["boxes"].shape == (D, 4) and d["boxes"].dtype == torch.float32
        assert d["scores"].shape == (D,) and d["scores"].dtype == torch.float32
        assert d["labels"].shape == (D,) and d["labels"].dtype == torch.int64
        assert d["masks"].shape == (D, *im.shape[1:]) and d["masks"].dtype == torch.float32
        if D:
            assert d["labels"].min() >= 1 and d["labels"].max() < num_classes
            assert (d["scores"][:-1] >= d["scores"][1:]).all()
            assert d["boxes"][:, 2].max() <= im.shape[2] and d["boxes"][:, 3].max() <= im.shape[1]
            assert d["masks"].min() >= 0 and d["masks"].max() <= 1


def test_train_and_eval_outputs_cpu_small():
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small())
    images, targets = two_images()
    out = model(images, targets)
    assert isinstance(out, MaskRCNNOutput) and out.detections is None
    check_losses(out.losses)
    sum(out.losses.values()).backward()

    model.eval()
    with torch.no_grad():
        out = model(images)
        assert out.losses == {}
        check_detections(out.detections, images, 4)
        both = model(images, targets)  # a validation loss: losses and detections together
    check_losses(both.losses)
    check_detections(both.detections, images, 4)
    assert targets[0]["boxes"][0].tolist() == [10, 12, 50, 40]  # the caller's targets are untouched


def test_an_image_without_objects_trains():
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small())
    image, target = drawn_image([])
    out = model([image], [target])
    check_losses(out.losses)
    assert out.losses["loss_mask"].item() == 0 and out.losses["loss_box"].item() == 0
    sum(out.losses.values()).backward()
    mask_params = list(model.roi_heads.mask_head.parameters()) + list(model.roi_heads.mask_predictor.parameters())
    assert all(p.grad is not None and p.grad.eq(0).all() for p in mask_params)  # connected, zero


def test_mixed_batch_with_an_empty_image():
    torch.manual_seed(0)
    images, targets = two_images()
    empty_image, empty = drawn_image([], seed=3)
    out = MaskRCNN(cpu_small())([images[0], empty_image], [targets[0], empty])
    check_losses(out.losses)
    assert out.losses["loss_mask"].item() > 0


@pytest.mark.parametrize("preset", [r50_fpn, r50_c4])
def test_paper_presets_build_and_run_a_training_step(preset):
    torch.manual_seed(0)
    cfg = small(preset(num_classes=3), 64)
    model = MaskRCNN(cfg)
    images, targets = two_images()
    out = model(images, targets)
    check_losses(out.losses)
    sum(out.losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


@pytest.mark.parametrize("change", [
    {"mask_loss": "softmax"}, {"class_agnostic_masks": True}, {"mask_head": "mlp"},
    {"pooler": "pool"}, {"pooler": "warp"}, {"pooler": "align", "aligned": True, "pool_mode": "max"},
])
def test_ablation_switches_train_and_detect(change):
    torch.manual_seed(0)
    cfg = cpu_small()
    cfg.roi_heads = dataclasses.replace(cfg.roi_heads, **change)
    model = MaskRCNN(cfg)
    images, targets = two_images()
    out = model(images, targets)
    check_losses(out.losses)
    sum(out.losses.values()).backward()
    model.eval()
    with torch.no_grad():
        check_detections(model(images).detections, images, 4)


@pytest.mark.parametrize("preset", [r50_fpn, r50_c4])
def test_imagenet_resnet50_loads_into_the_backbone(preset):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for name, t in resnet.state_dict().items():  # every tensor distinct, so a wrong key mapping shows
            if t.is_floating_point():
                t.copy_(torch.randn_like(t))
    model = MaskRCNN(preset(num_classes=3))
    load_imagenet_resnet(model, resnet.state_dict())
    ours = {**{f"backbone.{k}": v for k, v in model.backbone.state_dict().items()},
            **{f"res5.{k}": v for k, v in model.roi_heads.box_head.state_dict().items()}}
    loaded = 0
    for name, t in resnet.state_dict().items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            continue
        key = ("res5." + name if preset is r50_c4 and name.startswith("layer4.") else "backbone.body." + name)
        key = key.replace("res5.layer4.", "res5.res5.")
        assert torch.equal(ours[key], t), key
        loaded += 1
    assert loaded == 53 + 53 * 4  # ResNet-50: 53 convs (4 of them downsampling), 53 BNs of 4 tensors each
    with pytest.raises(ValueError, match="torchvision resnet"):
        load_imagenet_resnet(model, torchvision.models.resnet18(weights=None).state_dict())


def test_bad_input_raises_value_error():
    model = MaskRCNN(cpu_small())
    images, targets = two_images()
    with pytest.raises(ValueError, match="targets are required"):
        model(images)
    with pytest.raises(ValueError, match="masks"):
        model(images, [{k: v for k, v in t.items() if k != "masks"} for t in targets])
    with pytest.raises(ValueError, match=r"images\[1\]"):
        model([images[0], images[1][:2]], targets)
    cfg = cpu_small()
    with pytest.raises(ValueError, match="AnchorConfig.sizes has 2 levels, the fpn backbone gives 5"):
        dataclasses.replace(cfg, anchors=dataclasses.replace(cfg.anchors, sizes=((16,), (32,))))


@pytest.mark.parametrize("change, message", [
    (lambda im: im.index_put((torch.tensor([0]),), torch.tensor(float("nan"))),
     r"images\[1\] contains NaN or infinite"),
    (lambda im: im * float("inf"), r"images\[1\] contains NaN or infinite"),
    (lambda im: im * 255, r"images\[1\] has values in \[0, 255\], not \[0, 1\]: an image in 0-255 must be divided"),
    (lambda im: (im - 0.45) / 0.225, r"images\[1\] has values in .* \(do not apply it yourself\)"),
    (lambda im: im.double(), r"images\[1\] is torch.float64; .* \(use image.float\(\)\)"),
    (lambda im: im.half(), r"images\[1\] is torch.float16; .*torch.autocast"),
    (lambda im: (im * 255).to(torch.uint8), r"images\[1\] is torch.uint8; .*divide by 255"),
    (lambda im: im[:, :0], r"images\[1\] is empty: 0x112 pixels"),
])
def test_bad_images_say_what_is_wrong(change, message):
    model = MaskRCNN(cpu_small()).eval()
    images, _ = two_images()
    images[1][0, 0, 0] = 1.0
    images[1][0, 0, 1] = 0.0
    with pytest.raises(ValueError, match=message):
        model([images[0], change(images[1])])


def test_labels_outside_the_model_and_nan_boxes_are_named():
    model = MaskRCNN(cpu_small())
    images, targets = two_images()
    bad = [targets[0], {**targets[1], "labels": torch.full_like(targets[1]["labels"], 4)}]
    with pytest.raises(ValueError, match=r'targets\[1\]\["labels"\] holds \[4.*object labels are 1..3'):
        model(images, bad)
    nan_box = targets[1]["boxes"].clone()
    nan_box[0, 2] = float("nan")
    with pytest.raises(ValueError, match=r'targets\[1\]\["boxes"\] must be finite'):
        model(images, [targets[0], {**targets[1], "boxes": nan_box}])


@pytest.mark.parametrize("shape", [(2000, 3), (3, 2000), (1, 1)])
def test_extreme_aspect_ratios_train_and_detect(shape):
    # cpu_small caps the longer side at 128 pixels: a 2000 x 3 image becomes 128 x 1, not 128 x 0
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small())
    h, w = shape
    image = torch.rand(3, h, w)
    target = {"boxes": torch.tensor([[0.0, 0.0, w, h]]), "labels": torch.tensor([1]),
              "masks": torch.ones(1, h, w, dtype=torch.uint8)}
    losses = model([image], [target]).losses
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1:] = 3.0
        det = model([image]).detections[0]
    assert det["masks"].shape[1:] == (h, w) and det["boxes"].shape[1] == 4


def test_cpu_autocast_bf16_trains_and_detects_in_float32():
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small())
    images, targets = two_images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, targets)
    check_losses(out.losses)  # float32 losses of bf16 activations
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.roi_heads.box_predictor.cls_score.bias[1:] = 3.0  # detections from a random model
        detections = model(images).detections
    assert detections[0]["boxes"].shape[0] > 0
    check_detections(detections, images, 4)  # float32 boxes, scores and pasted masks


@CUDA
@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
def test_cuda_train_and_eval_under_autocast(dtype):
    torch.manual_seed(0)
    model = MaskRCNN(cpu_small()).cuda()
    images, targets = two_images()
    images = [im.cuda() for im in images]
    targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(images, targets)
    check_losses(out.losses)
    sum(out.losses.values()).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(images)
    for d in out.detections:
        assert d["boxes"].is_cuda and d["boxes"].dtype == torch.float32 and d["masks"].dtype == torch.float32
    check_detections([{k: v.cpu() for k, v in d.items()} for d in out.detections], [im.cpu() for im in images], 4)


@CUDA
def test_cuda_matches_cpu_in_eval():
    from test_torchvision_equivalence import tied_order  # pairs rows within runs of tied scores

    torch.manual_seed(0)
    model = MaskRCNN(cpu_small()).eval()
    with torch.no_grad():  # detections from a random model, classes at distinct score levels
        model.roi_heads.box_predictor.cls_score.bias[1:] = torch.tensor([3.0, 2.0, 1.0])
    images, _ = two_images()
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 as on the CPU
    try:
        with torch.no_grad():
            cpu = model(images).detections
            gpu = model.cuda()([im.cuda() for im in images]).detections
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    for a, b in zip(cpu, gpu):
        b = {k: v.cpu() for k, v in b.items()}
        assert a["boxes"].shape[0] > 0 and a["boxes"].shape == b["boxes"].shape
        # scores that differ by float rounding only may come in either order
        order = tied_order(b["boxes"], b["scores"], a["boxes"], a["scores"], tie=1e-4)
        torch.testing.assert_close(b["boxes"], a["boxes"][order], rtol=1e-3, atol=1e-3)
        assert torch.equal(b["labels"], a["labels"][order])
        torch.testing.assert_close(b["masks"], a["masks"][order], rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_cpu_small_overfits_two_images():
    """A real learning test: two drawn images, 150 SGD steps (about 20 s of one core), the total loss
    near zero and both objects of each image detected with their class and an accurate mask.

    It runs on one thread: its small convolutions gain little from a second one, and where other jobs
    share the machine, OpenMP threads waiting for each other made it ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = MaskRCNN(cpu_small())
        images, targets = two_images()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9,
                              weight_decay=1e-4)
        start, first = time.process_time(), None  # CPU time: what a busy machine does not stretch
        for step in range(150):
            losses = model(images, targets).losses
            total = sum(losses.values())
            first = first if first is not None else total.item()
            opt.zero_grad()
            total.backward()
            opt.step()
        elapsed = time.process_time() - start
        model.eval()
        with torch.no_grad():
            detections = model(images).detections
    finally:
        torch.set_num_threads(threads)
    assert total.item() < 0.1 * first and total.item() < 0.25, {k: v.item() for k, v in losses.items()}
    assert elapsed < 60  # seconds of CPU time, on one thread (about 20 measured)
    for d, t in zip(detections, targets):
        for gt_box, gt_label, gt_mask in zip(t["boxes"], t["labels"], t["masks"]):
            hit = d["labels"][:3] == gt_label  # among the top three detections
            assert hit.any()
            i = torch.nonzero(hit)[0, 0]
            mask = d["masks"][i] >= 0.5
            iou = (mask & gt_mask.bool()).sum() / (mask | gt_mask.bool()).sum()
            assert iou > 0.8 and d["scores"][i] > 0.8
