"""Shared plumbing of the observation wrappers: checking image spaces, choosing the model's input
size, and turning a batch of uint8 frames into latents with one forward pass.

Used by :mod:`btnk_env.wrappers` (one environment), :mod:`btnk_env.wrappers.vector` (vector environments)
and :mod:`btnk_env.sb3` (stable-baselines3).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from models import BtnkMAE, frames_to_tensor
from models.precision import check_precision, for_inference

logger = logging.getLogger(__name__)

LATENT_KEY = "latent"
"""Name of the latent entry in a ``Dict`` observation."""

DeviceLike = Union[str, torch.device, None]
SizeLike = Union[int, Tuple[int, int], None]


def resolve_device(device: DeviceLike, model: Optional[torch.nn.Module] = None) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``None`` -> where ``model`` is; else ``torch.device(device)``."""
    if device is None:
        return next(model.parameters()).device if model is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available; use device='auto' or 'cpu'")
    return device


def check_model(model: Any, owner: str) -> BtnkMAE:
    if not isinstance(model, BtnkMAE):
        raise TypeError(
            f"{owner} needs a models.BtnkMAE, got {type(model).__name__}; "
            f"load one with BtnkMAE.from_pretrained(path) or build one with BtnkMAE('tiny')"
        )
    return model


def _describe(space: spaces.Space) -> str:
    return repr(space)


def check_image_box(space: spaces.Space, owner: str, where: str = "the observation") -> spaces.Box:
    """Check ``space`` is ``Box(0, 255, (H, W, 3), uint8)``; raise a precise error otherwise."""
    expected = "a uint8 RGB image Box(0, 255, (H, W, 3), uint8)"
    if not isinstance(space, spaces.Box):
        raise TypeError(f"{owner} expects {where} to be {expected}, found {_describe(space)}")
    if space.dtype != np.uint8:
        raise TypeError(
            f"{owner} expects {where} to be {expected}, found dtype {space.dtype} in {_describe(space)}; "
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
            candidates = [k for k, s in space.spaces.items() if _is_image_box(s)]
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
        raise ValueError(f"{owner}: image_key={image_key!r} was given but the observation is {_describe(space)}, not a Dict")
    check_image_box(space, owner)
    return None


def _is_image_box(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


def target_size(frame_hw: Tuple[int, int], model: BtnkMAE, keep_aspect: bool = True, size: SizeLike = None) -> Tuple[int, int]:
    """The ``(H, W)`` frames are resized to before encoding.

    ``size`` given: that size (both sides multiples of the patch). Else with ``keep_aspect`` the
    model's input height and the frames' aspect ratio, the width rounded to a patch multiple
    (a 2:1 panorama on a 224 model -> ``(224, 448)``, a native 14x28 grid); without it the
    model's current input size (a panorama squashed to a square, as the original expects).
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


def resize_uint8(frames: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, H', W', 3)`` uint8, bilinear with antialiasing, rounded."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    x = frames.permute(0, 3, 1, 2).float()  # (B, 3, H, W) in [0, 255]
    x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class FrameEncoder:
    """uint8 frames -> float32 latents, one forward pass per call, on a chosen device.

    Shares ``model`` (never copies it, except to make the reduced-precision copy that
    ``precision != "fp32"`` asks for). The model is moved to ``device``, put in eval mode and set to
    the input ``size`` at construction; if someone changes its size later, it is set back before
    each forward.

    Args:
        model: the bottleneck MAE.
        size: ``(H, W)`` input size of the encoder (see :func:`target_size`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``, or ``None``
            (where the model is).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA), ``"int8"`` (CPU) or ``"auto"`` (bf16
            where the device has bf16 matrix units, else fp32), see :mod:`models.precision`;
            latents always come back as float32. :attr:`precision` holds the one chosen.
    """

    def __init__(self, model: BtnkMAE, size: Tuple[int, int], device: DeviceLike = "auto", precision: str = "fp32") -> None:
        self.model = model
        self.size = tuple(size)
        self.device = resolve_device(device, model)
        precision = check_precision(precision, self.device)  # "auto" resolved
        if model.device != self.device:
            logger.info("moving the model from %s to %s", model.device, self.device)
            model.to(self.device)
        model.eval()
        model.set_img_size(self.size)
        self.precision = precision
        self._net = for_inference(model, precision)  # the model itself for fp32
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
        if self._net.img_size != self.size:
            self._net.set_img_size(self.size)
        x = frames_to_tensor(self._to_device(frames), size=self.size)  # (B, 3, H', W') normalized
        latent = self._net.encode(x)  # (B, D)
        return latent.float().cpu().numpy()
