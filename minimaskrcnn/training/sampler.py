"""The order of the training images, and their augmentation, as functions of (seed, epoch, index).

Why `--resume` continues exactly:
- The data order is a DistributedSampler shuffle seeded with (seed, epoch); the sampler yields
  (epoch, index) pairs and can start mid-epoch, so a resumed run sees the same remaining images.
- Each sample's augmentation draws from a generator seeded with (seed, epoch, index), not from the
  global one, so it does not depend on workers or on where a run was resumed.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


class ResumableSampler(Sampler):
    """This process's share of DistributedSampler's (seed, epoch) shuffle, as (epoch, index) pairs,
    starting `skip` indices into the epoch (set_position), so a resumed run continues the order."""

    def __init__(self, dataset, seed: int, rank: int = 0, world_size: int = 1):
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.epoch, self.skip = 0, 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        self.inner.set_epoch(self.epoch)
        return ((self.epoch, i) for i in itertools.islice(iter(self.inner), self.skip, None))

    def __len__(self) -> int:
        return len(self.inner) - self.skip


class SeededSamples(torch.utils.data.Dataset):
    """dataset[index] with its random augmentation drawn from a generator seeded by (seed, epoch, index)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):  # leaves the global CPU generator as it was
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
            return self.dataset[index]
