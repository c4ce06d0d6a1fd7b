"""The training side (minimaskrcnn/training/): schedule, data order, exact resume, Ctrl-C, NaN, OOM, evaluation.

Most tests train `ToyModel`, a few-parameter stand-in with MaskRCNN's interface (it draws random
numbers in forward, as RoI sampling does, so resuming must restore the generators), on small
synthetic shapes; tests/test_train_coco.py and the real-model tests below use MaskRCNN itself.
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from minimaskrcnn import training
from minimaskrcnn.evaluation import evaluate
from minimaskrcnn.checkpoint import read_checkpoint, save_checkpoint
from minimaskrcnn.data.sources import CocoFiles, Shapes
from minimaskrcnn.training.sampler import ResumableSampler, SeededSamples
from minimaskrcnn.data import RandomHorizontalFlip, ShapesDataset
from minimaskrcnn.training import TrainConfig, lr_at, resolve
from minimaskrcnn.model import LOSS_NAMES


class ToyModel(torch.nn.Module):
    """(images, targets) -> .losses {"loss_cls", "loss_x"}; eval mode -> .detections (one box per image)."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, num_classes)
        self.drop = torch.nn.Dropout(0.5)  # a global-generator draw in every training forward

    def forward(self, images, targets=None):
        feats = torch.stack([self.conv(im[None]).relu().mean((2, 3))[0] for im in images])  # (B, 8)
        logits = self.head(self.drop(feats))  # (B, K)
        if targets is None:
            return SimpleNamespace(losses={}, detections=None)
        labels = torch.stack([t["labels"][0] for t in targets])
        # the first box's centre x (fraction of the width) moves with a flip
        cx = torch.stack([(t["boxes"][0, 0] + t["boxes"][0, 2]) / 2 / im.shape[-1] for t, im in zip(targets, images)])
        return SimpleNamespace(losses={"loss_cls": F.cross_entropy(logits, labels),
                                       "loss_x": ((feats[:, 0] - cx) ** 2).mean()}, detections=None)


def shapes(n=16):
    return ShapesDataset(n, image_size=32, seed=3, transforms=RandomHorizontalFlip(0.5))


def toy_cfg(tmp_path, name="run", **kw):
    base = dict(out=str(tmp_path / name), iters=8, batch_size=2, lr=0.05, warmup_iters=2, log_every=1,
                ckpt_every=100, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


def toy_train(cfg, **kw):
    torch.manual_seed(0)
    return training.train(cfg, model=ToyModel(), train_set=shapes(), **kw)


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "loss" in line]


def test_lr_rule_and_schedule_by_hand():
    cfg = resolve(TrainConfig(batch_size=4, iters=100, warmup_iters=10, warmup_factor=0.001,
                              milestones=(0.6, 0.9)), num_images=50)
    assert cfg.lr == pytest.approx(0.02 * 4 / 16)  # the paper's linear rule
    assert resolve(TrainConfig(batch_size=4), 50, world_size=2).lr == pytest.approx(0.02 * 8 / 16)
    assert lr_at(0, cfg) == pytest.approx(0.005 * 0.001)
    assert lr_at(5, cfg) == pytest.approx(0.005 * (0.001 * 0.5 + 0.5))
    assert lr_at(10, cfg) == pytest.approx(0.005)
    assert lr_at(59, cfg) == pytest.approx(0.005)
    assert lr_at(60, cfg) == pytest.approx(0.0005)
    assert lr_at(90, cfg) == pytest.approx(0.00005)
    cos = resolve(TrainConfig(iters=100, warmup_iters=0, schedule="cosine", lr=1.0), 50)
    assert [lr_at(s, cos) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])
    assert resolve(TrainConfig(epochs=2, batch_size=4), 50).iters == 25  # ceil(2 * 50 / 4)


@pytest.mark.parametrize("field,value", [("optimizer", "adam"), ("schedule", "poly"), ("amp", "yes"),
                                         ("batch_size", 0)])
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        resolve(TrainConfig(**{field: value}), 50)


