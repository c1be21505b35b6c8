"""Observation wrappers for one Gymnasium environment: image -> bottleneck-MAE latent, and the
light resizing wrapper that prepares frames for an encoder inside the policy (:mod:`btnk_env.sb3`).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Tuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from btnk_env.wrappers.frames import (
    LATENT_KEY,
    DeviceLike,
    FrameEncoder,
    SizeLike,
    check_model,
    find_image_key,
    resize_uint8,
    target_size,
)
from models import BtnkMAE

logger = logging.getLogger(__name__)

__all__ = ["BtnkMAEObservation", "ResizeForModel", "latent_space", "wrapped_space"]


def latent_space(latent_dim: int, history: int = 1) -> spaces.Box:
    """``Box(-inf, inf, (D,), float32)``, or ``(K, D)`` with a history of ``K > 1`` latents."""
    shape = (latent_dim,) if history == 1 else (history, latent_dim)
    return spaces.Box(-np.inf, np.inf, shape, np.float32)


def wrapped_space(space: spaces.Space, image_key: Optional[str], latent: spaces.Box, keep_image: bool) -> spaces.Space:
    """The observation space after replacing the image by ``latent`` (see :class:`BtnkMAEObservation`)."""
    if image_key is None:
        return spaces.Dict({"image": space, LATENT_KEY: latent}) if keep_image else latent
    entries = {k: s for k, s in space.spaces.items() if keep_image or k != image_key}
    entries[LATENT_KEY] = latent
    return spaces.Dict(entries)


def _check_history(history: int) -> int:
    if not isinstance(history, (int, np.integer)) or isinstance(history, bool) or history < 1:
        raise ValueError(f"history must be an int >= 1 (the number of latents stacked), got {history!r}")
    return int(history)


class BtnkMAEObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace an image observation by its bottleneck-MAE latent.

    The frozen encoder runs in eval mode under ``torch.inference_mode()``, one frame per step.
    ``model`` is shared, never copied: the wrapper moves it to ``device``, puts it in eval mode and
    sets its input size (``model.set_img_size``), so several wrappers can use one model.

    Observation in: ``Box(0, 255, (H, W, 3), uint8)``, or a ``Dict`` holding one at ``image_key``.
    Observation out: ``Box(-inf, inf, (D,), float32)`` (``(K, D)`` with ``history=K > 1``, the
    oldest latent first, zeros before the episode's first frame); for a ``Dict`` the same ``Dict``
    with the image replaced by a ``"latent"`` entry (kept beside it with ``keep_image=True``); for
    a ``Box`` with ``keep_image=True`` a ``Dict`` of ``"image"`` and ``"latent"``.

    Input size: frames are resized (bilinear with antialiasing) to ``size`` if given, else with
    ``keep_aspect=True`` (default) to the model's input height at the frames' aspect ratio (a
    512x1024 panorama on a 224 model -> 224x448, a native 14x28 patch grid), else with
    ``keep_aspect=False`` to the model's current size (panoramas squashed to a square, as the
    original 224x224 panorama models expect).

    Args:
        env: environment with uint8 RGB image observations.
        model: a :class:`models.BtnkMAE`.
        image_key: key of the image in a ``Dict`` observation (found automatically if there is
            exactly one uint8 ``(H, W, 3)`` entry).
        keep_image: keep the image beside the latent.
        keep_aspect: see "Input size" above.
        size: explicit encoder input ``(H, W)`` (or an int for a square), multiples of the patch.
        history: number K of latents stacked (1: no stacking).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, a ``torch.device``, or
            ``None`` (where the model is).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA), ``"int8"`` (CPU) or ``"auto"`` (bf16 on
            devices with bf16 matrix units, else fp32); latents are float32 whatever the precision.

    Example:
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=32)
        >>> env = BtnkMAEObservation(RandomFrames((32, 64, 3)), model, history=2, device="cpu")
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, obs.dtype, model.img_size        # 2:1 frames keep their aspect
        ((2, 64), dtype('float32'), (32, 64))
        >>> bool((obs[0] == 0).all()), env.model is model
        (True, True)
    """

    def __init__(
        self,
        env: gym.Env,
        model: BtnkMAE,
        *,
        image_key: Optional[str] = None,
        keep_image: bool = False,
        keep_aspect: bool = True,
        size: SizeLike = None,
        history: int = 1,
        device: DeviceLike = "auto",
        precision: str = "fp32",
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, model=model, image_key=image_key, keep_image=keep_image, keep_aspect=keep_aspect,
            size=size, history=history, device=device, precision=precision,
            _disable_deepcopy=True,  # the model is shared, never copied
        )
        gym.ObservationWrapper.__init__(self, env)
        owner = type(self).__name__
        self.model = check_model(model, owner)
        self.image_key = find_image_key(env.observation_space, image_key, owner)
        image_space = env.observation_space if self.image_key is None else env.observation_space[self.image_key]
        self.keep_image = bool(keep_image)
        self.history = _check_history(history)
        self.input_size = target_size(image_space.shape[:2], model, keep_aspect, size)
        self.encoder = FrameEncoder(model, self.input_size, device, precision)
        self.latent_space = latent_space(model.latent_dim, self.history)
        self.observation_space = wrapped_space(env.observation_space, self.image_key, self.latent_space, self.keep_image)
        self._buffer = np.zeros((self.history, model.latent_dim), np.float32)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> Tuple[Any, dict[str, Any]]:
        """Reset the environment and the latent history; returns the first latent observation."""
        self._buffer[:] = 0.0
        return super().reset(seed=seed, options=options)

    def observation(self, observation: Any) -> Any:
        """Encode the frame of ``observation`` (one forward) and build the wrapped observation."""
        frame = observation if self.image_key is None else observation[self.image_key]
        latent = self.encoder.encode(frame[None])[0]  # (D,)
        if self.history == 1:
            out = latent
        else:
            self._buffer[:-1] = self._buffer[1:]
            self._buffer[-1] = latent
            out = self._buffer.copy()  # (K, D), oldest first
        if self.image_key is None:
            return {"image": observation, LATENT_KEY: out} if self.keep_image else out
        result = {k: v for k, v in observation.items() if self.keep_image or k != self.image_key}
        result[LATENT_KEY] = out
        return result


