"""Frame encoding for the latent wrappers: the encoder input size, uint8 frames -> latents in
one forward pass, and :class:`LatentSetup`, the pieces both wrappers are built from.

The model handed in is shared and never changed: no size is set on it, it is not moved and its
mode is not touched. The encoder reads the size from its input, so wrappers of different frame
sizes can share one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from gymnasium import spaces

from btnk_env.wrappers.spaces import check_history, find_image_key, latent_space, wrap_observation, wrapped_space
from btnk_env.models import BtnkMAE, frames_to_tensor
from btnk_env.models.config import check_img_size
from btnk_env.models.device import resolve_device
from btnk_env.models.precision import check_precision, for_inference

DeviceLike = Union[str, torch.device, None]
SizeLike = Union[int, Tuple[int, int], None]

__all__ = ["FrameEncoder", "LatentSetup", "LatentSetupViews", "check_model", "model_device", "target_size"]


def check_model(model: Any, owner: str) -> BtnkMAE:
    """``model`` if it is a :class:`models.BtnkMAE`; a ``TypeError`` naming the fix otherwise."""
    if not isinstance(model, BtnkMAE):
        raise TypeError(
            f"{owner} needs a models.BtnkMAE, got {type(model).__name__}; "
            f"load one with BtnkMAE.from_pretrained(path) or build one with BtnkMAE('tiny')"
        )
    return model


def model_device(model: BtnkMAE, device: DeviceLike, owner: str) -> torch.device:
    """Where the encoding runs: where ``model`` is. ``device`` (``None``: no check) must name
    that device; wrappers never move a model they are given (move it first: ``model.to(...)``)."""
    here = model.device
    if device is None:
        return here
    want = resolve_device(device)
    if want.type != here.type or (want.index is not None and here.index is not None and want.index != here.index):
        raise ValueError(
            f"{owner}: device={str(device)!r} is {want} but the model is on {here}; move the model first "
            f"(model.to({str(want)!r})) or pass device=None: wrappers run where the model is and never move it"
        )
    return here


def target_size(frame_hw: Tuple[int, int], model: BtnkMAE, keep_aspect: bool = True, size: SizeLike = None) -> Tuple[int, int]:
    """The ``(H, W)`` frames are resized to before encoding.

    ``size`` given: that size (both sides multiples of the patch). Else with ``keep_aspect`` the
    model's trained height and the frames' aspect ratio, the width rounded to a patch multiple
    (a 2:1 panorama on a 224 model -> ``(224, 448)``, a native 14x28 grid); without it the
    model's trained size (a panorama squashed to a square, as the original expects).
    """
    p = model.patch_size
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if h <= 0 or w <= 0 or h % p or w % p:
            raise ValueError(f"size={size!r}: both sides must be positive multiples of the patch size {p}")
        return h, w
    if not keep_aspect:
        return model.img_size
    fh, fw = frame_hw
    h = model.img_size[0]
    w = max(1, round(h * fw / fh / p)) * p
    return h, w


class FrameEncoder:
    """uint8 frames -> float32 latents at one input size, one forward pass per call.

    Shares ``model`` and never changes it (no size, device or mode change; the only copy is the
    reduced-precision one that ``precision != "fp32"`` asks for). Frames are resized to ``size``
    and encoded where the model is; the encoder reads the size from its input.

    Args:
        model: the bottleneck MAE (on the device it should run on).
        size: ``(H, W)`` input size of the encoder (see :func:`target_size`).
        device: ``None`` (where the model is), or the device the model must be on (checked).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA), ``"int8"`` (CPU) or ``"auto"`` (bf16
            where the device has bf16 matrix units, else fp32), see :mod:`btnk_env.models.precision`;
            latents always come back as float32. :attr:`precision` holds the one chosen.
        backend: ``"torch"`` (default: follows training updates of the shared model), ``"auto"``,
            ``"onnxruntime"`` or ``"openvino"`` (CPU; a snapshot of the weights), see :mod:`btnk_env.models.backends`.

    Example:
        >>> from models import BtnkMAE
        >>> encoder = FrameEncoder(BtnkMAE("test", img_size=32), (32, 64))
        >>> encoder.encode(np.zeros((2, 60, 120, 3), np.uint8)).shape
        (2, 64)
    """

    def __init__(self, model: BtnkMAE, size: Tuple[int, int], device: DeviceLike = None, precision: str = "fp32",
                 backend: str = "torch") -> None:
        self.model = check_model(model, type(self).__name__)
        self.size = check_img_size(tuple(size), model.patch_size)
        self.device = model_device(model, device, type(self).__name__)
        self.precision = check_precision(precision, self.device)  # "auto" resolved here
        self._net = for_inference(model, self.precision, backend)  # the model itself for fp32 on torch
        self._pinned: Optional[torch.Tensor] = None

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def _to_device(self, frames: np.ndarray) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 numpy -> torch on the device (no copy on CPU; pinned, async on CUDA)."""
        if not frames.flags.writeable:  # torch wants writable memory (read-only frames are rare)
            frames = frames.copy()
        t = torch.from_numpy(np.ascontiguousarray(frames))
        if self.device.type != "cuda":
            return t.to(self.device)
        if self._pinned is None or self._pinned.shape != t.shape:
            self._pinned = torch.empty(t.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned.copy_(t)
        return self._pinned.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def encode(self, frames: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """``frames: (B, H, W, 3)`` uint8 -> latents ``(B, D)`` float32 numpy (one forward)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (B, H, W, 3) uint8, got shape {frames.shape} dtype {frames.dtype}")
        if frames.shape[0] == 0:
            return np.zeros((0, self.latent_dim), np.float32)
        x = frames_to_tensor(self._to_device(frames), size=self.size)  # (B, 3, H', W') normalized
        latent = self._net.encode(x)  # (B, D)
        return latent.float().cpu().numpy()


@dataclass
class LatentSetup:
    """What the single and the vector latent wrapper are both built from, for one (single)
    observation space: where the image is, the encoder, the wrapped space.

    Build it with :meth:`build`; :meth:`frames` takes the image out of an observation and
    :meth:`wrap` puts the latent in its place.
    """

    image_key: Optional[str]
    """Key of the image in a ``Dict`` observation, ``None`` for a ``Box``."""
    keep_image: bool
    history: int
    """K, the number of latents stacked (1: no stacking)."""
    input_size: Tuple[int, int]
    """``(H, W)`` the frames are resized to before encoding."""
    encoder: FrameEncoder
    latent_space: spaces.Box
    observation_space: spaces.Space
    """The wrapped single observation space."""

    @classmethod
    def build(
        cls, space: spaces.Space, model: Any, owner: str, *, image_key: Optional[str] = None, keep_image: bool = False,
        keep_aspect: bool = True, size: SizeLike = None, history: int = 1, device: DeviceLike = None,
        precision: str = "fp32", backend: str = "torch",
    ) -> "LatentSetup":
        """Check ``space`` and ``model`` and set everything up (options as for
        :class:`btnk_env.BtnkMAEObservation`)."""
        model = check_model(model, owner)
        image_key = find_image_key(space, image_key, owner)
        image_space = space if image_key is None else space[image_key]
        history = check_history(history)
        input_size = target_size(image_space.shape[:2], model, keep_aspect, size)
        latent = latent_space(model.latent_dim, history)
        return cls(
            image_key=image_key, keep_image=bool(keep_image), history=history, input_size=input_size,
            encoder=FrameEncoder(model, input_size, device, precision, backend), latent_space=latent,
            observation_space=wrapped_space(space, image_key, latent, bool(keep_image)),
        )

    def frames(self, observation: Any) -> np.ndarray:
        """The image(s) of an observation (or of a batch of them)."""
        return observation if self.image_key is None else observation[self.image_key]

    def wrap(self, observation: Any, history: np.ndarray) -> Any:
        """The wrapped observation (or batch) from latent histories ``(..., K, D)``."""
        latent = history[..., 0, :] if self.history == 1 else history  # (..., D) or (..., K, D)
        return wrap_observation(observation, self.image_key, self.keep_image, latent)


class LatentSetupViews:
    """The :class:`LatentSetup` of a wrapper (``self.setup``), attribute by attribute: the part
    of the public surface the single and the vector wrapper share."""

    setup: LatentSetup

    @property
    def image_key(self) -> Optional[str]:
        return self.setup.image_key

    @property
    def keep_image(self) -> bool:
        return self.setup.keep_image

    @property
    def history(self) -> int:
        return self.setup.history

    @property
    def input_size(self) -> Tuple[int, int]:
        return self.setup.input_size

    @property
    def encoder(self) -> FrameEncoder:
        return self.setup.encoder

    @property
    def latent_space(self) -> spaces.Box:
        return self.setup.latent_space

    @property
    def device(self) -> torch.device:
        return self.setup.encoder.device
