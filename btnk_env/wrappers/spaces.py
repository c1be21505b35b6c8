"""Observation spaces of the latent wrappers: checking the incoming image space, and the
space (and observation) that replaces the image by its latent.

Used by :mod:`btnk_env.wrappers.observation`, :mod:`btnk_env.wrappers.vector` and
:mod:`btnk_env.sb3`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from gymnasium import spaces

LATENT_KEY = "latent"
"""Name of the latent entry in a ``Dict`` observation."""

__all__ = [
    "LATENT_KEY", "check_history", "check_image_box", "find_image_key", "is_image_box", "latent_space",
    "wrap_observation", "wrapped_space",
]


def is_image_box(space: spaces.Space) -> bool:
    """Whether ``space`` is a uint8 ``(H, W, 3)`` Box."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


def check_image_box(space: spaces.Space, owner: str, where: str = "the observation") -> spaces.Box:
    """Check ``space`` is ``Box(0, 255, (H, W, 3), uint8)``; raise a precise error otherwise."""
    expected = "a uint8 RGB image Box(0, 255, (H, W, 3), uint8)"
    if not isinstance(space, spaces.Box):
        raise TypeError(f"{owner} expects {where} to be {expected}, found {space!r}")
    if space.dtype != np.uint8:
        raise TypeError(
            f"{owner} expects {where} to be {expected}, found dtype {space.dtype} in {space!r}; "
            f"convert frames to uint8 in [0, 255] first"
        )
    shape = space.shape
    if len(shape) != 3 or shape[-1] != 3:
        hint = ""
        if len(shape) == 3 and shape[0] == 3:
            hint = "; it looks channel-first: transpose it to (H, W, 3) (e.g. gymnasium.wrappers.TransformObservation)"
        elif len(shape) == 3 and shape[-1] in (1, 4):
            hint = f"; it has {shape[-1]} channels, the model takes 3 (RGB)"
        raise ValueError(f"{owner} expects {where} to be {expected}, found shape {shape}{hint}")
    return space


def find_image_key(space: spaces.Space, image_key: Optional[str], owner: str) -> Optional[str]:
    """The key of the image inside a ``Dict`` space (``None`` for a ``Box``); checks the image space."""
    if isinstance(space, spaces.Dict):
        if LATENT_KEY in space.spaces:
            raise ValueError(f"{owner} adds a {LATENT_KEY!r} key but the observation Dict already has one")
        if image_key is None:
            candidates = [k for k, s in space.spaces.items() if is_image_box(s)]
            if len(candidates) != 1:
                raise ValueError(
                    f"{owner}: the observation is a Dict with keys {list(space.spaces)}; pass image_key= the key of "
                    f"the uint8 (H, W, 3) image (found {len(candidates)} candidates: {candidates})"
                )
            image_key = candidates[0]
        if image_key not in space.spaces:
            raise KeyError(f"{owner}: image_key {image_key!r} is not in the observation Dict, which has keys {list(space.spaces)}")
        check_image_box(space.spaces[image_key], owner, where=f"observation[{image_key!r}]")
        return image_key
    if image_key is not None:
        raise ValueError(f"{owner}: image_key={image_key!r} was given but the observation is {space!r}, not a Dict")
    check_image_box(space, owner)
    return None


def check_history(history: int) -> int:
    """``history`` as an int >= 1 (the number of latents stacked); a clear error otherwise."""
    if not isinstance(history, (int, np.integer)) or isinstance(history, bool) or history < 1:
        raise ValueError(f"history must be an int >= 1 (the number of latents stacked), got {history!r}")
    return int(history)


def latent_space(latent_dim: int, history: int = 1) -> spaces.Box:
    """``Box(-inf, inf, (D,), float32)``, or ``(K, D)`` with a history of ``K > 1`` latents."""
    shape = (latent_dim,) if history == 1 else (history, latent_dim)
    return spaces.Box(-np.inf, np.inf, shape, np.float32)


def wrapped_space(space: spaces.Space, image_key: Optional[str], latent: spaces.Box, keep_image: bool) -> spaces.Space:
    """The observation space after replacing the image by ``latent`` (see :func:`wrap_observation`)."""
    if image_key is None:
        return spaces.Dict({"image": space, LATENT_KEY: latent}) if keep_image else latent
    entries = {k: s for k, s in space.spaces.items() if keep_image or k != image_key}
    entries[LATENT_KEY] = latent
    return spaces.Dict(entries)


def wrap_observation(observation: Any, image_key: Optional[str], keep_image: bool, latent: np.ndarray) -> Any:
    """The wrapped observation (one, or a batch): the image replaced by ``latent`` (kept beside
    it with ``keep_image``); a ``Box`` image with ``keep_image`` becomes ``{"image", "latent"}``."""
    if image_key is None:
        return {"image": observation, LATENT_KEY: latent} if keep_image else latent
    result = {k: v for k, v in observation.items() if keep_image or k != image_key}
    result[LATENT_KEY] = latent
    return result
