"""Streaming a shard set (``index.json`` + webdataset tar shards) into DDP training.

Every epoch has one order, a function of ``(seed, epoch)`` and the index's shard counts only:

1. the shards are permuted by a generator seeded from ``(seed, epoch)``;
2. the permuted list is dealt round-robin to ``world_size x num_workers`` slots (slot
   ``rank * W + w``: DataLoader worker ``w`` of rank ``r``, ``W = max(1, data.num_workers)``), so
   every rank and every worker reads disjoint shards, each shard once;
3. inside a slot, each shard's samples are permuted (generator seeded from ``(seed, epoch,
   shard)``) and the shards concatenated;
4. every slot yields the same number ``q`` of micro-batches: ``q = floor(m / batch_size)``, with
   ``m`` the smallest number of samples any slot can receive (the sum of the
   ``floor(num_shards / slots)`` smallest shard counts), so it is the same for every epoch and
   every rank; the samples beyond ``q * batch_size`` in a slot are not used that epoch (with
   equal shards, at most ``(num_shards mod slots)`` shards' worth; the permutation changes which).
   Every rank therefore runs exactly ``q * W`` batches: DDP never waits for a rank that ran dry.

The rank's ``j``-th micro-batch is micro-batch ``j // W`` of worker ``j % W`` (the DataLoader's
round-robin). Resuming at micro-batch ``s`` of an epoch is exact: each worker skips the batches
it had produced (whole shards by their index counts, without reading them; then samples inside
one shard), and DataLoader worker ``w`` plays the part of worker ``(w + s) % W`` so the
round-robin continues where it stopped. Augmentation seeds come from ``(seed, epoch, sample
index)``. What a resume restores exactly: the batches, their order and their augmentation, as
long as ``seed``, ``batch_size``, the number of processes, ``data.num_workers`` and the shard set
are unchanged; change any of them and the next epochs are still complete and disjoint, but the
resumed epoch's remaining order is a different one (its seen samples are not tracked).

Mixing is per shard (a micro-batch holds samples of one shard): collect with ``poses`` mode and
many seeds per shard, and keep ``num_shards >= 10 x slots`` so little is left out per epoch.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from btnk_env import formats as F
from btnk_env.training.datasets import DatasetError, ImageTransform, collate_skip, decode_image
from btnk_env.training.sampler import aug_seed

__all__ = ["ShardStream", "open_shard_stream"]

logger = logging.getLogger(__name__)

_MIX = 1_000_003


class ShardStream(IterableDataset):
    """The samples of a shard set as per-rank, per-worker micro-batches (see the module docstring).

    Call :meth:`configure` once, then :meth:`set_epoch` and :meth:`loader` each epoch.

    Args:
        shard_set: a resolved :class:`~btnk_env.formats.ShardSet`.
        transform: an :class:`~btnk_env.training.datasets.ImageTransform`.
        max_images: use only the first N samples (whole shards, the last one cut).
    """

    kind = "shards"

    def __init__(self, shard_set: F.ShardSet, transform: ImageTransform, max_images: Optional[int] = None) -> None:
        self.shard_set, self.transform = shard_set, transform
        shards, left = [], max_images if max_images is not None else shard_set.num_samples
        for e in shard_set.shards:
            if left <= 0:
                break
            shards.append((e, min(e.count, left)))  # (entry, samples used from it)
            left -= e.count
        self.shards = shards
        self.configure(1)
        self.set_epoch(0)

    def __len__(self) -> int:
        """Samples in the set (an epoch uses ``batches_per_epoch * batch_size`` of them per rank)."""
        return sum(n for _, n in self.shards)

    def configure(self, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0, num_workers: int = 0) -> None:
        """Fix the micro-batch size, the process group, the seed and the DataLoader workers."""
        self.batch_size, self.world_size, self.rank, self.seed = int(batch_size), int(world_size), int(rank), int(seed)
        self.num_workers = int(num_workers)
        self.workers = max(1, self.num_workers)
        slots = self.world_size * self.workers
        if len(self.shards) < slots:
            raise DatasetError(f"{self.shard_set.root}: {len(self.shards)} shards for {self.world_size} processes x "
                               f"{self.workers} DataLoader workers; every worker needs a shard of its own: lower "
                               "data.num_workers or collect with a smaller --shard-size")
        smallest = sorted(n for _, n in self.shards)[: len(self.shards) // slots]
        self.per_slot = sum(smallest) // self.batch_size  # micro-batches every slot yields
        if self.per_slot == 0:
            raise DatasetError(f"{self.shard_set.root}: a worker's shards hold {sum(smallest)} samples, fewer than one "
                               f"micro-batch of {self.batch_size}; lower train.batch_size or data.num_workers")
        used = self.per_slot * self.batch_size * slots
        if used < 0.9 * len(self):
            logger.warning("%s: an epoch uses %d of %d samples (%d shards over %d slots); use more, smaller shards",
                           self.shard_set.root, used, len(self), len(self.shards), slots)

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches per epoch on every rank."""
        return self.per_slot * self.workers

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and skip its first ``start_batch`` micro-batches (this rank's)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    # ------------------------------------------------------------------ the order
    def slot_shards(self, epoch: int, rank: int, worker: int) -> List[int]:
        """Indices (into the shard list) read by ``worker`` of ``rank`` in ``epoch``, in order."""
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        order = torch.randperm(len(self.shards), generator=g).tolist()
        return order[rank * self.workers + worker::self.world_size * self.workers]

    def _samples(self, shard: int) -> List[Tuple[str, int, bytes]]:
        """``(key, global index, png bytes)`` of one shard, in the epoch's order for it."""
        entry, used = self.shards[shard]
        path = self.shard_set.path(entry)
        samples = []
        for pos, (key, sample) in enumerate(F.iter_shard(path)):
            if F.IMAGE_EXT not in sample:
                raise DatasetError(f"shard {path} sample {key} has no .{F.IMAGE_EXT} member")
            samples.append((key, int(key) if key.isdigit() else entry.first + pos, sample[F.IMAGE_EXT]))
        if len(samples) != entry.count:
            raise DatasetError(f"shard {path} holds {len(samples)} samples, the index says {entry.count}: truncated or "
                               "replaced; re-run 'btnk-env collect' with the same settings to rewrite it")
        samples = samples[:used]
        g = torch.Generator().manual_seed((self.seed * _MIX + self.epoch) * _MIX + entry.first)
        return [samples[i] for i in torch.randperm(len(samples), generator=g).tolist()]

    def _decode(self, key: str, index: int, png: bytes, path: Any) -> Tuple[Optional[torch.Tensor], str]:
        try:
            pixels = decode_image(io.BytesIO(png))
        except Exception as err:  # noqa: BLE001 - any decoder failure means "corrupt": skipped and counted
            logger.warning("skipping unreadable image %s in %s: %s", key, path, err)
            return None, f"{path}:{key}"
        size = self.shard_set.image_size
        if size is not None and tuple(pixels.shape[:2]) != tuple(size):
            raise DatasetError(f"shard {path} sample {key} is {pixels.shape[0]}x{pixels.shape[1]}, its index says "
                               f"{size[0]}x{size[1]}: the shard does not belong to this set")
        return self.transform(pixels, aug_seed(self.seed, self.epoch, index)), f"{path}:{key}"

    def _slot_batches(self, worker: int, skip: int) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        """Micro-batches ``skip ..`` of ``worker`` of this rank, collated by :func:`collate_skip`."""
        b = self.batch_size
        need = self.per_slot * b  # samples this slot yields in the epoch
        to_skip = skip * b
        batch: List[Tuple[Optional[torch.Tensor], str]] = []
        taken = 0
        for shard in self.slot_shards(self.epoch, self.rank, worker):
            if taken >= need:
                break
            n = min(self.shards[shard][1], need - taken)
            if to_skip >= n:  # whole shard already consumed before the resume: not even opened
                to_skip -= n
                taken += n
                continue
            path = self.shard_set.path(self.shards[shard][0])
            for key, index, png in self._samples(shard)[to_skip:n]:
                batch.append(self._decode(key, index, png, path))
                if len(batch) == b:
                    yield collate_skip(batch)
                    batch = []
            taken += n
            to_skip = 0

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        info = get_worker_info()
        w, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if nw != self.workers:
            raise RuntimeError(f"ShardStream configured for {self.workers} workers runs in {nw}; use loader()")
        s, W = self.start_batch, self.workers
        logical = (w + s) % W  # round-robin continues where the resumed epoch stopped
        skip = max(0, -(-(s - logical) // W))
        yield from self._slot_batches(logical, skip)

    def loader(self, pin_memory: bool = False) -> DataLoader:
        """This epoch's DataLoader (``batch_size=None``: the workers yield whole micro-batches)."""
        return DataLoader(self, batch_size=None, num_workers=self.num_workers, pin_memory=pin_memory)

    # ------------------------------------------------------------------ evaluation
    def ordered_batches(self, batch_size: int) -> Iterator[Tuple[Tuple[torch.Tensor, List[str]], List[str]]]:
        """Every sample once, in index order, as ``((images, skipped keys), keys)`` batches (for evaluation)."""
        items: List[Tuple[Optional[torch.Tensor], str]] = []
        for entry, used in self.shards:
            path = self.shard_set.path(entry)
            for pos, (key, sample) in enumerate(F.iter_shard(path)):
                if pos >= used:
                    break
                items.append(self._decode(key, entry.first + pos, sample.get(F.IMAGE_EXT, b""), path))
                if len(items) == batch_size:
                    yield collate_skip(items), [k for _, k in items]
                    items = []
        if items:
            yield collate_skip(items), [k for _, k in items]


def open_shard_stream(spec: str, transform: ImageTransform, max_images: Optional[int] = None) -> ShardStream:
    """A :class:`ShardStream` over the shard set ``spec`` names (folder, index file, ``.tar`` or brace pattern).

    Raises:
        DatasetError: the set is missing, damaged, or a listed shard is missing or truncated.
    """
    try:
        shard_set = F.open_shard_set(spec)
    except F.DatasetFormatError as err:
        raise DatasetError(str(err)) from None
    logger.info("shard set %s: %d samples in %d shards", spec, shard_set.num_samples, len(shard_set.shards))
    return ShardStream(shard_set, transform, max_images)

