"""Starting from pretrained weights (transfer.py, train --init), offline: random-weight torchvision `resnet18`,
`resnet50` and `maskrcnn_resnet50_fpn` state_dicts, saved here and served by a local HTTP server under torch.hub
names carrying their real SHA-256 prefixes, reached through $MINIMASKRCNN_MIRROR as if it mirrored
download.pytorch.org. Covered: every source (imagenet, coco, none, a torchvision .pth, a minimaskrcnn checkpoint),
the report, the rows carried by name against torchvision's own rows, frozen stages (no gradient, BatchNorm
statistics unchanged in train mode), the refusals, and a resumed run that never downloads (server stopped)."""
import dataclasses
import hashlib
import shutil
import warnings

import pytest
import torch
import torchvision
from torch import nn

from minimaskrcnn import cli, config, pretrained, training, transfer
from minimaskrcnn.checkpoint import read_checkpoint, save_checkpoint
from minimaskrcnn.convert import convert_torchvision_maskrcnn
from minimaskrcnn.data import ShapesDataset
from minimaskrcnn.data.download import DownloadError
from minimaskrcnn.model import MaskRCNN
from minimaskrcnn.training.config import build_model_config, init_of, trainable_layers_of
from test_pretrained import FileServer

DATASET = ["dog", "person", "unicorn"]  # COCO's labels 18 and 1, and one COCO has not
TV_LABEL = {"dog": 18, "person": 1}


def randomized(module: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine maps, so that copying them is visible."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, b in module.named_buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
    return module


def hub_name(folder, stem: str, state: dict) -> str:
    """Save `state` as <stem>-<first 8 hex digits of its SHA-256>.pth, torch.hub's naming; the name."""
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    name = f"{stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(folder / name)
    return name


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, folder, {"r18", "r50", "coco": file name}, {same: torchvision state_dict})."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    states = {"r18": randomized(torchvision.models.resnet18()).state_dict(),
              "r50": randomized(torchvision.models.resnet50()).state_dict(),
              "coco": randomized(torchvision.models.detection.maskrcnn_resnet50_fpn(
                  weights=None, weights_backbone=None, num_classes=91)).state_dict()}
    names = {key: hub_name(folder, stem, states[key]) for key, stem in
             (("r18", "resnet18"), ("r50", "resnet50"), ("coco", "maskrcnn_resnet50_fpn_coco"))}
    server = FileServer(folder)
    yield server, folder, names, states
    server.httpd.shutdown()
    server.httpd.server_close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hub(served, tmp_path, monkeypatch):
    """The served files as download.pytorch.org's, reached through the mirror, with a fresh cache."""
    server, _, names, _ = served
    official = "https://download.pytorch.org/models/"
    monkeypatch.setenv(pretrained.MIRROR_ENV, server.url)
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "IMAGENET_URLS", {18: official + names["r18"], 50: official + names["r50"]})
    monkeypatch.setattr(pretrained, "COCO_WEIGHTS_URL", official + names["coco"])
    yield server
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def small_r18(num_classes=4, anchors=None, **backbone):
    """cpu_small's model on a ResNet-18 of ImageNet's width (stem 64), so that torchvision's resnet18 fits."""
    cfg = config.cpu_small(num_classes)
    return dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, stem_channels=64, **backbone),
                               anchors=anchors or cfg.anchors, transform=config.TransformConfig(64, 64))


