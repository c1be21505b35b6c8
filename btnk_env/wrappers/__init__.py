"""Gymnasium wrappers that turn image observations into bottleneck-MAE latents.

- :mod:`~btnk_env.wrappers.observation`: :class:`BtnkMAEObservation` (one environment) and
  :class:`ResizeForModel` (uint8 frames resized for a model, for policies that encode themselves).
- :mod:`~btnk_env.wrappers.vector`: :class:`BtnkMAEVectorObservation` (one batched forward per step).
- :mod:`~btnk_env.wrappers.frames`: frame encoding shared by both (space checks, size, device).
"""

from btnk_env.wrappers.observation import BtnkMAEObservation, ResizeForModel
from btnk_env.wrappers.vector import BtnkMAEVectorObservation

__all__ = ["BtnkMAEObservation", "BtnkMAEVectorObservation", "ResizeForModel"]
