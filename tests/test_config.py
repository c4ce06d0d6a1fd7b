"""Configs are checked once, when they are built: a bad value names its field and, for a choice, lists the
allowed values, before any model exists."""
import dataclasses

import pytest

from minimaskrcnn import config as cfg_lib
from minimaskrcnn.config import (AnchorConfig, BackboneConfig, ModelConfig, RoIHeadsConfig, RPNConfig,
                                 TransformConfig, cpu_small, cpu_small_keypoints, from_dict, get_config,
                                 keypoint_r50_fpn, r50_c4, r50_fpn, to_dict)


@pytest.mark.parametrize("section, field, value, allowed", [
    (BackboneConfig, "norm", "syncbn", "'frozen_bn', 'bn', 'gn'"),
    (BackboneConfig, "variant", "c5", "'fpn', 'c4'"),
    (BackboneConfig, "depth", 42, "18, 34, 50, 101"),
    (RoIHeadsConfig, "pooler", "crop", "'align', 'pool', 'warp'"),
    (RoIHeadsConfig, "pool_mode", "median", "'avg', 'max'"),
    (RoIHeadsConfig, "mask_head", "unet", "'fcn', 'mlp'"),
    (RoIHeadsConfig, "mask_loss", "dice", "'sigmoid', 'softmax'"),
    (RoIHeadsConfig, "aligned", "yes", "False, True"),
    (RoIHeadsConfig, "mask_branch", "no", "False, True"),
])
def test_a_bad_choice_lists_the_allowed_values(section, field, value, allowed):
    with pytest.raises(ValueError, match=rf"^{section.__name__}\.{field} must be one of {allowed}; got {value!r}$"):
        section(**{field: value})


@pytest.mark.parametrize("section, field, value, words", [
    (BackboneConfig, "trainable_layers", 6, "an integer >= 0 and <= 5"),
    (BackboneConfig, "frozen_bn_eps", -1.0, "a number >= 0.0"),
    (RPNConfig, "nms_thresh", 1.5, "a number >= 0.0 and <= 1.0"),
    (RPNConfig, "post_nms_top_n_test", 0, "an integer >= 1"),
    (RoIHeadsConfig, "min_box_size", -1, "a number >= 0.0"),
    (RoIHeadsConfig, "detections_per_img", 2.5, "an integer >= 1"),
    (RoIHeadsConfig, "mask_threshold", float("nan"), "a number >= 0.0 and <= 1.0"),
    (RoIHeadsConfig, "num_keypoints", -1, "an integer >= 0"),
    (RoIHeadsConfig, "keypoint_pool_size", 0, "an integer >= 1"),
    (RoIHeadsConfig, "keypoint_head_convs", 2.0, "an integer >= 0"),
    (TransformConfig, "min_size", 1, "an integer >= 32"),
])
def test_a_bad_number_names_the_field_and_its_range(section, field, value, words):
    with pytest.raises(ValueError, match=rf"^{section.__name__}\.{field} must be {words}; got"):
        section(**{field: value})


def test_fields_that_depend_on_each_other():
    with pytest.raises(ValueError, match="RPNConfig.bg_iou_thresh .* must be <= fg_iou_thresh"):
        RPNConfig(bg_iou_thresh=0.8)
    with pytest.raises(ValueError, match="mask_loss='softmax' needs a mask per class"):
        RoIHeadsConfig(mask_loss="softmax", class_agnostic_masks=True)
    with pytest.raises(ValueError, match="TransformConfig.max_size must be an integer >= 800"):
        TransformConfig(max_size=600)
    with pytest.raises(ValueError, match="AnchorConfig.sizes must give the same"):
        AnchorConfig(sizes=((16,), (32, 64)))
    with pytest.raises(ValueError, match="AnchorConfig.sizes has 5 levels, the c4 backbone gives 1"):
        ModelConfig(backbone=BackboneConfig(variant="c4"))
    with pytest.raises(ValueError, match="unknown model preset 'r18'; choose one of 'r50_fpn', 'r50_c4', 'cpu_small'"):
        get_config("r18")


def test_replace_and_from_dict_are_checked_too():
    with pytest.raises(ValueError, match="RoIHeadsConfig.pooler"):
        dataclasses.replace(RoIHeadsConfig(), pooler="crop")
    stored = to_dict(cpu_small())
    stored["roi_heads"]["mask_loss"] = "dice"
    with pytest.raises(ValueError, match="RoIHeadsConfig.mask_loss"):
        from_dict(stored)


@pytest.mark.parametrize("preset", [r50_fpn, r50_c4, cpu_small, keypoint_r50_fpn, cpu_small_keypoints])
def test_presets_are_valid_and_survive_a_round_trip(preset):
    assert from_dict(to_dict(preset())) == preset()


def test_the_keypoint_presets():
    """torchvision's keypointrcnn_resnet50_fpn: 2 classes, 17 keypoints, 8 convs of 512 on 14x14, no masks, and
    otherwise r50_fpn's settings (its RPN and box settings are Faster R-CNN's defaults, like maskrcnn's)."""
    kp = keypoint_r50_fpn()
    heads = kp.roi_heads
    assert kp.num_classes == 2 and heads.num_keypoints == 17 and not heads.mask_branch
    assert (heads.keypoint_pool_size, heads.keypoint_head_convs, heads.keypoint_head_channels) == (14, 8, 512)
    plain = r50_fpn(2)
    assert dataclasses.replace(kp, roi_heads=plain.roi_heads) == plain
    small = cpu_small_keypoints()
    assert small.roi_heads.num_keypoints == 11 and small.roi_heads.mask_branch
    assert dataclasses.replace(small.roi_heads, num_keypoints=0, keypoint_head_channels=512,
                               keypoint_head_convs=8) == cpu_small().roi_heads
    assert get_config("cpu_small_keypoints", 5).num_classes == 5 and cpu_small().roi_heads.num_keypoints == 0


def test_a_checkpoint_config_from_before_a_field_existed_still_loads():
    old = to_dict(r50_fpn())
    del old["backbone"]["frozen_bn_eps"], old["roi_heads"]["min_box_size"]
    cfg = from_dict(old)
    assert cfg.backbone.frozen_bn_eps == 1e-5 and cfg.roi_heads.min_box_size == 1e-2


def test_choices_live_in_one_place():
    from minimaskrcnn import losses, resnet

    assert tuple(resnet.DEPTHS) == cfg_lib.DEPTHS and losses.MASK_LOSSES is cfg_lib.MASK_LOSSES