def state_copy(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_imagenet_loads_the_resnet_only_through_the_mirror_and_the_cache(served, hub):
    _, _, names, states = served
    model = MaskRCNN(config.r50_fpn(4))
    before = state_copy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind, "skipped incompatible shapes" least of all
        report = transfer.load_into(model, "imagenet", DATASET, progress=False)
    assert hub.log[-1] == "/" + names["r50"]  # fetched from the mirror, under torchvision's file name
    after = model.state_dict()
    body = {k: v for k, v in states["r50"].items() if not k.startswith("fc.") and "num_batches" not in k}
    for k, v in body.items():
        assert torch.equal(after["backbone.body." + k], v), k
    outside = [k for k in after if not k.startswith("backbone.body.")]
    assert all(torch.equal(after[k], before[k]) for k in outside)  # FPN and heads keep their fresh init
    assert report.source == f"imagenet ({names['r50']})" and report.checksum == names["r50"][9:17]
    assert sorted(report.loaded) == sorted("backbone.body." + k for k in body)
    assert sorted(report.fresh) == sorted(k for k in outside if "num_batches" not in k)
    assert report.fresh_modules == ["backbone.fpn", "rpn", "roi_heads"]
    assert (report.carried, report.frozen) == ([], ["stem", "layer1"])
    assert str(report) == (f"init: imagenet ({names['r50']}), sha256 {names['r50'][9:17]}: {len(report.loaded)} "
                           f"tensors loaded, {len(report.fresh)} initialized afresh\n"
                           "  afresh: backbone.fpn, rpn, roi_heads\n  frozen: stem, layer1")
    n = len(hub.log)
    transfer.load_into(MaskRCNN(config.r50_fpn(4)), "imagenet", progress=False)
    assert len(hub.log) == n  # the cached, re-verified file

    c4 = MaskRCNN(config.r50_c4(4))  # C4: layer4 (res5) is the RoI head
    report = transfer.load_into(c4, "imagenet", progress=False)
    assert torch.equal(c4.roi_heads.box_head.res5[2].conv3.weight, states["r50"]["layer4.2.conv3.weight"])
    assert torch.equal(c4.backbone.body.layer3[5].bn2.running_var, states["r50"]["layer3.5.bn2.running_var"])
    assert report.fresh_modules == ["rpn", "roi_heads.box_predictor", "roi_heads.mask_predictor"]


def test_coco_carries_the_rows_of_the_categories_coco_has(served, hub):
    _, _, names, states = served
    tv = states["coco"]
    model = MaskRCNN(config.r50_fpn(len(DATASET) + 1))
    before = state_copy(model)
    report = transfer.load_into(model, "coco", DATASET, progress=False)
    sd = model.state_dict()
    rows = {0: 0, 1: TV_LABEL["dog"], 2: TV_LABEL["person"]}  # our label -> torchvision's (COCO's) label
    for ours, theirs in rows.items():
        for name, per_class in (("box_predictor.cls_score", 1), ("box_predictor.bbox_pred", 4),
                                ("mask_predictor.mask_fcn_logits", 1)):
            for part in ("weight", "bias"):
                key = f"roi_heads.{name}.{part}"
                assert torch.equal(sd[key][ours * per_class:(ours + 1) * per_class],
                                   tv[key][theirs * per_class:(theirs + 1) * per_class]), (key, ours)
    for key in report.fresh:  # the unicorn keeps the model's own fresh initialization
        per_class = sd[key].shape[0] // 4
        assert torch.equal(sd[key][3 * per_class:], before[key][3 * per_class:])
    converted = convert_torchvision_maskrcnn(tv)
    for key in report.loaded:
        assert torch.equal(sd[key], converted[key]), key
    class_tensors = [f"roi_heads.{m}.{p}" for m in ("box_predictor.cls_score", "box_predictor.bbox_pred",
                                                    "mask_predictor.mask_fcn_logits") for p in ("weight", "bias")]
    assert sorted(report.fresh) == sorted(class_tensors)
    assert len(report.loaded) + len(report.fresh) == len([k for k in sd if "num_batches" not in k])
    assert report.carried == ["dog", "person"] and report.checksum == names["coco"][-12:-4]
    assert str(report).splitlines()[1:] == [
        "  afresh: roi_heads.box_predictor, roi_heads.mask_predictor.mask_fcn_logits",
        "  categories carried by name: dog, person (and the background)", "  frozen: stem, layer1"]

    # the same in one call, the model made for the categories; COCO's eps (0) for its frozen BatchNorm
    coco = transfer.coco_maskrcnn(DATASET, progress=False)
    assert coco.model.training and coco.model.config.backbone.frozen_bn_eps == 0.0
    assert coco.class_names == ["background", *DATASET] and coco.report.carried == ["dog", "person"]
    assert coco.report.source == f"coco ({names['coco']})"
    got = coco.model.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in report.loaded)
    carried_rows = "roi_heads.box_predictor.bbox_pred.weight"
    assert torch.equal(got[carried_rows][:12], sd[carried_rows][:12])  # background, dog, person
    assert transfer.coco_maskrcnn(num_classes=3, progress=False).report.carried == []


