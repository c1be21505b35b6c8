"""Gymnasium wrappers that turn image observations into bottleneck-MAE latents.

- :mod:`~btnk_env.wrappers.observation`: :class:`BtnkMAEObservation` (one environment) and
  :class:`ResizeForModel` (uint8 frames resized for a model, for policies that encode themselves).
- :mod:`~btnk_env.wrappers.vector`: :class:`BtnkMAEVectorObservation` (one batched forward per step).
- :mod:`~btnk_env.wrappers.spaces`: checking the image space; the wrapped space and observation.
- :mod:`~btnk_env.wrappers.frames`: frames -> latents (:class:`FrameEncoder`) and the setup both
  wrappers are built from (:class:`LatentSetup`). A model handed in is never changed.
"""

from btnk_env.wrappers.observation import BtnkMAEObservation, ResizeForModel
from btnk_env.wrappers.vector import BtnkMAEVectorObservation

__all__ = ["BtnkMAEObservation", "BtnkMAEVectorObservation", "ResizeForModel"]
