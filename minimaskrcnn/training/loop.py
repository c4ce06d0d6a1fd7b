"""The training loop (Sec. 3.1, "Training"): `train(cfg)`, built from the named steps of a `Run`.

    for each batch:  step (forward, check the losses, backward, clip, update the weights, advance)
                     -> log every log_every steps -> evaluate every eval_every -> save every ckpt_every

`Run` holds everything one run needs (model, optimizer, data, where it is) and does one thing per method.
The model's own random draws (anchor and RoI sampling) use the global generators, whose states are saved in
every checkpoint with the model, optimizer, GradScaler, step and sampler position, so a resumed run repeats
an uninterrupted one bit for bit (`sampler.py` says why the data order does too). A step stopped at once (a
second Ctrl-C or SIGTERM, an error) ends in one place, `Run.emergency_save`, which keeps that promise too.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import config as config_lib
from .. import paths
from ..checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from ..data import collate
from ..data.sources import RunData, describe
from ..devices import amp_dtype, pick_device
from ..evaluation import evaluate, headline_ap
from .config import TrainConfig, build_model_config, resolve, settings
from .datasets import build_datasets
from .guards import check_finite_losses, one_line_errors, out_of_memory_hint, with_message
from .log import append_record, drop_records_after, read_records
from .runtime import (average_losses_and_stop, grad_scaler, init_distributed, process_seed, rng_state,
                      seed_everything, set_rng_state)
from .sampler import ResumableSampler, SeededSamples
from .schedule import build_optimizer, lr_at
from .stop import StopRequests, Terminated, stopped_at_once


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained model (unwrapped from DistributedDataParallel)
    step: int  # steps done
    out: Path  # the run folder
    metrics: dict | None  # COCO metrics of the last evaluation (None without a held-out set)
    seconds: float  # wall time of this call


@dataclass
class Progress:
    """Where a run is; saved in every checkpoint."""
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current pass over the training set
    batch: int = 0  # batches of this epoch done (the sampler's resume position)
    sums: dict = dataclasses.field(default_factory=dict)  # loss sums since the last log record
    count: int = 0  # steps in those sums
    last_loss: float = math.inf  # mean total loss of the last log record
    best: float = -math.inf  # best score so far: held-out AP, or minus the training loss


def train(cfg: TrainConfig, model_config=None, model=None, train_set=None, val_set=None) -> TrainResult:
    """Train as `cfg` says, writing cfg.out/{metrics.jsonl, last.pt, best.pt, loss_curve.png}.

    model_config, model, train_set, val_set replace what cfg would build (a tweaked preset, a toy model in a
    test, your own dataset); the model maps (images, targets) to an object with `.losses`. Nothing done is lost:
    Ctrl-C and SIGTERM save at the step's end (stop.py); a second one, or an error, saves what the last finished
    step left (`Run.emergency_save`), then raises; a NaN loss raises FloatingPointError before it reaches the
    weights (guards.py).
    """
    run = Run(cfg, model_config, model, train_set, val_set)
    with StopRequests(announce=run.rank == 0) as stop:
        try:
            for images, targets in run.batches():
                run.step(images, targets, stop)
                last = run.progress.step >= run.last_step
                if last or run.every(run.cfg.log_every):
                    run.log()
                evaluated = run.every(run.cfg.eval_every) and run.evaluate()
                if evaluated or last or run.signalled or run.every(run.cfg.ckpt_every):
                    run.save()
                if last or run.signalled:
                    break
        except FloatingPointError:  # a NaN loss, caught before it reached the weights: last.pt stays as it was
            raise
        except (KeyboardInterrupt, Terminated) as e:  # a second signal (or Ctrl-C outside the main thread)
            stopped = stopped_at_once(e, run.emergency_save())
            if run.rank == 0 and isinstance(e, KeyboardInterrupt):  # the CLI says only "interrupted"
                print(f"\n{stopped}")
            raise stopped from None
        except Exception as e:  # a corrupt image, a full disk...: keep the steps done so far, then stop
            raise with_message(e, f"{e}; {run.emergency_save(fix=True)}") from e
        finally:
            run.bar.close()
        if run.signalled:
            stop.raise_stop(f"stopped at step {run.progress.step}: saved {run.last_ckpt}; continue with "
                            f"--resume {run.last_ckpt}")
    return run.finish()


def keypoint_layout(dataset) -> dict | None:
    """The keypoint layout of a dataset (data/keypoints.py) as plain lists, for a checkpoint: names, skeleton,
    flip_pairs, sigmas (None for a dataset without keypoints)."""
    if not getattr(dataset, "num_keypoints", 0):
        return None
    sigmas = dataset.keypoint_sigmas
    return {"names": list(dataset.keypoint_names), "skeleton": [list(p) for p in dataset.skeleton],
            "flip_pairs": [list(p) for p in dataset.flip_pairs], "sigmas": None if sigmas is None else list(sigmas)}


class Run:
    """One training run. Built from a TrainConfig (and whatever replaces what it would build), it resumes
    from cfg.resume when given; then `train` calls its steps."""

    def __init__(self, cfg: TrainConfig, model_config=None, model=None, train_set=None, val_set=None):
        self.start_time = time.perf_counter()
        self.owns_group = not dist.is_initialized()
        self.rank, self.world, local_rank = init_distributed()
        self.device = pick_device(cfg.device, local_rank)
        seed_everything(cfg.seed)  # the same on every process: identical initial weights
        if train_set is None:
            train_set, built_val = build_datasets(cfg)
            val_set = built_val if val_set is None else val_set
        self.train_set, self.val_set = train_set, val_set
        # the data record says what the datasets are, also when they were given here
        cfg = dataclasses.replace(cfg, data=RunData(describe(train_set), describe(val_set)))
        self.cfg = cfg = resolve(cfg, len(train_set), self.world)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        if model is None:
            from ..model import MaskRCNN

            model_config = model_config or build_model_config(cfg, train_set.num_classes,
                                                              getattr(train_set, "num_keypoints", 0))
            model = MaskRCNN(model_config)
        self.model_config = model_config or getattr(model, "config", None)
        self.model = model.to(self.device).train()
        self.net = model  # what the forward pass runs: the model, or its DistributedDataParallel wrapper
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.optimizer = build_optimizer(model, cfg)
        self.scaler = grad_scaler(cfg.amp == "fp16")
        self.out = Path(cfg.out)
        self.log_path, self.last_ckpt = self.out / "metrics.jsonl", self.out / "last.pt"
        if self.rank == 0:
            paths.writable_folder(self.out)  # now, not after the first hour of training
        self.progress = self.resume() if cfg.resume else self.fresh()
        self.last_step = min(cfg.stop_at or cfg.iters, cfg.iters)  # this call ends after this step
        self.lr = lr_at(self.progress.step, cfg)  # of the step under way
        self.metrics = None  # of the last evaluation
        self.signalled = False  # a process was asked to stop (StopRequests): all stop after this step
        # What an emergency save needs: where the step under way is ("forward": BatchNorm's statistics moving,
        # "update": the weights changing, "between" steps), the statistics of before it, and the generators'
        # states after the last finished step.
        self.phase, self.buffers_before_step, self.rngs_now = "between", [], rng_state()
        self.last_log_time = time.perf_counter()
        self.bar = tqdm(total=cfg.iters, initial=self.progress.step, desc="train", dynamic_ncols=True,
                        disable=not cfg.progress or self.rank != 0)

    def fresh(self) -> Progress:
        if self.rank == 0 and self.log_path.exists():
            self.log_path.unlink()  # a fresh run starts a fresh log (a resumed one keeps its steps)
        if self.world > 1:
            seed_everything(process_seed(self.cfg.seed, self.rank))  # replicas sample different anchors and RoIs
        return Progress()

    def resume(self) -> Progress:
        cfg = self.cfg
        state = load_checkpoint(cfg.resume, self.model, self.model_config, self.optimizer,
                                self.scaler if cfg.amp == "fp16" else None)
        progress = Progress(**state["progress"])
        rngs = state.get("rng") or []
        if self.rank < len(rngs):
            set_rng_state(rngs[self.rank])
        else:  # an emergency checkpoint of a distributed run holds rank 0's generators only
            seed_everything(process_seed(cfg.seed, self.rank, progress.step))
        if self.rank == 0:
            drop_records_after(self.log_path, progress.step)
        return progress

    def batches(self):
        """(images, targets) on the device, epoch after epoch from where the run is, until it stops."""
        p, cfg = self.progress, self.cfg
        sampler = ResumableSampler(self.train_set, cfg.seed, self.rank, self.world)
        samples = SeededSamples(self.train_set, cfg.seed)
        while p.step < self.last_step:
            sampler.set_position(p.epoch, p.batch * cfg.batch_size)
            loader = DataLoader(samples, cfg.batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
                                num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed))  # not the global one
            for images, targets in one_line_errors(loader, p.step + 1):
                yield ([im.to(self.device, non_blocking=True) for im in images],
                       [{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets])
            p.epoch, p.batch = p.epoch + 1, 0  # the epoch ran out before the run stopped

    def step(self, images, targets, stop: StopRequests) -> None:
        """One optimizer step at the scheduled lr, then `advance`. Sets `signalled` when a process was asked to
        stop (all processes agree on it through the losses' all-reduce), and `phase` for an emergency save."""
        self.buffers_before_step = [b.detach().clone() for b in self.model.buffers()]  # BatchNorm's statistics
        self.lr = lr_at(self.progress.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.phase = "forward"  # BatchNorm moves its running statistics in the forward pass
        with out_of_memory_hint(self.cfg, f"at step {self.progress.step + 1}"):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                losses = self.net(images, targets).losses
            values, stopping = average_losses_and_stop(losses, stop.requested is not None, self.world)
            check_finite_losses(values, self.progress.step + 1, self.last_ckpt)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(sum(losses.values())).backward()
            self.phase = "update"  # from here until the step is counted, the weights are in flux
            if self.cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.advance(values)
        self.phase = "between"
        self.signalled = stopping or (self.world == 1 and stop.requested is not None)

    def advance(self, values: dict[str, float]) -> None:
        """A step is done: advance the position, add the losses to the running sums, show them."""
        p = self.progress
        p.step, p.batch, p.count = p.step + 1, p.batch + 1, p.count + 1
        for k, v in values.items():
            p.sums[k] = p.sums.get(k, 0.0) + v
        self.rngs_now = rng_state()  # the generators as they are after this step, for an emergency save
        self.bar.update(1)
        self.bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}" for k, v in values.items()}, refresh=False)

    def every(self, period: int) -> bool:
        return bool(period) and self.progress.step % period == 0

    def log(self) -> None:
        """A metrics.jsonl record of the mean losses since the last one."""
        p, now = self.progress, time.perf_counter()
        means = {k: s / p.count for k, s in p.sums.items()}
        p.last_loss = sum(means.values())
        if self.rank == 0:
            append_record(self.log_path, {"step": p.step, "epoch": p.epoch, "lr": self.lr, "loss": p.last_loss,
                                          **means, "sec_per_iter": (now - self.last_log_time) / p.count})
        p.sums, p.count, self.last_log_time = {}, 0, now

    def evaluate(self) -> bool:
        """COCO AP on the held-out set (rank 0), logged; False when there is none."""
        if self.val_set is None:
            return False
        if self.rank == 0:
            self.metrics = evaluate(self.model, self.val_set, self.cfg.batch_size, self.device,
                                    self.out / "results.json", amp=self.cfg.amp, progress=self.cfg.progress)
            append_record(self.log_path, {"step": self.progress.step, "eval": self.metrics})
        if self.world > 1:
            dist.barrier()
        return True

    def save(self) -> None:
        """last.pt, and best.pt when the score improved: held-out AP when the run evaluates as it goes,
        else minus the training loss."""
        rngs = [rng_state()]
        if self.world > 1:  # every process's generators, so each continues its own stream
            rngs = [None] * self.world
            dist.all_gather_object(rngs, rng_state())
        if self.rank != 0:
            return
        p = self.progress
        if self.cfg.eval_every and self.val_set is not None:
            score = headline_ap(self.metrics) if self.every(self.cfg.eval_every) else None
        else:
            score = -p.last_loss
        improved = score is not None and score > p.best
        p.best = score if improved else p.best
        save_checkpoint(self.last_ckpt, self.state(rngs))
        if improved:
            copy_checkpoint(self.last_ckpt, self.out / "best.pt")

    def state(self, rngs: list) -> dict:
        """What a checkpoint holds (checkpoint.py): weights, optimizer, position, generators, data."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "model_config": config_lib.to_dict(self.model_config) if self.model_config is not None else None,
                "train_config": settings(self.cfg), "progress": dataclasses.asdict(self.progress), "rng": rngs,
                # the data it trained on, and the held-out set `evaluate` uses by default (data/sources.py)
                "data": self.cfg.data.to_dict(),
                # what predict and evaluate need to name classes and map them back to COCO ids
                "class_names": list(getattr(self.train_set, "class_names", [])),
                "label_to_cat_id": dict(getattr(self.train_set, "label_to_cat_id", {})),
                # and, for a keypoint model, what predict draws and evaluate checks the data against
                "keypoints": keypoint_layout(self.train_set) if getattr(self.model_config, "roi_heads", None)
                and self.model_config.roi_heads.num_keypoints else None}

    def emergency_save(self, fix: bool = False) -> str:
        """The one way out of a step stopped at once, wherever it landed: a second Ctrl-C or SIGTERM, or an error.

        Saves last.pt with the state after the last finished step, BatchNorm's running statistics put back as
        they were before the step under way if its forward pass had moved them, so that the checkpoint resumes
        bit for bit. Deliberately saves nothing while the optimizer was changing the weights, or when a weight
        is not finite: last.pt keeps the last good state. Returns which it did, in words for the message (`fix`:
        the stop was an error to fix before resuming). Only process 0 saves."""
        last = self.last_ckpt
        if self.rank != 0:
            return f"process {self.rank} leaves saving to process 0"
        if self.phase == "update":
            return f"stopped while the optimizer was changing the weights, so {last} is left as it was"
        if self.phase == "forward":
            for buffer, before in zip(self.model.buffers(), self.buffers_before_step):
                buffer.copy_(before)
        if not all(bool(t.isfinite().all()) for t in self.model.state_dict().values() if t.is_floating_point()):
            return f"the weights are not finite, so {last} is left as it was"
        save_checkpoint(last, self.state([self.rngs_now]))
        then = ": fix the problem and continue" if fix else "; continue"
        return f"saved {last} at step {self.progress.step}{then} with --resume {last}"

    def finish(self) -> TrainResult:
        """The final evaluation (unless the last step had one), the loss curve, and the result."""
        p = self.progress
        if p.step >= self.cfg.iters and not self.every(self.cfg.eval_every):
            self.evaluate()
        if self.rank == 0 and self.log_path.exists():
            import matplotlib.pyplot as plt

            from ..viz import plot_loss_curves

            plt.close(plot_loss_curves(read_records(self.log_path), self.out / "loss_curve.png"))
        if self.world > 1 and self.owns_group:
            dist.destroy_process_group()
        return TrainResult(self.model, p.step, self.out, self.metrics, time.perf_counter() - self.start_time)