def test_torchvision_pth_files_by_their_keys(served):
    _, folder, names, states = served
    full = MaskRCNN(config.r50_fpn(91))
    report = transfer.load_into(full, str(folder / names["coco"]))  # 91 classes: COCO's, every row loaded
    assert report.fresh == [] and report.carried == []
    reference = pretrained.load_torchvision_weights(folder / names["coco"]).model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in full.state_dict().items())
    assert report.checksum == hashlib.sha256((folder / names["coco"]).read_bytes()).hexdigest()

    kp = MaskRCNN(config.keypoint_r50_fpn())  # another head: what the keypoint model has and COCO's has not
    report = transfer.load_into(kp, str(folder / names["coco"]))
    assert report.fresh_modules == ["roi_heads.box_predictor", "roi_heads.keypoint_head",
                                    "roi_heads.keypoint_predictor"]

    small = MaskRCNN(small_r18())
    report = transfer.load_into(small, str(folder / names["r18"]))
    assert torch.equal(small.backbone.body.layer4[1].conv2.weight, states["r18"]["layer4.1.conv2.weight"])
    assert report.frozen == [] and report.fresh_modules == ["backbone.fpn", "rpn", "roi_heads"]  # cpu_small: 5


def test_a_checkpoint_of_other_keypoint_types_and_classes(tmp_path):
    """Our own checkpoint: rows carried by its stored class names; the keypoint predictor (one channel per keypoint
    type) starts afresh for another number of types, the keypoint convs are loaded."""
    torch.manual_seed(0)
    source = MaskRCNN(config.cpu_small_keypoints(4))
    save_checkpoint(tmp_path / "kp.pt", {"model": source.state_dict(), "model_config": config.to_dict(source.config),
                                        "class_names": ["background", "square", "circle", "triangle"]})
    cfg = config.cpu_small_keypoints(3)
    target = MaskRCNN(dataclasses.replace(cfg, roi_heads=dataclasses.replace(cfg.roi_heads, num_keypoints=5)))
    report = transfer.load_into(target, str(tmp_path / "kp.pt"), ["triangle", "star"])
    assert report.carried == ["triangle"] and report.checksum == read_checkpoint(tmp_path / "kp.pt")["checksum"]
    assert report.fresh_modules == ["roi_heads.box_predictor", "roi_heads.mask_predictor.mask_fcn_logits",
                                    "roi_heads.keypoint_predictor"]
    theirs, ours = source.state_dict(), target.state_dict()
    assert torch.equal(ours["roi_heads.box_predictor.bbox_pred.weight"][4:8],
                       theirs["roi_heads.box_predictor.bbox_pred.weight"][12:16])  # triangle: label 3 -> 1
    assert torch.equal(ours["roi_heads.keypoint_head.convs.3.weight"], theirs["roi_heads.keypoint_head.convs.3.weight"])


def test_frozen_stages_get_no_gradient_and_keep_their_batchnorm_statistics():
    torch.manual_seed(0)
    model = MaskRCNN(small_r18(trainable_layers=3)).train()  # norm "bn": BatchNorm that trains
    assert transfer.load_into(model, "none").frozen == ["stem", "layer1"]
    body = model.backbone.body
    before = state_copy(model)
    data = ShapesDataset(2, image_size=64, seed=0)
    images, targets = zip(*[data[i] for i in range(2)])
    sum(model(list(images), list(targets)).losses.values()).backward()
    for name, p in body.named_parameters():
        frozen = name.startswith(("conv1.", "bn1.", "layer1."))
        assert (p.grad is None) == frozen and p.requires_grad != frozen, name
    after = model.state_dict()
    for name in ("bn1.running_mean", "layer1.0.bn2.running_var", "layer1.1.bn1.running_mean"):
        assert torch.equal(after["backbone.body." + name], before["backbone.body." + name])  # eval mode kept
    assert not torch.equal(after["backbone.body.layer2.0.bn1.running_mean"],
                           before["backbone.body.layer2.0.bn1.running_mean"])  # a training stage's moved
    assert not body.bn1.training and not body.layer1.training and body.layer2.training
    model.eval().train()
    assert not body.layer1[0].bn1.training and body.layer2[0].bn1.training

    c4 = MaskRCNN(small_r18(anchors=config.AnchorConfig(sizes=((16, 32, 64),)), variant="c4", trainable_layers=0))
    c4.train()
    assert transfer.load_into(c4, "none").frozen == ["stem", "layer1", "layer2", "layer3", "res5"]
    assert not c4.roi_heads.box_head.res5.training and not any(p.requires_grad for p in c4.backbone.parameters())


