"""Backbone tests: our ResNet / FPN against torchvision's (the independent reference), loaded through
convert.py, plus shapes, strides, norms, freezing and odd input sizes."""
import dataclasses

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozenBN

from minimaskrcnn.config import BackboneConfig, cpu_small, r50_c4
from minimaskrcnn.convert import (convert_torchvision_fpn_backbone, convert_torchvision_resnet,
                                  convert_torchvision_resnet_c4, load_state_dict_strict)
from minimaskrcnn.fpn import FPN
from minimaskrcnn.resnet import FrozenBatchNorm2d, ResNet, build_backbone, build_res5_head

TOL = dict(rtol=1e-4, atol=1e-4)


def ceil(a: int, b: int) -> int:
    return -(-a // b)


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so a wrong eps, a swapped mean/var or a
    missing norm layer shows up (fresh BN is the identity in eval mode)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, TVFrozenBN)):
                c = m.running_mean.shape[0]
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model


def torchvision_stages(tv: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """C2..C5 of a torchvision ResNet, written out from its public modules."""
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    out = []
    for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
        x = layer(x)
        out.append(x)
    return out


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_resnet_matches_torchvision(depth):
    torch.manual_seed(0)
    tv = randomize_norms(getattr(torchvision.models, f"resnet{depth}")(weights=None)).eval()
    ours = ResNet(depth, norm="frozen_bn").eval()
    load_state_dict_strict(ours, convert_torchvision_resnet(tv.state_dict()), "torchvision resnet")
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected, got = torchvision_stages(tv, x), ours(x)
    assert list(got) == ["c2", "c3", "c4", "c5"]
    for (name, y), ref, stride in zip(got.items(), expected, (4, 8, 16, 32)):
        width = {18: 1, 34: 1, 50: 4, 101: 4}[depth] * 64 * stride // 4
        assert y.shape == (2, width, 64 // stride, 96 // stride) == ref.shape
        assert ours.channels[name] == width and ours.strides[name] == stride
        torch.testing.assert_close(y, ref, **TOL)


def test_frozen_bn_matches_torchvision_and_ignores_step_counter():
    bn = randomize_norms(nn.BatchNorm2d(8)).eval()
    ours = FrozenBatchNorm2d(8)
    load_state_dict_strict(ours, bn.state_dict())  # has num_batches_tracked
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(ours(x), bn(x))
    assert [n for n, _ in ours.named_parameters()] == []  # nothing to train
    assert sorted(ours.state_dict()) == ["bias", "running_mean", "running_var", "weight"]


@pytest.mark.parametrize("variant, count", [("fpn", 20), ("c4", 15)])
def test_frozen_bn_eps_of_the_config_reaches_every_layer(variant, count):
    # torchvision runs its COCO weights with eps 0 (overwrite_eps); the config carries that choice.
    # ResNet-18's norms: stem 1, then 2 blocks x 2 per stage and a shortcut in stages 3-5 (C4: stages 2-4).
    cfg = BackboneConfig(depth=18, variant=variant, frozen_bn_eps=0.0)
    body = [m for m in build_backbone(cfg).modules() if isinstance(m, FrozenBatchNorm2d)]
    res5 = [m for m in build_res5_head(cfg).modules() if isinstance(m, FrozenBatchNorm2d)]
    assert (len(body), len(res5)) == (count, 5)
    assert {m.eps for m in body + res5} == {0.0}
    bn = randomize_norms(nn.BatchNorm2d(8)).eval()
    bn.running_var[0] = 1e-5  # a near-constant channel, where eps decides the scale: 1 / sqrt(1e-5 + eps)
    reference = TVFrozenBN(8, eps=0.0)
    reference.load_state_dict({k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"})
    ours = FrozenBatchNorm2d(8)
    load_state_dict_strict(ours, bn.state_dict())
    ours.eps = body[0].eps
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(ours(x), reference(x))
    ours.eps = 1e-5  # the default: that channel comes out sqrt(2) times smaller
    torch.testing.assert_close(ours(x)[:, 0] - bn.bias[0], (reference(x)[:, 0] - bn.bias[0]) / 2 ** 0.5)
    with pytest.raises(ValueError, match="frozen_bn_eps"):
        build_backbone(BackboneConfig(depth=18, frozen_bn_eps=-1.0))


def test_frozen_bn_keeps_autocast_dtype():
    # Under autocast the convs give bf16 maps; float32 buffers must not promote them back to float32.
    bn = randomize_norms(nn.BatchNorm2d(8)).eval()
    ours = FrozenBatchNorm2d(8)
    load_state_dict_strict(ours, bn.state_dict())
    x = torch.randn(2, 8, 5, 7).bfloat16()
    assert ours(x).dtype == torch.bfloat16
    torch.testing.assert_close(ours(x).float(), bn(x.float()), rtol=2e-2, atol=2e-2)


def test_fpn_backbone_matches_torchvision_maskrcnn():
    torch.manual_seed(0)
    # weights=None builds plain BatchNorm2d with all layers trainable; in eval mode it equals frozen BN.
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    tv = randomize_norms(tv.backbone).eval()
    ours = build_backbone(BackboneConfig()).eval()
    sd = convert_torchvision_fpn_backbone({"backbone." + k: v for k, v in tv.state_dict().items()})
    load_state_dict_strict(ours, sd, "maskrcnn_resnet50_fpn backbone")
    for h, w in [(64, 96), (71, 101)]:  # the second is not a multiple of 32: odd maps in the top-down path
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            expected, got = tv(x), ours(x)
        assert list(got) == ["p2", "p3", "p4", "p5", "p6"] and ours.out_channels == 256
        for (name, y), ref in zip(got.items(), expected.values()):
            s = ours.strides[name]  # each stride-2 step rounds up: ceil(ceil(h / 32) / 2) for p6
            size = (ceil(h, s), ceil(w, s)) if name != "p6" else (ceil(ceil(h, 32), 2), ceil(ceil(w, 32), 2))
            assert y.shape == (2, 256, *size) == ref.shape, name
            torch.testing.assert_close(y, ref, **TOL)
    assert ours.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def test_fpn_backbone_with_frozen_bn_as_pretrained_torchvision():
    # Built as torchvision does for pretrained weights: FrozenBatchNorm2d in the body, 3 stages trainable.
    torch.manual_seed(1)
    tv = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=TVFrozenBN)
    tv = randomize_norms(tv).eval()
    ours = build_backbone(BackboneConfig(depth=18)).eval()
    load_state_dict_strict(ours, convert_torchvision_fpn_backbone(tv.state_dict(), prefix=""))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for y, ref in zip(ours(x).values(), tv(x).values()):
            torch.testing.assert_close(y, ref, **TOL)


@pytest.mark.parametrize("trainable_layers", range(6))
def test_trainable_layers_freeze_like_torchvision(trainable_layers):
    tv = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                             trainable_layers=trainable_layers)
    ours = build_backbone(BackboneConfig(depth=18, norm="bn", trainable_layers=trainable_layers))
    expected = {k: p.requires_grad for k, p in convert_torchvision_fpn_backbone(
        dict(tv.named_parameters()), prefix="").items()}
    got = {k: p.requires_grad for k, p in ours.named_parameters()}
    assert got == expected
    assert any(v for k, v in got.items() if k.startswith("fpn."))  # the FPN always trains
    assert all(got[k] == (trainable_layers == 5) for k in ("body.conv1.weight", "body.bn1.weight"))


def test_c4_backbone_and_res5_head_match_torchvision():
    torch.manual_seed(0)
    tv = randomize_norms(torchvision.models.resnet50(weights=None)).eval()
    cfg = r50_c4().backbone
    backbone, head = build_backbone(cfg).eval(), build_res5_head(cfg).eval()
    backbone_sd, head_sd = convert_torchvision_resnet_c4(tv.state_dict())
    load_state_dict_strict(backbone, backbone_sd)
    load_state_dict_strict(head, head_sd)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        _, _, c4, c5 = torchvision_stages(tv, x)
        feats = backbone(x)
        assert list(feats) == ["c4"] and backbone.strides == {"c4": 16} and backbone.out_channels == 1024
        torch.testing.assert_close(feats["c4"], c4, **TOL)
        torch.testing.assert_close(head(feats["c4"]), c5, **TOL)
        rois = torch.randn(3, 1024, 14, 14)  # RoI features: 14x14 -> 7x7
        assert head(rois).shape == (3, 2048, 7, 7) and head.out_channels == 2048
    assert all(p.requires_grad for p in head.parameters())
    frozen = build_res5_head(dataclasses.replace(cfg, trainable_layers=0))
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_small_width_shapes(depth):
    cfg = BackboneConfig(depth=depth, norm="bn", stem_channels=16, fpn_channels=64)
    body = build_backbone(cfg).body
    expansion = 1 if depth < 50 else 4
    assert body.channels == {f"c{k}": 16 * 2 ** (k - 2) * expansion for k in (2, 3, 4, 5)}
    assert body.conv1.out_channels == 16
    c4 = build_backbone(dataclasses.replace(cfg, variant="c4"))
    assert c4(torch.randn(1, 3, 33, 47))["c4"].shape == (1, 64 * expansion, 3, 3)


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_trainable_norms_run_and_backprop(norm):
    torch.manual_seed(0)
    cfg = dataclasses.replace(cpu_small().backbone, norm=norm)
    model = build_backbone(cfg).train()
    out = model(torch.randn(2, 3, 70, 90))
    assert [tuple(v.shape) for v in out.values()] == [(2, 64, 18, 23), (2, 64, 9, 12), (2, 64, 5, 6),
                                                      (2, 64, 3, 3), (2, 64, 2, 2)]
    sum(v.square().mean() for v in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, {"bn": nn.BatchNorm2d, "gn": nn.GroupNorm}[norm]) for m in norms)
    if norm == "gn":  # 32 groups, fewer for narrow layers (>= 2 channels per group)
        assert {(m.num_channels, m.num_groups) for m in norms} == {(16, 8), (32, 16), (64, 32), (128, 32)}
    else:  # batch statistics are used and recorded in train mode
        assert model.body.bn1.num_batches_tracked == 1 and model.body.bn1.running_mean.abs().sum() > 0


def test_fpn_top_down_by_hand():
    """With identity-like 1x1 laterals, zero-centre 3x3 outputs, P_k = C_k + upsampled P_{k+1}."""
    fpn = FPN([1, 1, 1, 1], out_channels=1)
    with torch.no_grad():
        for lat, out in zip(fpn.lateral_convs, fpn.output_convs):
            lat.weight.fill_(1.0), lat.bias.zero_()
            out.weight.zero_(), out.weight[0, 0, 1, 1].fill_(1.0), out.bias.zero_()
    c = {f"c{k}": torch.arange(s * s2, dtype=torch.float32).view(1, 1, s, s2) * 10 ** (k - 2)
         for k, (s, s2) in zip((2, 3, 4, 5), [(5, 7), (3, 4), (2, 2), (1, 1)])}
    p = fpn(c)
    m5 = c["c5"]
    m4 = c["c4"] + m5.expand(1, 1, 2, 2)
    m3 = c["c3"] + m4[..., [0, 0, 1], :][..., [0, 0, 1, 1]]  # 2x nearest, cropped to 3x4
    m2 = c["c2"] + m3[..., [0, 0, 1, 1, 2], :][..., [0, 0, 1, 1, 2, 2, 3]]  # cropped to 5x7
    for got, want in zip(p.values(), [m2, m3, m4, m5, m5]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("field, value", [("depth", 42), ("variant", "c5"), ("norm", "syncbn"), ("trainable_layers", 6),
                                          ("stem_channels", 0), ("fpn_channels", -1)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        build_backbone(dataclasses.replace(BackboneConfig(), **{field: value}))


def test_strict_loader_reports_missing_unexpected_and_shapes():
    model = build_backbone(BackboneConfig(depth=18, stem_channels=16, fpn_channels=32))
    sd = dict(model.state_dict())
    del sd["fpn.lateral_convs.0.weight"]
    sd["fpn.inner_blocks.9.0.weight"] = torch.zeros(1)
    sd["body.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError) as err:
        load_state_dict_strict(model, sd, "my checkpoint")
    msg = str(err.value)
    assert "my checkpoint" in msg and "1 missing keys: fpn.lateral_convs.0.weight" in msg
    assert "1 unexpected keys: fpn.inner_blocks.9.0.weight" in msg
    assert "body.conv1.weight: got (3, 3, 3, 3), expected (16, 3, 7, 7)" in msg


def test_old_torchvision_fpn_keys_convert():
    # torchvision < 0.13 had no ".0" in inner_blocks; the heads' keys are not the backbone's business
    sd = {"backbone.fpn.inner_blocks.2.weight": torch.zeros(1),
          "backbone.fpn.layer_blocks.0.0.bias": torch.ones(1),
          "backbone.body.layer1.0.conv1.weight": torch.zeros(2),
          "rpn.head.conv.0.0.weight": torch.zeros(3)}
    assert sorted(convert_torchvision_fpn_backbone(sd)) == [
        "body.layer1.0.conv1.weight", "fpn.lateral_convs.2.weight", "fpn.output_convs.0.bias"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_autocast_matches_cpu():
    torch.manual_seed(0)
    model = randomize_norms(build_backbone(BackboneConfig(depth=18, fpn_channels=64))).eval()
    x = torch.randn(2, 3, 64, 96)
    # TF32 convs (PyTorch's default on Ampere and later) would differ from the CPU by ~1e-3
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref = model(x)
        model.cuda()
        got32 = model(x.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got16 = model(x.cuda())
            assert all(c.dtype == torch.bfloat16 for c in model.body(x.cuda()).values())
    for name in ref:
        torch.testing.assert_close(got32[name].cpu(), ref[name], rtol=1e-3, atol=1e-3)
        assert got16[name].dtype == torch.bfloat16
        err = (got16[name].float().cpu() - ref[name]).norm() / ref[name].norm()
        assert err < 0.05, (name, err)
