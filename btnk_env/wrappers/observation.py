"""Observation wrappers for one Gymnasium environment: image -> bottleneck-MAE latent, and the
light resizing wrapper that prepares frames for an encoder inside the policy (:mod:`btnk_env.sb3`).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from btnk_env.wrappers.frames import DeviceLike, LatentSetup, LatentSetupViews, SizeLike, check_model, target_size
from btnk_env.wrappers.spaces import find_image_key
from btnk_env.models import BtnkMAE, resize_frames

__all__ = ["BtnkMAEObservation", "ResizeForModel"]


class BtnkMAEObservation(LatentSetupViews, gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace an image observation by its bottleneck-MAE latent.

    The frozen encoder runs under ``torch.inference_mode()``, one frame per step, where the model
    is. ``model`` is shared and never changed (no size, device or mode is set on it): the encoder
    reads the size from its input, so wrappers of different frame sizes can share one model.

    Observation in: ``Box(0, 255, (H, W, 3), uint8)``, or a ``Dict`` holding one at ``image_key``.
    Observation out: ``Box(-inf, inf, (D,), float32)`` (``(K, D)`` with ``history=K > 1``, the
    oldest latent first, zeros before the episode's first frame); for a ``Dict`` the same ``Dict``
    with the image replaced by a ``"latent"`` entry (kept beside it with ``keep_image=True``); for
    a ``Box`` with ``keep_image=True`` a ``Dict`` of ``"image"`` and ``"latent"``.

    Input size: frames are resized (bilinear with antialiasing) to ``size`` if given, else with
    ``keep_aspect=True`` (default) to the model's input height at the frames' aspect ratio (a
    512x1024 panorama on a 224 model -> 224x448, a native 14x28 patch grid), else with
    ``keep_aspect=False`` to the model's trained size (panoramas squashed to a square, as the
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
        device: ``None`` (default: where the model is), or the device the model must already be
            on (``"cpu"``, ``"cuda"``, ``"auto"``, a ``torch.device``; checked, never moved to).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA), ``"int8"`` (CPU) or ``"auto"`` (bf16 on
            devices with bf16 matrix units, else fp32); latents are float32 whatever the precision.
        backend: ``"torch"`` (default: follows training updates of the shared model), ``"auto"``,
            ``"onnxruntime"`` or ``"openvino"`` (CPU; a snapshot of the weights), see :mod:`btnk_env.models.backends`.

    Example:
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=32)
        >>> env = BtnkMAEObservation(RandomFrames((32, 64, 3)), model, history=2, device="cpu")
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, obs.dtype, env.input_size, model.img_size   # 2:1 frames keep their aspect
        ((2, 64), dtype('float32'), (32, 64), (32, 32))
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
        device: DeviceLike = None,
        precision: str = "fp32",
        backend: str = "torch",
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, model=model, image_key=image_key, keep_image=keep_image, keep_aspect=keep_aspect,
            size=size, history=history, device=device, precision=precision, backend=backend,
            _disable_deepcopy=True,  # the model is shared, never copied
        )
        gym.ObservationWrapper.__init__(self, env)
        self.model = check_model(model, type(self).__name__)
        self.setup = LatentSetup.build(
            env.observation_space, model, type(self).__name__, image_key=image_key, keep_image=keep_image,
            keep_aspect=keep_aspect, size=size, history=history, device=device, precision=precision,
            backend=backend,
        )
        self.observation_space = self.setup.observation_space
        self._buffer = np.zeros((self.history, model.latent_dim), np.float32)  # (K, D), oldest first

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> Tuple[Any, dict[str, Any]]:
        """Reset the environment and the latent history; returns the first latent observation."""
        self._buffer[:] = 0.0
        return super().reset(seed=seed, options=options)

    def observation(self, observation: Any) -> Any:
        """Encode the frame of ``observation`` (one forward) and build the wrapped observation."""
        latent = self.encoder.encode(self.setup.frames(observation)[None])[0]  # (D,)
        self._buffer[:-1] = self._buffer[1:]
        self._buffer[-1] = latent
        return self.setup.wrap(observation, self._buffer.copy())


class ResizeForModel(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Resize uint8 image observations to a model's input size, keeping them uint8 images.

    The light preprocessing for an encoder inside the policy
    (:class:`btnk_env.sb3.BtnkMAEFeaturesExtractor`): stable-baselines3 then transposes the frames
    to channel-first and scales them to ``[0, 1]``; the extractor normalizes them. The input size
    is chosen as in :class:`BtnkMAEObservation` (``size``, else ``keep_aspect``); the model is
    only read (its patch and trained size), never changed or copied.

    Observation in: ``Box(0, 255, (H, W, 3), uint8)``. Out: ``Box(0, 255, (H', W', 3), uint8)``,
    resized bilinearly with antialiasing and rounded.

    Example:
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=32)
        >>> env = ResizeForModel(RandomFrames((60, 80, 3)), model)
        >>> env.observation_space.shape, model.img_size
        ((32, 48, 3), (32, 32))
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
        self.observation_space = spaces.Box(0, 255, (*self.input_size, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(H', W', 3)`` uint8."""
        return resize_frames(observation, self.input_size)