def test_refusals_name_the_problem_and_change_nothing(served, hub, tmp_path, monkeypatch):
    _, folder, names, _ = served
    r101 = MaskRCNN(dataclasses.replace(config.r50_fpn(4), backbone=config.BackboneConfig(depth=101)))
    before = state_copy(r101)
    with pytest.raises(ValueError, match=r"^init .*resnet50-.*\.pth is another architecture than this model: "
                                         r"backbone.depth 50 != 101 \(source != model\); choose"):
        transfer.load_into(r101, str(folder / names["r50"]))
    assert all(torch.equal(v, before[k]) for k, v in r101.state_dict().items())  # nothing half-loaded
    with pytest.raises(ValueError, match=r"backbone.variant 'fpn' != 'c4'"):
        transfer.load_into(MaskRCNN(config.r50_c4(4)), str(folder / names["coco"]))
    with pytest.raises(ValueError, match=r"^init imagenet \(resnet18-.*\) is another architecture than this model: "
                                         r"backbone.stem_channels 64 != 16 \(source"):  # cpu_small: a narrow ResNet-18
        transfer.load_into(MaskRCNN(config.cpu_small()), "imagenet", progress=False)
    monkeypatch.delitem(pretrained.IMAGENET_URLS, 18)  # as torchvision's detection models: ResNet-50 and -101 only
    with pytest.raises(ValueError, match=r"^init imagenet: .* ResNet-50 and ResNet-101; this model has "
                                         r"backbone.depth 18"):
        transfer.load_into(MaskRCNN(config.cpu_small()), "imagenet")
    with pytest.raises(ValueError, match=r"duplicate category names \['Dog '\]"):
        transfer.load_into(MaskRCNN(config.r50_fpn(4)), "coco", ["dog", "Dog ", "cat"])
    with pytest.raises(ValueError, match=r"^2 categories for a model of 4 classes"):
        transfer.load_into(MaskRCNN(config.r50_fpn(4)), "coco", ["dog", "cat"])
    with pytest.raises(FileNotFoundError, match=r"init nowhere.pt: no such file"):
        transfer.load_into(MaskRCNN(config.r50_fpn(4)), "nowhere.pt")

    # a corrupt (here truncated) download is discarded; a file whose bytes do not match its name is refused
    good = (folder / names["r50"]).read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / names["r50"]).write_bytes(good[: len(good) // 2])
    server = FileServer(cut)
    try:
        monkeypatch.setenv(pretrained.MIRROR_ENV, server.url)
        with pytest.raises(ValueError, match=r"checksum mismatch for resnet50-.*: sha256 [0-9a-f]{64}, expected "):
            transfer.load_into(MaskRCNN(config.r50_fpn(4)), "imagenet", progress=False)
        assert not pretrained.is_cached(pretrained.IMAGENET_URLS[50]) and list(pretrained.cache_dir().glob("*.corrupt"))
        (cut / names["coco"]).write_bytes(good[: len(good) // 2])  # --init coco: not COCO's file
        with pytest.raises(ValueError, match=r"checksum mismatch for maskrcnn_resnet50_fpn_coco-"):
            transfer.load_into(MaskRCNN(config.r50_fpn(4)), "coco", DATASET, progress=False)
        assert not pretrained.is_cached(pretrained.COCO_WEIGHTS_URL)
        (cut / names["r50"]).unlink()
        with pytest.raises(DownloadError, match=r"^cannot download .*: HTTP 404"):
            transfer.load_into(MaskRCNN(config.r50_fpn(4)), "imagenet", progress=False)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def parse_train(*argv):
    return cli.train_config_from_args(cli.build_parser().parse_args(["train", *argv]))


def test_train_flags_defaults_and_refusals(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIMASKRCNN_COCO", str(tmp_path / "coco"))
    paper = parse_train("--config", "r50_fpn")  # the paper's recipe: ImageNet, 3 stages train
    assert (paper.init, init_of(paper), trainable_layers_of(paper)) == (None, "imagenet", 3)
    assert build_model_config(paper, 81).backbone.trainable_layers == 3
    shapes = parse_train("--data", "shapes")
    assert (init_of(shapes), trainable_layers_of(shapes)) == ("none", 5)
    coco = parse_train("--init", "coco", "--trainable-layers", "0")
    backbone = build_model_config(coco, 3).backbone
    assert (backbone.trainable_layers, backbone.frozen_bn_eps) == (0, 0.0)
    assert init_of(parse_train("--config", "keypoint_r50_fpn")) == "imagenet"
    for argv, message in [
        (["--trainable-layers", "7"], "--trainable-layers must be 0..5, the ResNet's stages that train"),
        (["--config", "r50_fpn", "--init", "none"], "--init none with norm frozen_bn: frozen BatchNorm on random "
                                                    "weights is the identity .* use --init imagenet"),
        (["--data", "shapes", "--trainable-layers", "3"], "--init none with --trainable-layers 3: the frozen stages "
                                                          "would keep their random weights; use --init imagenet"),
        (["--resume", str(tmp_path / "last.pt"), "--init", "coco"], "--init and --resume do not go together"),
        (["--resume", str(tmp_path / "last.pt"), "--trainable-layers", "2"], "--trainable-layers and --resume"),
    ]:
        assert cli.main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert __import__("re").search(message, err), err


def test_init_from_a_checkpoint_and_resume_without_the_network(served, hub, tmp_path, capsys, monkeypatch):
    """cpu_small trained 2 steps (init none); a run started from its last.pt; a run from 'ImageNet' (the served
    resnet18) on a 64-channel-stem cpu_small, resumed with the server stopped: no request, no error."""
    names = served[2]
    small = ["--data", "shapes", "--num-images", "4", "--num-val-images", "0", "--image-size", "64", "--min-size", "64",
             "--max-size", "64", "--batch-size", "2", "--no-progress"]
    assert cli.main(["train", *small, "--iters", "2", "--out", str(tmp_path / "a")]) == 0
    assert "init: none: 0 tensors loaded" in capsys.readouterr().out
    first = torch.load(tmp_path / "a" / "last.pt")
    assert first["init"]["source"] == "none"

    assert cli.main(["train", *small, "--iters", "2", "--out", str(tmp_path / "b"), "--init",
                     str(tmp_path / "a" / "last.pt"), "--trainable-layers", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("init: ") == 1 and "0 initialized afresh" in out
    assert "categories carried by name: square, circle, triangle" in out
    second = torch.load(tmp_path / "b" / "last.pt")
    assert second["init"]["source"] == str(tmp_path / "a" / "last.pt")
    assert second["init"]["checksum"] == first["checksum"]
    model = MaskRCNN(config.cpu_small(4))  # what the run started from: A's weights, every tensor
    transfer.load_into(model, str(tmp_path / "a" / "last.pt"))
    assert all(torch.equal(v, first["model"][k]) for k, v in model.state_dict().items())

    server = FileServer(served[1])  # a server of its own, to stop
    monkeypatch.setenv(pretrained.MIRROR_ENV, server.url)
    cfg = training.TrainConfig(init="imagenet", data=training.RunData.shapes(4, 0, 64), iters=3, stop_at=2,
                               batch_size=2, out=str(tmp_path / "c"), progress=False, optimizer="adamw")
    try:
        assert training.train(cfg, model_config=small_r18()).step == 2
        assert server.log == ["/" + names["r18"]] and capsys.readouterr().out.count("init: imagenet") == 1
    finally:
        server.httpd.shutdown()  # no network from here on
        server.httpd.server_close()
    assert torch.load(tmp_path / "c" / "last.pt")["init"]["checksum"] == names["r18"][9:17]
    shutil.rmtree(pretrained.cache_dir())  # not even the cache: a resumed run reads its checkpoint only
    resumed = training.train(training.resume_config(tmp_path / "c" / "last.pt"), model_config=small_r18())
    assert resumed.step == 3 and server.log == ["/" + names["r18"]] and "init:" not in capsys.readouterr().out
    assert torch.load(tmp_path / "c" / "last.pt")["init"]["checksum"] == names["r18"][9:17]
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "c" / "last.pt"), "--data", "shapes",
                     "--num-images", "2"]) == 0  # evaluate neither
    assert server.log == ["/" + names["r18"]] and "results:" in capsys.readouterr().out
