"""Checkpoints: atomic writes, clear errors for unreadable files and for a different config, RNG states."""
import os
import random

import numpy as np
import pytest
import torch

from minimaskrcnn import checkpoint as ckpt
from minimaskrcnn import config as config_lib
from minimaskrcnn.resnet import build_backbone
from minimaskrcnn.training.runtime import rng_state, set_rng_state


def small_backbone_config(**kw):
    return config_lib.cpu_small().backbone.__class__(**{**config_lib.to_dict(config_lib.cpu_small())["backbone"], **kw})


def backbone_state(cfg):
    torch.manual_seed(0)
    model = build_backbone(cfg)
    return model, {"model": model.state_dict(), "model_config": {"backbone": config_lib.to_dict(cfg)}}


def as_model_config(cfg):
    return {"backbone": config_lib.to_dict(cfg)}


def test_save_and_load_round_trip(tmp_path):
    cfg = small_backbone_config()
    model, state = backbone_state(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(1, 3, 64, 64))["p2"].sum().backward()
    opt.step()
    ckpt.save_checkpoint(tmp_path / "a.pt", {**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                             "step": 7})
    torch.manual_seed(1)
    other = build_backbone(cfg)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    loaded = ckpt.load_checkpoint(tmp_path / "a.pt", other, as_model_config(cfg), optimizer=other_opt)
    assert loaded["step"] == 7
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k
    momentum = [other_opt.state[p]["momentum_buffer"] for p in other.parameters() if p in other_opt.state]
    assert momentum and all(torch.equal(a, opt.state[p]["momentum_buffer"])
                            for a, p in zip(momentum, [p for p in model.parameters() if p in opt.state]))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp file left behind


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, {"model": {"w": torch.ones(3)}, "step": 1})
    before = path.read_bytes()

    def dies_halfway(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_corrupt_and_missing_files_name_the_file(tmp_path):
    good = ckpt.save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(1000)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match=f"{path.name} is corrupt or truncated"):
            ckpt.read_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ckpt.read_checkpoint(tmp_path / "missing.pt")
    not_ours = ckpt.save_checkpoint(tmp_path / "weights.pt", {"conv.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="weights.pt is not a minimaskrcnn checkpoint"):
        ckpt.read_checkpoint(not_ours)


def test_checkpoint_of_another_config_lists_keys_shapes_and_fields(tmp_path):
    saved_cfg = small_backbone_config(depth=18, fpn_channels=64)
    _, state = backbone_state(saved_cfg)
    path = ckpt.save_checkpoint(tmp_path / "r18.pt", state)
    model_cfg = small_backbone_config(depth=34, fpn_channels=32)
    model = build_backbone(model_cfg)
    with pytest.raises(ValueError) as err:
        ckpt.load_checkpoint(path, model, as_model_config(model_cfg))
    msg = str(err.value)
    assert "r18.pt does not fit the model" in msg
    expected = model.state_dict()
    missing = [k for k in expected if k not in state["model"]]
    mismatched = [k for k in expected if k in state["model"] and expected[k].shape != state["model"][k].shape]
    assert missing and mismatched  # depth 34 has more blocks; the FPN is narrower
    assert f"missing key {missing[0]}" in msg
    k = mismatched[0]
    assert f"shape mismatch {k}: checkpoint {tuple(state['model'][k].shape)} != model {tuple(expected[k].shape)}" in msg
    assert "backbone.depth: 18 != 34" in msg and "backbone.fpn_channels: 64 != 32" in msg


def test_config_difference_without_weight_difference_only_warns(tmp_path):
    cfg = small_backbone_config()
    model, state = backbone_state(cfg)
    state["model_config"]["transform"] = {"min_size": 128}
    path = ckpt.save_checkpoint(tmp_path / "a.pt", state)
    with pytest.warns(UserWarning, match="transform.min_size: 128 != 256"):
        ckpt.load_checkpoint(path, build_backbone(cfg), {**as_model_config(cfg), "transform": {"min_size": 256}})


def test_config_differences_by_hand():
    a = {"num_classes": 4, "rpn": {"nms": 0.7, "sizes": (1, 2)}}
    b = {"num_classes": 5, "rpn": {"nms": 0.7, "sizes": [1, 2]}, "extra": 1}
    assert ckpt.config_differences(a, b) == ["extra: '<missing>' != 1", "num_classes: 4 != 5"]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    path = ckpt.save_checkpoint(tmp_path / "rng.pt", {"model": {}, "rng": rng_state()})
    expected = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(ckpt.read_checkpoint(path)["rng"])
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == expected


def test_copy_checkpoint(tmp_path):
    src = ckpt.save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.arange(4)}})
    ckpt.copy_checkpoint(src, tmp_path / "best.pt")
    assert torch.equal(ckpt.read_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.arange(4))


def test_flipped_bits_inside_a_tensor_are_caught_by_the_checksum(tmp_path):
    weights = torch.arange(4096, dtype=torch.float32)
    path = ckpt.save_checkpoint(tmp_path / "last.pt", {"model": {"w": weights}, "step": 3})
    data = bytearray(path.read_bytes())
    at = bytes(data).find(weights.numpy().tobytes())  # torch.save stores the tensor's bytes as they are
    assert at > 0
    data[at + 4001] ^= 0x10  # one bit of one float
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["w"], weights)  # torch: no complaint ...
    with pytest.raises(ValueError, match="last.pt is corrupt: its content no longer matches the checksum"):
        ckpt.read_checkpoint(path)  # ... we do not


class Pickled:
    """Any class of ours: torch.load(weights_only=True) refuses to unpickle it."""


def test_a_file_that_is_not_weights_only_gets_our_words_not_torchs_advice(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": {}, "thing": Pickled()}, path)  # an object of a class: not weights-only
    with pytest.raises(ValueError) as err:
        ckpt.read_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"checkpoint {path} is corrupt or truncated, or not a checkpoint of tensors")
    assert "weights_only" not in message and "\n" not in message


def test_temp_files_of_killed_writers_are_removed_and_the_mode_follows_the_umask(tmp_path):
    for name in (".last.pt.abc123.tmp", ".last.pt.def456.tmp"):  # left by writers killed mid-write
        (tmp_path / name).write_bytes(b"PK half")
    (tmp_path / ".best.pt.xyz.tmp").write_bytes(b"another file's: left alone")
    old = os.umask(0o022)
    try:
        ckpt.save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.ones(2)}})
        assert sorted(p.name for p in tmp_path.iterdir()) == [".best.pt.xyz.tmp", "last.pt"]
        ckpt.copy_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")  # best.pt: the same rules
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    for name in ("last.pt", "best.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name  # not mkstemp's 0600
