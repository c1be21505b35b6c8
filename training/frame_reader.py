"""Frames read and decoded ahead of the model, in threads of this process: ``btnk-env encode``'s input.

PNG and JPEG decoding (Pillow) releases the GIL, so decoder threads overlap with the model's
forward without worker processes: nothing to start (a DataLoader worker imports torch first,
seconds on a loaded machine) and no frames pickled between processes. Files are read in order
(shards of a folder sequentially), a batch per task, at most ``workers + ahead`` batches in flight;
frames stay uint8 until the model's device converts them (:func:`btnk_env.models.frames_to_tensor`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from btnk_env.models import frames_to_tensor
from btnk_env.training.datasets import decode_image


def read_batch(files: Sequence[Path], indices: Sequence[int], size: Tuple[int, int],
               frame_hw: Optional[Tuple[int, int]]) -> torch.Tensor:
    """The frames ``files[i]`` for ``i`` in ``indices``, decoded.

    With ``frame_hw`` (a dataset of one frame size) ``(B, H, W, 3)`` uint8, checked to be that size;
    without (an image folder of mixed sizes) each is converted alone: ``(B, 3, h, w)`` float32,
    ImageNet-normalized at ``size``.
    """
    frames = [decode_image(files[i]) for i in indices]  # each (H, W, 3) uint8
    if frame_hw is None:
        return torch.cat([frames_to_tensor(f, size=size) for f in frames])
    for i, f in zip(indices, frames):
        if f.shape[:2] != tuple(frame_hw):
            raise ValueError(f"{files[i]} is {f.shape[0]}x{f.shape[1]}, the dataset's frames are "
                             f"{frame_hw[0]}x{frame_hw[1]}")
    return torch.from_numpy(np.stack(frames))


def read_batches(files: Sequence[Path], batches: Sequence[List[int]], size: Tuple[int, int],
                 frame_hw: Optional[Tuple[int, int]], workers: int = 2, ahead: int = 2) -> Iterator[torch.Tensor]:
    """:func:`read_batch` of each of ``batches`` in order, decoded by ``workers`` threads ahead of
    the caller (0: in the caller's thread)."""
    files = list(files)
    if workers < 1:
        for indices in batches:
            yield read_batch(files, indices, size, frame_hw)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="btnk-read") as pool:
        pending: deque = deque()
        todo = iter(batches)
        try:
            for indices in todo:
                pending.append(pool.submit(read_batch, files, indices, size, frame_hw))
                if len(pending) >= workers + ahead:
                    break
            while pending:
                batch = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(read_batch, files, nxt, size, frame_hw))
                yield batch
        finally:
            for future in pending:
                future.cancel()
