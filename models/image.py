"""Pixels <-> model input. The ImageNet normalization constants are defined here, once.

Environments give ``uint8`` frames ``(H, W, 3)`` in ``[0, 255]``; the model takes
``(B, 3, H, W)`` float, ImageNet-normalized. These helpers convert both ways.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Frames = Union[np.ndarray, torch.Tensor]


def _stats(device: torch.device, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float in ``[0, 1]`` -> ImageNet-normalized."""
    mean, std = _stats(images.device, images.dtype)
    return (images - mean) / std


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalized ``(B, 3, H, W)`` -> float in ``[0, 1]`` (not clipped)."""
    mean, std = _stats(images.device, images.dtype)
    return images * std + mean


def frames_to_tensor(
    frames: Frames,
    size: Optional[Tuple[int, int]] = None,
    device: Union[str, torch.device, None] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 frames -> model input.

    Args:
        frames: ``(H, W, 3)`` or ``(B, H, W, 3)`` uint8, numpy or torch, values in ``[0, 255]``.
        size: resize to ``(H', W')`` (bilinear with antialiasing) if given and different.
        device: where the result lives (default: where ``frames`` are; numpy -> CPU).
        dtype: floating dtype of the result.

    Returns:
        ``(B, 3, H', W')`` ImageNet-normalized.

    Example:
        >>> x = frames_to_tensor(np.zeros((2, 32, 64, 3), np.uint8))
        >>> tuple(x.shape), round(float(x[0, 0, 0, 0]), 4)
        ((2, 3, 32, 64), -2.1179)
    """
    if isinstance(frames, np.ndarray):
        array = np.ascontiguousarray(frames)
        # read-only arrays (np.asarray of a PIL image, memory maps) are copied; others are shared
        t = torch.from_numpy(array) if array.flags.writeable else torch.tensor(array)
    else:
        t = frames
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"frames must be a numpy array or a torch tensor, got {type(frames).__name__}")
    if t.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 in [0, 255], got dtype {t.dtype}; convert with frames.astype(np.uint8)")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"frames must be (H, W, 3) or (B, H, W, 3) RGB, got shape {tuple(t.shape)}")
    t = t.to(device) if device is not None else t
    x = t.permute(0, 3, 1, 2).to(dtype).div_(255.0)  # (B, 3, H, W) in [0, 1]
    return normalize(resize_images(x, size))


def resize_images(images: torch.Tensor, size: Optional[Tuple[int, int]]) -> torch.Tensor:
    """The project's one resize: ``(B, C, H, W)`` float -> ``(B, C, H', W')``, bilinear with
    antialiasing (no aliasing when shrinking a panorama); unchanged when ``size`` is ``None`` or
    already the size."""
    if size is None or tuple(size) == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def resize_frames(frames: Frames, size: Tuple[int, int]) -> Frames:
    """uint8 frames ``(..., H, W, 3)`` (numpy or torch) -> ``(..., H', W', 3)`` uint8 of the same
    kind, resized by :func:`resize_images` in ``[0, 255]`` and rounded.

    Example:
        >>> resize_frames(np.full((2, 32, 64, 3), 7, np.uint8), (16, 32)).shape
        (2, 16, 32, 3)
    """
    size = (int(size[0]), int(size[1]))
    if tuple(frames.shape[-3:-1]) == size:
        return frames
    is_numpy = isinstance(frames, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(frames)) if is_numpy else frames
    if t.dtype != torch.uint8 or t.ndim < 3 or t.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., H, W, 3), got shape {tuple(t.shape)} dtype {t.dtype}")
    lead = t.shape[:-3]
    x = t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).float()  # (B, 3, H, W) in [0, 255]
    x = resize_images(x, size).round_().clamp_(0, 255).to(torch.uint8)
    out = x.permute(0, 2, 3, 1).reshape(*lead, *size, 3).contiguous()
    return out.numpy() if is_numpy else out


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """Model output -> frames.

    Args:
        images: ``(B, 3, H, W)`` or ``(3, H, W)`` ImageNet-normalized.

    Returns:
        ``(B, H, W, 3)`` (or ``(H, W, 3)``) uint8 numpy, clipped to ``[0, 255]`` and rounded.
    """
    squeeze = images.ndim == 3
    x = images.unsqueeze(0) if squeeze else images
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    x = denormalize(x.detach().float()).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    out = x.permute(0, 2, 3, 1).cpu().numpy()
    return out[0] if squeeze else out
