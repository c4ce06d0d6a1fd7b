"""torchvision's COCO weights in one call, offline: a torchvision-format checkpoint saved here (random weights,
randomized BatchNorm statistics), named like torchvision's with its real SHA-256 prefix and served by a local
HTTP server on 127.0.0.1. Covered: the download and its checksum, reuse of the cache without a request, a
mismatch and a corrupt cached file, the conversion (our model's detections equal torchvision's model run with
frozen-BN eps 0, as torchvision runs its COCO weights), the class names, and `predict --weights coco` through
the CLI, on a folder with a corrupt image in it.

The checkpoint is ~170 MB: it is saved once per module. Images are 128x160 (min_size 128) to keep this fast."""
import hashlib
import http.server
import json
import re
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from minimaskrcnn import cli, pretrained
from minimaskrcnn.data.download import DownloadError
from minimaskrcnn.resnet import FrozenBatchNorm2d
from test_torchvision_equivalence import randomize as randomize_for_equivalence

import local_http

SIZES = dict(min_size=128, max_size=160)
DETECTIONS = 10


def randomize(tv: nn.Module) -> nn.Module:
    """The equivalence test's randomization (non-trivial BN statistics, RPN and classifier spread), plus a few
    stem channels of small variance, where eps 1e-5 instead of 0 changes the output."""
    tv = randomize_for_equivalence(tv)
    with torch.no_grad():
        tv.backbone.body.bn1.running_var[:16] = 1e-4
    return tv


