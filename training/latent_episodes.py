"""Fixed-length windows of latent episodes, for training dynamics models (world models) on latents.

The episodes come from ``btnk-env encode`` of an episode dataset (:mod:`btnk_env.formats.latents`);
the arrays are memory-mapped, so a dataset larger than memory costs only what a batch reads.

Example (a folder written by ``btnk-env encode`` of an episode dataset; docs/latent_datasets.md)::

    from torch.utils.data import DataLoader
    from btnk_env.training.latent_episodes import LatentWindows

    windows = LatentWindows("data/episodes_latents", window=16)
    for batch in DataLoader(windows, batch_size=32, shuffle=True):
        z, a = batch["latents"], batch["actions"]        # (32, 16, D) float32, (32, 16) int64
        # predict z[:, 1:] from z[:, :-1] and a[:, :-1]
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from btnk_env.formats.latents import LatentDataset

__all__ = ["LatentWindows"]


class LatentWindows(Dataset):
    """Windows of ``K`` consecutive frames of one episode; a window never crosses an episode boundary.

    Item ``i`` is a dict of tensors:

    - ``latents``: ``(K, D)`` float32, the frames' latents;
    - ``actions``: ``(K,)`` int64, ``actions[k]`` is the action taken at ``latents[k]`` (it leads to
      ``latents[k + 1]``; the last one leads out of the window, and is ``-1`` at an episode's last frame);
    - ``rewards``: ``(K,)`` float32, ``terminated``/``truncated``: ``(K,)`` bool, of those actions;
    - ``poses``: ``(K, 4)`` float32 (x, y, z, heading);
    - ``episode``, ``start``: int64 scalars, the episode and the window's first step in it.

    A dynamics model predicting ``latents[1:]`` from ``latents[:-1]`` and ``actions[:-1]`` uses only
    transitions inside the episode.

    Args:
        data: a latent dataset folder of episodes or a :class:`LatentDataset`.
        window: ``K`` >= 1; episodes with fewer than ``K`` frames give no window.
        stride: steps between consecutive window starts in an episode.
    """

    def __init__(self, data: "str | os.PathLike | LatentDataset", window: int, stride: int = 1) -> None:
        self.data = data if isinstance(data, LatentDataset) else LatentDataset(data)
        if self.data.kind != "episodes":
            raise ValueError(f"{self.data.root} holds single panoramas, not episodes: encode an episode dataset")
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
        self.window, self.stride = int(window), int(stride)
        offsets = self.data.offsets
        starts, episodes = [], []
        for e in range(self.data.num_episodes):
            lo, hi = int(offsets[e]), int(offsets[e + 1])
            s = np.arange(lo, hi - self.window + 1, self.stride, dtype=np.int64)
            starts.append(s)
            episodes.append(np.full(len(s), e, np.int64))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)  # (W,) row of each window's first frame
        self.episode_of = np.concatenate(episodes) if episodes else np.zeros(0, np.int64)
        if len(self.starts) == 0:
            longest = int(np.diff(offsets).max()) if len(offsets) > 1 else 0
            raise ValueError(f"no episode of {self.data.root} has {self.window} frames (the longest has {longest}): "
                             "use a shorter window")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = int(self.starts[i])
        b = a + self.window
        d = self.data
        e = int(self.episode_of[i])
        return {
            "latents": torch.from_numpy(np.array(d.latents[a:b], np.float32)),
            "actions": torch.from_numpy(np.array(d.actions[a:b], np.int64)),
            "rewards": torch.from_numpy(np.array(d.rewards[a:b], np.float32)),
            "terminated": torch.from_numpy(np.array(d.terminated[a:b], bool)),
            "truncated": torch.from_numpy(np.array(d.truncated[a:b], bool)),
            "poses": torch.from_numpy(np.array(d.poses[a:b], np.float32)),
            "episode": torch.tensor(e),
            "start": torch.tensor(a - int(d.offsets[e])),
        }
