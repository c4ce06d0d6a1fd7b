"""pretrained.coco_keypointrcnn offline: a random-weight torchvision keypointrcnn_resnet50_fpn state_dict, named like
torchvision's COCO_V1 file with its real SHA-256 prefix, served by a local HTTP server (as tests/test_pretrained.py
does for the Mask R-CNN). Covered: the URL is torchvision's, the download is checked and cached, our converted
model's boxes and keypoints equal torchvision's model run with frozen-BN eps 0 (as torchvision runs COCO_V1) at
1e-4, the layout (names, skeleton, flip pairs, sigmas) is COCO's, and `predict --weights coco-keypoints` draws
the skeletons and lists the keypoints. The checkpoint is ~226 MB, saved once per module; images are 128x160."""
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pycocotools.cocoeval import COCOeval

from minimaskrcnn import cli, pretrained
from minimaskrcnn.data.keypoints import COCO_PERSON_KEYPOINTS
from test_pretrained import cache  # noqa: F401 (a fixture)
from test_pretrained import FileServer, detections_at_eps_0, save_as_hub_file, stop_serving
from test_torchvision_equivalence import randomize

SIZES = dict(min_size=128, max_size=160)
DETECTIONS = 5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, URL of the checkpoint, the torchvision model it holds, in eval mode)."""
    torch.manual_seed(0)
    tv = torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2,
                                                                num_keypoints=17, box_detections_per_img=DETECTIONS,
                                                                **SIZES)
    tv = randomize(tv, lifted=1).eval()  # the person above the score threshold
    with torch.no_grad():
        tv.backbone.body.bn1.running_var[:16] = 1e-4  # where eps 1e-5 instead of 0 shows (test_pretrained.py)
    folder = tmp_path_factory.mktemp("models")
    name, _ = save_as_hub_file(folder, tv.state_dict(), "keypointrcnn_resnet50_fpn_coco")
    server = FileServer(folder)
    yield server, f"{server.url}/{name}", tv
    stop_serving(server, folder)


def test_the_url_is_torchvisions_coco_v1():
    weights = torchvision.models.detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1
    assert pretrained.COCO_KEYPOINT_WEIGHTS_URL == weights.url
    assert pretrained.COCO_PERSON_CLASS_NAMES == [n if n != "no person" else "__background__"
                                                  for n in weights.meta["categories"]]
    assert tuple(weights.meta["keypoint_names"]) == COCO_PERSON_KEYPOINTS


def test_download_cache_and_torchvisions_keypoints(served, cache):
    server, url, tv = served
    n = len(server.log)
    kp = pretrained.coco_keypointrcnn(url=url, progress=False, transform=SIZES,
                                      roi_heads={"detections_per_img": DETECTIONS})
    assert len(server.log) == n + 1 and pretrained.is_cached(url)
    pretrained.coco_keypointrcnn(url=url, progress=False, transform=SIZES)
    assert len(server.log) == n + 1  # the cached file, re-hashed, no request

    model = kp.model
    assert not model.training and model.config.backbone.frozen_bn_eps == 0.0
    assert model.roi_heads.mask_head is None and model.config.roi_heads.num_keypoints == 17
    image = torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(1))
    ref, ours = detections_at_eps_0(tv, model, image)
    assert len(ref["boxes"]) == len(ours["boxes"]) == DETECTIONS
    for key in ("boxes", "labels", "scores", "keypoints"):
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours["keypoint_scores"], ref["keypoints_scores"], rtol=1e-4, atol=1e-4)
    assert ours["keypoints"][..., 0].std() > 5  # keypoints spread over the image: the comparison means something


def test_the_layout_is_cocos(served, cache):
    _, url, _ = served
    kp = pretrained.coco_keypointrcnn(url=url, progress=False, transform=SIZES)
    assert kp.class_names == ["__background__", "person"] and kp.categories == ["person"]
    assert kp.label_to_cat_id == {1: 1}
    assert tuple(kp.keypoint_names) == COCO_PERSON_KEYPOINTS
    assert np.allclose(kp.keypoint_sigmas, COCOeval(iouType="keypoints").params.kpt_oks_sigmas)
    sample = json.loads((pretrained.Path(pretrained.__file__).parent / "data" / "coco_sample" / "annotations" /
                         "person_keypoints_val2017.json").read_text())
    assert kp.skeleton == [(a - 1, b - 1) for a, b in sample["categories"][0]["skeleton"]]
    order = list(range(17))
    for i, j in kp.flip_pairs:
        order[i], order[j] = j, i
    assert order == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # torchvision references' flip_inds


def test_a_mask_rcnn_file_is_not_a_keypoint_file(tmp_path):
    path = tmp_path / "maskrcnn.pth"
    torch.save({"roi_heads.box_predictor.cls_score.weight": torch.zeros(91, 1024)}, path)
    with pytest.raises(ValueError, match=r"is not a torchvision keypointrcnn_resnet50_fpn state_dict \(no roi_heads"
                                         r"\.keypoint_predictor"):
        pretrained.load_torchvision_keypoint_weights(path)


def test_predict_with_coco_keypoint_weights(served, cache, tmp_path, monkeypatch, capsys):
    """`predict --weights coco-keypoints`: the keypoints listed are the model's, and drawn with COCO's skeleton."""
    from minimaskrcnn import viz_keypoints

    _, url, tv = served
    monkeypatch.setattr(pretrained, "COCO_KEYPOINT_WEIGHTS_URL", url)
    drawn = []
    draw = viz_keypoints.draw_keypoints
    monkeypatch.setattr(viz_keypoints, "draw_keypoints", lambda ax, kp, skeleton, *a, **k: drawn.append(
        (kp.clone(), skeleton)) or draw(ax, kp, skeleton, *a, **k))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    out = tmp_path / "pred"
    assert cli.main(["predict", "--weights", "coco-keypoints", str(tmp_path / "a.jpg"), "--out", str(out),
                     "--score-thresh", "0.05", "--min-size", "128", "--max-size", "160"]) == 0
    assert "downloading torchvision's COCO weights (226 MB)" in capsys.readouterr().out
    (entry,) = json.loads((out / "predictions.json").read_text())
    found = entry["detections"]
    assert found and {d["label"] for d in found} == {"person"}
    assert all(len(d["keypoints"]) == 17 for d in found)
    (points, skeleton), = drawn
    assert skeleton == pretrained.load_torchvision_keypoint_weights(pretrained.weights_path(url)).skeleton
    assert points.shape == (len(found), 17, 3)  # drawn at the image's size (128 x 160): the listed keypoints
    listed = torch.tensor([[k[:2] for k in d["keypoints"]] for d in found])
    torch.testing.assert_close(points[..., :2].float(), listed, atol=0.06, rtol=0)
    assert Image.open(out / "a_pred.png").size == (160, 128)
