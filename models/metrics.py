"""The project's one PSNR (peak signal-to-noise ratio), for uint8 frames and float images alike."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

Images = Union[np.ndarray, torch.Tensor]


def psnr(truth: Images, pred: Images, data_range: Optional[float] = None) -> Images:
    """Per-image PSNR in dB over the last three dimensions (``(H, W, C)`` or ``(C, H, W)``).

    Args:
        truth, pred: two arrays of one shape ``(..., A, B, C)``, numpy or torch (both the same kind):
            uint8 frames, or float images in ``[0, data_range]``.
        data_range: the largest pixel value; default ``255`` for uint8, ``1`` for float images.

    Returns:
        ``(...)`` float64 numpy for numpy input, float32 torch for torch input; ``inf`` where the
        images are equal. The mean squared error is computed in float64.

    Example:
        >>> a = np.zeros((2, 4, 4, 3), np.uint8); b = a.copy(); b[1] = 255
        >>> psnr(a, b).tolist()
        [inf, 0.0]
    """
    if tuple(truth.shape) != tuple(pred.shape):
        raise ValueError(f"truth {tuple(truth.shape)} and prediction {tuple(pred.shape)} must have the same shape")
    if len(truth.shape) < 3:
        raise ValueError(f"images must have at least 3 dimensions (H, W, C), got shape {tuple(truth.shape)}")
    is_numpy = isinstance(truth, np.ndarray)
    a = torch.from_numpy(np.asarray(truth)) if is_numpy else truth
    b = torch.from_numpy(np.asarray(pred)) if is_numpy else pred
    if data_range is None:
        data_range = 255.0 if a.dtype == torch.uint8 else 1.0
    mse = (a.double() - b.double()).pow(2).mean(dim=(-3, -2, -1))
    out = 10.0 * torch.log10(data_range**2 / mse)  # inf where mse == 0
    return out.numpy() if is_numpy else out.float()
