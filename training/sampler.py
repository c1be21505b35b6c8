"""Deterministic, resumable, distributed batch order.

Epoch ``e`` shuffles the dataset with a generator seeded from ``(seed, e)``. Like
``DistributedSampler``, rank ``r`` of ``W`` takes every ``W``-th index of the permutation, so the
union of the ranks' ``k``-th micro-batches is exactly the ``k``-th batch of one process with
``W`` times the batch size. Incomplete global batches are dropped. Each index comes with an
augmentation seed derived from ``(seed, e, index)``: what a sample looks like does not depend on
the number of processes, workers, or where a run was resumed. :meth:`set_epoch` takes the
micro-batch to start from, so a run resumed mid-epoch sees the rest of that epoch's order.

Example:
    >>> s = EpochBatchSampler(10, batch_size=2, world_size=1, rank=0, seed=0)
    >>> s.set_epoch(0); len(s), [i for i, _ in next(iter(s))]
    (5, [4, 1])
    >>> r0 = EpochBatchSampler(10, 1, world_size=2, rank=0, seed=0); r0.set_epoch(0)
    >>> [i for i, _ in next(iter(r0))]
    [4]
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import torch

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant to spread seeds


def aug_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for the augmentation of sample ``index`` in ``epoch``."""
    x = (seed * 1_000_003 + epoch) * _MIX + index * 0xBF58476D1CE4E5B9
    return (x ^ (x >> 31)) & 0x7FFF_FFFF_FFFF_FFFF


class EpochBatchSampler:
    """Yields this rank's micro-batches of ``(index, aug_seed)`` for the current epoch.

    Args:
        n: dataset length.
        batch_size: micro-batch size per process.
        world_size, rank: the process group.
        seed: run seed.
    """

    def __init__(self, n: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0) -> None:
        if n < batch_size * world_size:
            raise ValueError(
                f"the dataset has {n} images, fewer than one global batch ({batch_size} per process x "
                f"{world_size} processes); lower train.batch_size or add images"
            )
        self.n, self.batch_size, self.world_size, self.rank, self.seed = n, batch_size, world_size, rank, seed
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Full micro-batches per epoch (the same on every rank)."""
        return self.n // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and skip its first ``start_batch`` micro-batches."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def _order(self) -> List[int]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        used = self.batches_per_epoch * self.batch_size * self.world_size
        return perm[:used][self.rank::self.world_size]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        order = self._order()
        b = self.batch_size
        for k in range(self.start_batch, self.batches_per_epoch):
            yield [(i, aug_seed(self.seed, self.epoch, i)) for i in order[k * b:(k + 1) * b]]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch
