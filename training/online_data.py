"""Freshly rendered training panoramas: every epoch sees new views of the built-in world.

:class:`RenderedPanoramaDataset` is a map-style dataset over a virtual epoch of ``length``
panoramas. Index ``i`` fixes the layout (``layout_seeds[i % len(layout_seeds)]``, so an epoch
visits every layout about equally) and the sampler's augmentation seed fixes the pose (a random
navigable position and heading) and the flip/roll augmentation, so what a step sees depends only
on ``(seed, epoch, position)``, as for the image datasets: a resumed run renders the same
panoramas. Each epoch draws new poses; a fixed dataset of ``length`` images is never reused.

The environment (a headless EGL context) is created lazily in the process that first reads an
item, i.e. in each DataLoader worker after the fork, never shared across a fork. The goal column
stands where ``reset(seed=layout)`` puts it, as in ``btnk-env collect --mode poses``.

The layout seeds of the held-out evaluation set (:data:`HELDOUT_LAYOUT_SEEDS`, 1000-1019) are
refused: the model card's held-out figures stay held out.

Config: ``data.kind=render``, ``data.path`` the layout seeds (``"0-999"``), ``data.max_images``
the panoramas per epoch (required: the stream is endless).

Example:
    >>> ds = RenderedPanoramaDataset((32, 64), layout_seeds=[0, 1], length=4)
    >>> image, key = ds[(1, 123)]
    >>> len(ds), tuple(image.shape), image.dtype, key.startswith("rooms-seed-1/")
    (4, (3, 32, 64), torch.float32, True)
    >>> ds.close()
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from btnk_env.training.datasets import DatasetError, ImageTransform

HELDOUT_LAYOUT_SEEDS = range(1000, 1020)
"""Layouts of the held-out evaluation set (``btnk-env collect ... --seeds 1000-1019``); never rendered for training."""

SCENE_CACHE = 1024
"""Layouts whose geometry and textures a worker keeps (about 0.6 MB each)."""


def parse_layout_seeds(text: str) -> list[int]:
    """``"0-999"`` -> the seeds; raises :class:`DatasetError` for held-out or malformed seeds."""
    from btnk_env.collection.seeds import parse_seeds

    try:
        seeds = parse_seeds(text)
    except ValueError as err:
        raise DatasetError(f"data.path for data.kind=render must be layout seeds such as 0-999: {err}") from None
    return check_layout_seeds(seeds)


def check_layout_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list; raises :class:`DatasetError` if any is negative or held out."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise DatasetError("no layout seeds to render; give data.path such as 0-999")
    held = sorted(set(seeds) & set(HELDOUT_LAYOUT_SEEDS))
    if held:
        raise DatasetError(f"layout seeds {held[:5]}{'...' if len(held) > 5 else ''} belong to the held-out evaluation "
                           f"set ({HELDOUT_LAYOUT_SEEDS.start}-{HELDOUT_LAYOUT_SEEDS.stop - 1}); train on others, e.g. 0-999")
    if min(seeds) < 0:
        raise DatasetError(f"layout seeds must be >= 0, got {min(seeds)}")
    return seeds


class RenderedPanoramaDataset(Dataset):
    """Panoramas of ``btnk_env/PanoramaRooms-v0`` rendered on demand at random poses.

    Args:
        img_size: ``(H, 2H)`` output size (the world renders 2:1 equirectangular panoramas).
        layout_seeds: apartments to render (never the held-out 1000-1019).
        length: panoramas per epoch.
        hflip, pano_roll: augmentation, as :class:`btnk_env.training.datasets.ImageTransform`.
        world: a preset of :data:`btnk_env.envs.panorama_rooms.WORLDS`.

    Items: ``((i, aug_seed)) -> (image (3, H, 2H) float32 ImageNet-normalized, key)`` with key
    ``"rooms-seed-<layout>/<aug_seed>"``.
    """

    kind = "render"

    def __init__(self, img_size: Tuple[int, int], layout_seeds: Sequence[int] = range(1000), length: int = 6400,
                 hflip: bool = False, pano_roll: bool = False, world: str = "apartment") -> None:
        h, w = (int(v) for v in img_size)
        if w != 2 * h or not 16 <= h <= 1024:
            raise DatasetError(f"rendered panoramas are H x 2H with 16 <= H <= 1024; model.img_size is {[h, w]}")
        if length < 1:
            raise DatasetError(f"data.max_images (panoramas per epoch) must be >= 1 for rendered data, got {length}")
        self.img_size, self.layout_seeds, self.length = (h, w), check_layout_seeds(layout_seeds), int(length)
        self.world = world
        self.transform = ImageTransform((h, w), "resize", hflip=hflip, pano_roll=pano_roll)
        self._env = None
        self._pid: Optional[int] = None

    def __len__(self) -> int:
        return self.length

    def _environment(self):
        if self._env is None or self._pid != os.getpid():  # a forked worker builds its own EGL context
            from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

            self._env = PanoramaRoomsEnv(height=self.img_size[0], world=self.world, scene_cache=SCENE_CACHE)
            self._pid = os.getpid()
        return self._env

    def render(self, layout_seed: int, pose_seed: int) -> np.ndarray:
        """``(H, 2H, 3)`` uint8 panorama of layout ``layout_seed`` at the pose ``pose_seed`` draws."""
        env = self._environment()
        if env.layout is None or env.layout.seed != layout_seed:
            env.reset(seed=int(layout_seed))  # the layout and its goal, as btnk-env collect places it
        position, heading = env.sample_navigable_pose(np.random.default_rng([int(layout_seed), int(pose_seed)]))
        return env.set_pose(position, heading)

    def __getitem__(self, index: Tuple[int, int]) -> Tuple[torch.Tensor, str]:
        i, aug_seed = index if isinstance(index, tuple) else (int(index), 0)
        layout = self.layout_seeds[int(i) % len(self.layout_seeds)]
        pixels = self.render(layout, aug_seed)
        return self.transform(pixels, aug_seed), f"rooms-seed-{layout}/{aug_seed}"

    def close(self) -> None:
        """Release the rendering context of this process."""
        if self._env is not None and self._pid == os.getpid():
            self._env.close()
        self._env = None

    def __getstate__(self) -> dict:  # a pickled copy (spawned worker) renders with its own context
        state = dict(self.__dict__)
        state["_env"], state["_pid"] = None, None
        return state


__all__ = ["HELDOUT_LAYOUT_SEEDS", "RenderedPanoramaDataset", "check_layout_seeds", "parse_layout_seeds"]
