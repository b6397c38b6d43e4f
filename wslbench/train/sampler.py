"""The training order: a seeded shuffle sharded over ranks (DistributedSampler's semantics,
also with one process, so that 1 x 32 and 2 x 16 see the same global batches) that can start
part-way through an epoch when a run resumes from an interrupt checkpoint. It yields
``(epoch, index)`` pairs: the epoch travels with each index to the loader's workers
(:class:`wslbench.train.workers.EpochItems`), which may outlive an epoch."""
from __future__ import annotations

import itertools

from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler


class ResumableSampler(Sampler):
    def __init__(self, dataset, world_size: int, rank: int, seed: int):
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Order of ``epoch`` (seed + epoch), starting after its first ``skip`` samples of this rank."""
        self.inner.set_epoch(epoch)
        self.epoch = int(epoch)
        self.skip = skip

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, i) for i in itertools.islice(iter(self.inner), self.skip, None))

    def __len__(self) -> int:
        return len(self.inner) - self.skip