class FileServer:
    """http.server on 127.0.0.1:<free port> serving a folder, with a log of the paths asked for."""

    def __init__(self, folder):
        self.log = []
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                owner.log.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd, self.url = local_http.start(Handler)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, URL of the checkpoint, its SHA-256, the torchvision model it holds, in eval mode)."""
    torch.manual_seed(0)
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                                            box_detections_per_img=DETECTIONS, **SIZES)
    tv = randomize(tv).eval()
    folder = tmp_path_factory.mktemp("models")
    name, sha = save_as_hub_file(folder, tv.state_dict(), "maskrcnn_resnet50_fpn_coco")
    wrong = format((int(sha[:8], 16) + 1) % 16 ** 8, "08x")
    (folder / f"maskrcnn_resnet50_fpn_coco-{wrong}.pth").symlink_to(folder / name)  # same bytes, wrong name
    server = FileServer(folder)
    yield server, f"{server.url}/{name}", sha, tv
    stop_serving(server, folder)


def save_as_hub_file(folder, state: dict, stem: str) -> tuple[str, str]:
    """Save `state` in `folder` under torchvision's kind of name, "<stem>-<first 8 digits of its SHA-256>.pth":
    (the file name, the SHA-256)."""
    tmp = folder / "checkpoint.pth"
    torch.save(state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"{stem}-{sha[:8]}.pth"
    tmp.rename(folder / name)
    return name, sha


def stop_serving(server, folder) -> None:
    server.httpd.shutdown()
    server.httpd.server_close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    yield tmp_path / "cache"
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)  # 170 MB a copy: pytest keeps its last 3 runs' folders


def test_cache_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(pretrained.CACHE_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub's folder follows $TORCH_HOME
    assert pretrained.cache_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "env"))
    assert pretrained.cache_dir() == tmp_path / "env"
    assert pretrained.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert pretrained.weights_path() == tmp_path / "env" / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    assert pretrained.COCO_WEIGHTS_URL == "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    assert pretrained.hash_prefix(pretrained.COCO_WEIGHTS_URL) == "bf2d0c1e"
    with pytest.raises(ValueError, match="does not end in '-<first 8"):
        pretrained.hash_prefix("http://x/model.pth")


def test_download_checksum_and_cache_reuse(served, cache):
    server, url, sha, _ = served
    assert not pretrained.is_cached(url)
    n = len(server.log)
    path = pretrained.download_weights(url, progress=False)
    assert path == cache / url.rsplit("/", 1)[1] and pretrained.is_cached(url)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha and len(server.log) == n + 1
    assert pretrained.download_weights(url, progress=False) == path and len(server.log) == n + 1  # no request

    data = path.read_bytes()
    path.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])  # one bit of the cached file flips
    with pytest.raises(ValueError, match=rf"cached weights {path} are corrupt: sha256 [0-9a-f]{{64}}, expected "
                                         rf"{sha[:8]}\.\.\..*run again to download afresh"):
        pretrained.download_weights(url, progress=False)
    assert not path.exists() and len(server.log) == n + 1  # moved aside, not loaded
    assert pretrained.download_weights(url, progress=False) == path and len(server.log) == n + 2


def test_a_file_that_does_not_match_its_name_is_refused(served, cache):
    server, url, sha, _ = served
    wrong = url[:-len("12345678.pth")] + format((int(sha[:8], 16) + 1) % 16 ** 8, "08x") + ".pth"
    with pytest.raises(ValueError, match=rf"checksum mismatch for .* from {re.escape(wrong)}: sha256 {sha}, expected "
                                         rf"{wrong[-12:-4]};"):
        pretrained.coco_maskrcnn(url=wrong, progress=False)
    assert not pretrained.is_cached(wrong) and list(cache.glob("*.corrupt"))
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        pretrained.download_weights(f"{server.url}/missing-0123abcd.pth", progress=False)
    (cache / "file").write_text("a file where a folder should be")
    with pytest.raises(DownloadError, match=rf"cannot download {re.escape(url)} into {cache / 'file' / 'sub'}: "
                                            rf"Not a directory; choose another folder"):
        pretrained.download_weights(url, cache / "file" / "sub", progress=False)


def test_conversion_gives_torchvisions_detections(served, cache):
    _, url, _, tv = served
    coco = pretrained.coco_maskrcnn(url=url, progress=False, transform=SIZES,
                                    roi_heads={"detections_per_img": DETECTIONS})
    model = coco.model
    assert not model.training and model.config.backbone.frozen_bn_eps == 0.0
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 53 and all(m.eps == 0.0 for m in frozen)  # stem + 16 bottlenecks x 3 (+4 downsample)

    image = torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(1))
    ref, ours = detections_at_eps_0(tv, model, image)
    with torch.no_grad():
        with_eps = tv([image])[0]
    assert len(ref["boxes"]) == len(ours["boxes"]) == DETECTIONS
    for key in ("boxes", "labels", "scores"):
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-4)
    # pasted into the image by two implementations of the interpolation: a few pixels differ in the 4th digit
    torch.testing.assert_close(ours["masks"], ref["masks"][:, 0], rtol=0, atol=1e-3)  # (D, 1, H, W) there
    assert (ours["masks"] >= 0.5).sum() > 1000  # masks that are not empty, so the comparison means something
    assert (with_eps["scores"] - ref["scores"]).abs().max() > 1e-3  # so eps 1e-5 would have been noticed


def detections_at_eps_0(tv, model, image) -> tuple[dict, dict]:
    """(torchvision's detections with its BatchNorm at eps 0, as it runs COCO_V1 weights (`overwrite_eps`), ours)."""
    bns = [m for m in tv.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        for m in bns:
            m.eps = 0.0
        with torch.no_grad():
            return tv([image])[0], model([image]).detections[0]
    finally:
        for m in bns:
            m.eps = 1e-5


def test_class_names_are_cocos():
    """Our table against torchvision's and against the COCO 2017 category list it is indexed by."""
    weights = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1
    assert pretrained.COCO_CLASS_NAMES == weights.meta["categories"]
    ids = [i for i, n in enumerate(pretrained.COCO_CLASS_NAMES) if n not in ("N/A", "__background__")]
    assert len(ids) == 80 and ids[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13] and ids[-1] == 90
    missing = [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]  # the ids COCO 2017 does not use
    assert sorted(set(range(1, 91)) - set(ids)) == missing


def test_result_names_and_category_ids(served, cache):
    _, url, _, _ = served
    coco = pretrained.coco_maskrcnn(url=url, progress=False, transform=SIZES)
    assert len(coco.class_names) == 91 and coco.class_names[18] == "dog" and coco.class_names[12] == "N/A"
    assert len(coco.categories) == 80 and coco.categories[:3] == ["person", "bicycle", "car"]
    assert coco.label_to_cat_id[90] == 90 and 12 not in coco.label_to_cat_id and len(coco.label_to_cat_id) == 80
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['min_sise'\] in config section 'transform'"):
        pretrained.coco_maskrcnn(url=url, progress=False, transform={"min_sise": 128})


def test_predict_with_coco_weights_on_a_folder(served, cache, tmp_path, monkeypatch, capsys):
    _, url, _, _ = served
    monkeypatch.setattr(pretrained, "COCO_WEIGHTS_URL", url)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)).save(photos / "a.jpg")
    (photos / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    assert cli.main(["predict", "--weights", "coco", str(photos), "--out", str(out), "--score-thresh", "0.05",
                     "--min-size", "128", "--max-size", "160"]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {photos / 'b.png'}: cannot decode image file" in captured.err
    assert "1 image(s) predicted, 1 skipped" in captured.out
    listed = json.loads((out / "predictions.json").read_text())
    assert [entry["image"] for entry in listed] == [str(photos / "a.jpg"), str(photos / "b.png")]
    assert "cannot decode" in listed[1]["skipped"] and "detections" not in listed[1]
    labels = {d["label"] for d in listed[0]["detections"]}
    assert labels <= set(pretrained.COCO_CLASS_NAMES[1:])  # names, not numbers
    assert labels & {"person", "bicycle", "car", "motorcycle", "airplane", "bus"}  # the classes lifted above
    assert Image.open(out / "a_pred.png").size == (160, 128)
