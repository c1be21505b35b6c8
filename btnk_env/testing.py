"""A tiny image environment for examples, doctests and quick checks of image wrappers."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import gymnasium as gym
import numpy as np


class RandomFrames(gym.Env):
    """Random uint8 RGB frames of a fixed shape; two actions that change nothing; episodes of
    ``length`` steps. Seeded by ``reset(seed=...)`` like any Gymnasium environment.

    Example:
        >>> env = RandomFrames((32, 64, 3), length=2)
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, obs.dtype, env.step(0)[2:4]
        ((32, 64, 3), dtype('uint8'), (False, False))
    """

    metadata = {"render_modes": []}

    def __init__(self, shape: Tuple[int, int, int] = (32, 64, 3), length: int = 100) -> None:
        self.observation_space = gym.spaces.Box(0, 255, tuple(shape), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.length, self._t = int(length), 0

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> Tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action: Any) -> Tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return self._frame(), 0.0, False, self._t >= self.length, {}