class ResizeForModel(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Resize uint8 image observations to a model's input size, keeping them uint8 images.

    The light preprocessing for an encoder inside the policy
    (:class:`btnk_env.sb3.BtnkMAEFeaturesExtractor`): stable-baselines3 then transposes the frames
    to channel-first and scales them to ``[0, 1]``; the extractor normalizes them. The input size
    is chosen as in :class:`BtnkMAEObservation` (``size``, else ``keep_aspect``) and the model is
    set to it (``model.set_img_size``); the model is not otherwise touched or copied.

    Observation in: ``Box(0, 255, (H, W, 3), uint8)``. Out: ``Box(0, 255, (H', W', 3), uint8)``,
    resized bilinearly with antialiasing and rounded.

    Example:
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=32)
        >>> env = ResizeForModel(RandomFrames((60, 80, 3)), model)
        >>> env.observation_space.shape, model.img_size
        ((32, 48, 3), (32, 48))
    """

    def __init__(self, env: gym.Env, model: BtnkMAE, *, keep_aspect: bool = True, size: SizeLike = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, model=model, keep_aspect=keep_aspect, size=size, _disable_deepcopy=True
        )
        gym.ObservationWrapper.__init__(self, env)
        owner = type(self).__name__
        self.model = check_model(model, owner)
        find_image_key(env.observation_space, None, owner)
        self.input_size = target_size(env.observation_space.shape[:2], model, keep_aspect, size)
        model.set_img_size(self.input_size)
        self.observation_space = spaces.Box(0, 255, (*self.input_size, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(H', W', 3)`` uint8."""
        frames = torch.from_numpy(np.ascontiguousarray(observation))[None]  # (1, H, W, 3)
        return resize_uint8(frames, self.input_size)[0].numpy()