def test_dataset_smaller_than_a_batch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        training.train(toy_cfg(tmp_path, batch_size=4), model=ToyModel(), train_set=ShapesDataset(3, 32))


def test_sampler_follows_distributed_sampler_and_resumes_mid_epoch():
    ds = list(range(10))
    s = ResumableSampler(ds, seed=7)
    ref = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=7)
    for epoch in (0, 1):
        ref.set_epoch(epoch)
        s.set_position(epoch, 0)
        assert [i for _, i in s] == list(ref)
    s.set_position(1, 4)
    assert list(s) == [(1, i) for i in list(ref)[4:]]
    halves = [list(ResumableSampler(ds, seed=7, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(i for h in halves for _, i in h) == list(range(10))  # two ranks split the epoch


def test_augmentation_depends_on_seed_epoch_index_only():
    ds = SeededSamples(shapes(), seed=5)
    first = [ds[(0, i)][1]["boxes"] for i in range(8)]
    torch.manual_seed(123)  # the global generator plays no part, and is left alone
    state = torch.get_rng_state()
    again = [ds[(0, i)][1]["boxes"] for i in reversed(range(8))][::-1]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    flips = [not torch.equal(ds[(0, i)][1]["boxes"], ds[(1, i)][1]["boxes"]) for i in range(8)]
    assert any(flips)  # another epoch, other flips


def test_toy_run_writes_log_checkpoint_and_curve(tmp_path):
    cfg = toy_cfg(tmp_path, iters=30, log_every=5, ckpt_every=10)
    result = toy_train(cfg)
    recs = records(result.out)
    assert [r["step"] for r in recs] == [5, 10, 15, 20, 25, 30]
    for r in recs:
        assert set(r) >= {"loss", "loss_cls", "loss_x", "lr", "epoch", "sec_per_iter"}
        assert r["loss"] == pytest.approx(r["loss_cls"] + r["loss_x"])
    assert recs[-1]["loss"] < recs[0]["loss"]  # it learns something
    assert recs[-1]["epoch"] == 3  # 16 images, 2 per step: 8 steps per epoch
    state = read_checkpoint(result.out / "last.pt")
    assert state["progress"]["step"] == 30 and (result.out / "best.pt").is_file()
    assert all(torch.equal(state["model"][k], v) for k, v in result.model.state_dict().items())
    assert (result.out / "loss_curve.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="already holds best.pt, last.pt, loss_curve.png, metrics.jsonl"):
        toy_train(toy_cfg(tmp_path, iters=10))  # a new run into the same folder would replace this one (paths.make_room)
    again = toy_train(toy_cfg(tmp_path, iters=10, log_every=5, ckpt_every=10, overwrite=True))
    assert [r["step"] for r in records(again.out)] == [5, 10]  # starts a fresh log, not appended to the old
    (aside,) = again.out.glob("replaced-*")  # the old one moved aside, whole
    assert [r["step"] for r in records(aside)] == [5, 10, 15, 20, 25, 30]


def test_resume_gives_the_same_losses_as_a_straight_run(tmp_path):
    straight = toy_train(toy_cfg(tmp_path, "straight"))
    first = toy_train(toy_cfg(tmp_path, "resumed", stop_at=5))  # stops mid-epoch (8 steps per epoch)
    assert read_checkpoint(first.out / "last.pt")["progress"]["step"] == 5
    torch.manual_seed(99)  # whatever the generators hold now must not matter
    resumed = toy_train(toy_cfg(tmp_path, "resumed", resume=str(first.out / "last.pt")))
    a, b = records(straight.out), records(resumed.out)
    assert [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b):
        for k in ("loss", "loss_cls", "loss_x", "lr"):
            assert ra[k] == rb[k], (ra["step"], k)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


class Interrupt:
    """Wraps a model's forward to raise `error` on its n-th training call."""

    def __init__(self, model, n, error):
        self.forward, self.n, self.error, self.calls = model.forward, n, error, 0

    def __call__(self, images, targets=None):
        self.calls += 1
        if self.calls == self.n:
            raise self.error
        return self.forward(images, targets)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, capsys):
    straight = toy_train(toy_cfg(tmp_path, "straight"))
    torch.manual_seed(0)
    model = ToyModel()
    model.forward = Interrupt(model, 6, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt, match=r"interrupted at once: saved .*last\.pt at step 5; continue"):
        training.train(toy_cfg(tmp_path, "interrupted"), model=model, train_set=shapes())
    out = tmp_path / "interrupted"
    assert "interrupted at once: saved" in capsys.readouterr().out  # the CLI shows a KeyboardInterrupt's message
    assert read_checkpoint(out / "last.pt")["progress"]["step"] == 5
    resumed = toy_train(toy_cfg(tmp_path, "interrupted", resume=str(out / "last.pt")))
    assert [r["loss"] for r in records(resumed.out)] == [r["loss"] for r in records(straight.out)]


def test_nan_loss_stops_naming_step_and_component_and_keeps_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    forward = model.forward
    calls = []

    def poisoned(images, targets=None):
        out = forward(images, targets)
        calls.append(1)
        if len(calls) == 6:
            out.losses["loss_x"] = out.losses["loss_x"] * float("nan")
        return out

    model.forward = poisoned
    cfg = toy_cfg(tmp_path, ckpt_every=4)
    with pytest.raises(FloatingPointError, match=r"'loss_x' is nan at step 6") as err:
        training.train(cfg, model=model, train_set=shapes())
    assert "last.pt is left as it was" in str(err.value)
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["progress"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step never reached the weights
    assert [r["step"] for r in records(tmp_path / "run")] == [1, 2, 3, 4, 5]


def test_cuda_out_of_memory_gets_a_hint(tmp_path):
    model = ToyModel()
    model.forward = Interrupt(model, 1, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    with pytest.raises(torch.cuda.OutOfMemoryError, match="lower --batch-size") as err:
        training.train(toy_cfg(tmp_path), model=model, train_set=shapes())
    assert "--min-size" in str(err.value) and "Tried to allocate 2 GiB" in str(err.value)


class Oracle(torch.nn.Module):
    """Eval-mode 'model' that answers each image with its ground truth (images come in dataset order)."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset, self.next = dataset, 0
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        detections = []
        for _ in images:
            t = self.dataset.load_target(self.next)
            self.next += 1
            n = len(t["labels"])
            detections.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.linspace(1, 0.5, n),
                               "masks": t["masks"].float()})
        return SimpleNamespace(losses={}, detections=detections)


def test_evaluate_the_ground_truth_gives_ap_1(tmp_path, capsys):
    ds = ShapesDataset(6, image_size=48, seed=2)
    metrics = evaluate(Oracle(ds), ds, batch_size=4, out_json=tmp_path / "results.json", progress=False)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == sum(len(ds.load_target(i)["labels"]) for i in range(6))
    assert "mask" in capsys.readouterr().out  # the table was printed


def test_evaluate_with_a_dropped_detection_is_below_1():
    ds = ShapesDataset(6, image_size=48, seed=2)
    oracle = Oracle(ds)
    forward = oracle.forward

    def drop_first(images, targets=None):
        out = forward(images, targets)
        out.detections[0] = {k: v[1:] for k, v in out.detections[0].items()}
        return out

    oracle.forward = drop_first
    metrics = evaluate(oracle, ds, batch_size=6, progress=False, verbose=False)
    assert 0 < metrics["segm"]["AP"] < 1 and math.isfinite(metrics["bbox"]["AP"])


def test_resume_config_restores_the_run_settings(tmp_path):
    first = toy_train(toy_cfg(tmp_path, stop_at=3, lr=0.03, milestones=(0.5,)))
    cfg = training.resume_config(first.out / "last.pt", stop_at=None)
    assert (cfg.lr, cfg.iters, cfg.milestones, cfg.stop_at) == (0.03, 8, (0.5,), None)
    assert cfg.resume == str(first.out / "last.pt")
    assert cfg.data == training.RunData(Shapes(16, 32, seed=3))  # what train() was given, recorded
    state = read_checkpoint(first.out / "last.pt")
    assert state["data"] == cfg.data.to_dict() and "data" not in state["train_config"]


def test_a_checkpoint_of_the_previous_version_resumes_on_its_recorded_data(tmp_path):
    """The previous version wrote its data twice: TrainConfig's data fields ("shapes", "annotations" or "custom",
    num_images, val_split, ...) in train_config, and the record under "data". The record is what counts now."""
    old_fields = {"data": "annotations", "split": "train2017", "val_split": None, "annotations": "/x/a.json",
                  "images": "/x/img", "val_annotations": None, "val_images": None, "num_images": 2000,
                  "num_val_images": 0, "image_size": 128, "data_seed": 0}
    path = save_checkpoint(tmp_path / "last.pt", {
        "model": {}, "train_config": {**old_fields, "iters": 77, "lr": 0.3, "out": "elsewhere"},
        "data": {"train": {"kind": "coco", "annotations": "/x/a.json", "images": "/x/img"}, "val": None}})
    cfg = training.resume_config(path)
    assert (cfg.iters, cfg.lr, cfg.out) == (77, 0.3, str(tmp_path))
    assert cfg.data == training.RunData(CocoFiles("/x/a.json", "/x/img"))


def tiny_model_config(num_classes=4):
    """cpu_small at 64 pixels: the real MaskRCNN, small enough for a few steps in a unit test."""
    from minimaskrcnn.config import cpu_small

    cfg = cpu_small(num_classes)
    cfg.transform.min_size = cfg.transform.max_size = 64
    return cfg


def real_train(cfg):
    train_set = ShapesDataset(8, image_size=64, seed=4, transforms=RandomHorizontalFlip(0.5))
    return training.train(cfg, model_config=tiny_model_config(), train_set=train_set)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a 2-core machine that other jobs also load, two OpenMP threads spin
    against each other and a step of this tiny model takes seconds instead of tens of milliseconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_resume_with_the_real_model_gives_the_same_losses(tmp_path, one_thread):
    """MaskRCNN samples anchors and RoIs from the global generators and its BatchNorm keeps running
    statistics: a run stopped at step 3 and resumed must still match a straight run bit for bit."""
    kw = dict(iters=6, optimizer="adamw", lr=1e-3, warmup_iters=2, batch_size=2)
    straight = real_train(toy_cfg(tmp_path, "straight", **kw))
    first = real_train(toy_cfg(tmp_path, "resumed", stop_at=3, **kw))
    torch.manual_seed(7)
    resumed = real_train(toy_cfg(tmp_path, "resumed", resume=str(first.out / "last.pt"), **kw))
    a, b = records(straight.out), records(resumed.out)
    assert [r["step"] for r in b] == list(range(1, 7)) and set(a[0]) >= set(LOSS_NAMES)
    for ra, rb in zip(a, b):
        for k in ("loss", *LOSS_NAMES):
            assert ra[k] == rb[k], (ra["step"], k)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_progress_bar_shows_loss_components_and_speed(tmp_path, capsys):
    toy_train(toy_cfg(tmp_path, iters=4, progress=True))
    err = capsys.readouterr().err
    assert "train" in err and "4/4" in err and "cls=" in err and "x=" in err, err
    assert "it/s" in err or "s/it" in err, err


def test_gradient_clipping_bounds_the_update(tmp_path):
    """With SGD, no momentum and no weight decay the first update is lr * grad: clipped to norm c, the
    weights move by exactly lr * c in L2 norm."""
    torch.manual_seed(0)
    model = ToyModel()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = toy_cfg(tmp_path, iters=1, lr=0.5, warmup_iters=0, momentum=0.0, weight_decay=0.0, grad_clip=1e-3)
    training.train(cfg, model=model, train_set=shapes())
    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    assert moved.norm().item() == pytest.approx(0.5 * 1e-3, rel=1e-3)


def test_amp_choices(tmp_path):
    """bf16 autocast also runs on the CPU; fp16 needs CUDA's GradScaler and is refused by name."""
    result = toy_train(toy_cfg(tmp_path, "bf16", iters=3, amp="bf16"))
    assert all(math.isfinite(r["loss"]) for r in records(result.out))
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        toy_train(toy_cfg(tmp_path, "fp16", iters=3, amp="fp16", device="cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_amp_trains_the_real_model(tmp_path, amp):
    cfg = toy_cfg(tmp_path, amp, iters=4, optimizer="adamw", lr=1e-3, warmup_iters=1, amp=amp, device="cuda")
    result = real_train(cfg)
    recs = records(result.out)
    assert len(recs) == 4 and all(math.isfinite(r["loss"]) for r in recs)
    assert next(result.model.parameters()).is_cuda
    state = read_checkpoint(result.out / "last.pt")
    assert (state["scaler"] is not None) == (amp == "fp16")


# ---------------------------------------------------------------- nothing a run did is lost or overwritten

def same_run(a, b):
    """Two runs' logs and final weights agree bit for bit."""
    ra, rb = records(a.out), records(b.out)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        for k in ("loss", *LOSS_NAMES):
            assert x[k] == y[k], (x["step"], k)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def signal_in_forward(model, step: int, signum=None, error=None, times: int = 1):
    """Send `signum` to this process `times` times (or raise `error`) from inside the model's forward pass of
    training step `step`, after the first BatchNorm has already updated its running statistics."""
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    calls = []

    def hook(module, inputs, output):
        calls.append(1)
        if len(calls) == step and module.training:
            if signum is None:
                raise error
            for _ in range(times):  # os.kill runs this process's handler before it returns
                os.kill(os.getpid(), signum)

    bn.register_forward_hook(hook)


KW_MID_FORWARD = dict(iters=6, optimizer="adamw", lr=1e-3, warmup_iters=2, batch_size=2)


def tiny_real_model():
    from minimaskrcnn.model import MaskRCNN

    torch.manual_seed(1)
    return MaskRCNN(tiny_model_config())


def shapes_64():
    return ShapesDataset(8, image_size=64, seed=4, transforms=RandomHorizontalFlip(0.5))


@pytest.fixture(scope="module")
def straight_tiny_run(tmp_path_factory):
    """The tiny real model's 6 steps, never stopped: what every stopped and resumed run below must repeat."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield training.train(toy_cfg(tmp_path_factory.mktemp("tiny"), "straight", **KW_MID_FORWARD),
                             model=tiny_real_model(), train_set=shapes_64())
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c twice", "sigterm twice", "error"])
def test_a_stop_mid_forward_resumes_bit_for_bit(tmp_path, one_thread, straight_tiny_run, how):
    """BatchNorm updates its statistics during the forward pass: a checkpoint saved where a stop landed would
    be one batch ahead. The first Ctrl-C lets the step finish and saves after it. A second Ctrl-C or SIGTERM
    (raised where it lands) and an error take the one emergency path: it saves the state of before the step,
    BatchNorm statistics restored, and says so."""
    from minimaskrcnn.training.stop import Terminated

    stopped = tiny_real_model()
    if how == "error":
        signal_in_forward(stopped, 3, error=RuntimeError("disk full"))
    else:
        signal_in_forward(stopped, 3, signum=signal.SIGTERM if how.startswith("sigterm") else signal.SIGINT,
                          times=2 if how.endswith("twice") else 1)
    raised, message = {"ctrl-c": (KeyboardInterrupt, r"^stopped at step 3: saved"),
                       "ctrl-c twice": (KeyboardInterrupt, r"^interrupted at once: saved .*last\.pt at step 2; "),
                       "sigterm twice": (Terminated, r"^terminated at once: saved .*last\.pt at step 2; continue"),
                       "error": (RuntimeError, r"^disk full; saved .*last\.pt at step 2: fix the problem")}[how]
    with pytest.raises(raised, match=message):
        training.train(toy_cfg(tmp_path, "stopped", **KW_MID_FORWARD), model=stopped, train_set=shapes_64())
    saved = read_checkpoint(tmp_path / "stopped" / "last.pt")["progress"]["step"]
    assert saved == (3 if how == "ctrl-c" else 2)
    resumed = training.train(toy_cfg(tmp_path, "stopped", resume=str(tmp_path / "stopped" / "last.pt"),
                                     **KW_MID_FORWARD), model=tiny_real_model(), train_set=shapes_64())
    same_run(straight_tiny_run, resumed)


def test_sigterm_saves_after_the_step_and_exits_143(tmp_path):
    """`docker stop` and a preempted cluster job send SIGTERM: the CLI run saves last.pt, exits 143, and
    resumes to the same result as a run that was never stopped."""
    argv = [sys.executable, "-m", "minimaskrcnn", "train", "--data", "shapes", "--num-images", "8",
            "--num-val-images", "0", "--image-size", "64", "--min-size", "64", "--max-size", "64",
            "--iters", "12", "--batch-size", "2", "--log-every", "1", "--optimizer", "adamw", "--lr", "1e-3",
            "--warmup-iters", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the run that is never stopped trains at the same time, on the other core
    straight = subprocess.Popen(argv + ["--out", str(tmp_path / "straight")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(argv + ["--out", str(tmp_path / "run")], env=env, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "metrics.jsonl"
    while proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert straight.wait(timeout=120) == 0
    assert proc.returncode == 143, err
    step = read_checkpoint(tmp_path / "run" / "last.pt")["progress"]["step"]
    assert 3 <= step < 12 and err.strip().splitlines()[-1].startswith(f"error: stopped at step {step}: saved")
    subprocess.run([sys.executable, "-m", "minimaskrcnn", "train", "--resume", str(tmp_path / "run" / "last.pt")],
                   check=True, env=env, capture_output=True)
    a, b = records(tmp_path / "straight"), records(tmp_path / "run")
    assert [r["step"] for r in b] == list(range(1, 13))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def test_an_error_outside_the_update_saves_unless_the_weights_are_not_finite(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    model.forward = Interrupt(model, 5, RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match=r"disk full; saved .*last\.pt at step 4: fix the problem"):
        training.train(toy_cfg(tmp_path, "a"), model=model, train_set=shapes())
    assert read_checkpoint(tmp_path / "a" / "last.pt")["progress"]["step"] == 4

    torch.manual_seed(0)
    model = ToyModel()
    forward = model.forward

    def poison_then_fail(images, targets=None):  # the weights go bad, then something fails
        poison_then_fail.calls += 1
        if poison_then_fail.calls == 6:
            with torch.no_grad():
                model.head.weight[0, 0] = float("inf")
            raise RuntimeError("disk full")
        return forward(images, targets)

    poison_then_fail.calls = 0
    model.forward = poison_then_fail
    with pytest.raises(RuntimeError, match="the weights are not finite, so .*last.pt is left as it was"):
        training.train(toy_cfg(tmp_path, "b", ckpt_every=4), model=model, train_set=shapes())
    state = read_checkpoint(tmp_path / "b" / "last.pt")
    assert state["progress"]["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_writes_beside_the_checkpoint_it_resumes_from(tmp_path):
    """A checkpoint copied into another folder continues there; the run it came from is not touched."""
    first = toy_train(toy_cfg(tmp_path, "a", stop_at=3))
    copy = tmp_path / "b" / "last.pt"
    copy.parent.mkdir()
    shutil.copy(first.out / "last.pt", copy)
    before = {p.name: p.read_bytes() for p in first.out.iterdir()}
    resumed = toy_train(training.resume_config(copy))
    assert resumed.out == copy.parent and read_checkpoint(copy)["progress"]["step"] == 8
    assert {p.name: p.read_bytes() for p in first.out.iterdir()} == before
    with pytest.raises(ValueError, match=r"TrainConfig.out .*c is not the folder of .*b/last.pt"):
        training.resume_config(copy, out=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="a resumed run writes beside the checkpoint"):
        toy_train(toy_cfg(tmp_path, "c", resume=str(copy)))


def test_stop_at_is_not_carried_over_into_the_resumed_run(tmp_path):
    first = toy_train(toy_cfg(tmp_path, stop_at=3))
    cfg = training.resume_config(first.out / "last.pt")
    assert cfg.stop_at is None
    assert toy_train(cfg).step == 8


def test_a_torn_last_line_of_the_log_does_not_block_resume(tmp_path):
    first = toy_train(toy_cfg(tmp_path, stop_at=3))
    with open(first.out / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "epoch": 0, "lr": 0.05, "loss": 1.2')  # killed mid-write
    with pytest.warns(UserWarning, match=r"metrics.jsonl: line 4 is not a JSON record"):
        resumed = toy_train(training.resume_config(first.out / "last.pt"))
    assert [r["step"] for r in records(resumed.out)] == list(range(1, 9))


def test_bad_settings_are_refused_when_the_config_is_built():
    for field, value, words in [("grad_clip", -1.0, "> 0"), ("epochs", -1.0, "> 0"), ("epochs", 0, "> 0"),
                                ("iters", 0, ">= 1"), ("max_size", 1, ">= 32"), ("min_size", 8, ">= 32"),
                                ("device", "tpu", "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"),
                                ("optimizer", "adam", "'sgd', 'adamw'"), ("milestones", (0.9, 0.5), "increasing")]:
        with pytest.raises(ValueError, match=re.escape(f"TrainConfig.{field} ") + ".*" + re.escape(words)):
            TrainConfig(**{field: value})


def test_evaluating_during_training_does_not_change_the_run(tmp_path, one_thread):
    """evaluate() must not draw from the global generators (a DataLoader without its own generator draws a
    seed from them), or a run's RoI sampling would depend on how often it evaluates."""
    kw = dict(iters=4, optimizer="adamw", lr=1e-3, warmup_iters=1, batch_size=2)
    val = ShapesDataset(2, image_size=64, seed=9)
    runs = {}
    for every in (0, 2):
        train_set = ShapesDataset(8, image_size=64, seed=4, transforms=RandomHorizontalFlip(0.5))
        runs[every] = training.train(toy_cfg(tmp_path, f"every{every}", eval_every=every, **kw),
                                     model_config=tiny_model_config(), train_set=train_set, val_set=val)
    assert [r["loss"] for r in records(runs[0].out)] == [r["loss"] for r in records(runs[2].out)]
    assert sum("eval" in line for line in (runs[2].out / "metrics.jsonl").read_text().splitlines()) == 2


def test_evaluate_with_the_models_own_label_mapping(capsys):
    """A model whose labels are not the dataset's (torchvision's COCO model predicts category ids) is scored
    through its own mapping; detections of a label without a category are left out, with a warning."""
    ds = ShapesDataset(6, image_size=48, seed=2)
    full = evaluate(Oracle(ds), ds, batch_size=6, progress=False, verbose=False, label_to_cat_id={1: 1, 2: 2, 3: 3})
    assert full["segm"]["AP"] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match=r"left out \d+ detection\(s\) whose label has no category"):
        partial = evaluate(Oracle(ds), ds, batch_size=6, progress=False, verbose=False, label_to_cat_id={1: 1, 2: 2})
    assert partial["segm"]["AP"] < 0.9  # the triangles (label 3) are never detected now
