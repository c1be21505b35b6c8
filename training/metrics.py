"""Image quality: PSNR (:func:`btnk_env.models.metrics.psnr`) and SSIM on ``[0, 1]`` images, per image, in torch.

SSIM follows Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True``:
an 11x11 Gaussian window with sigma 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = 1``,
population (not sample) statistics, averaged over the valid region (no padding) and the channels.

Example:
    >>> import torch
    >>> x = torch.rand(2, 3, 32, 32)
    >>> ssim(x, x).tolist(), psnr(x, (x + 0.1).clamp(0, 1)).shape
    ([1.0, 1.0], torch.Size([2]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from btnk_env.models.metrics import psnr  # the project's one PSNR (per image; inf for equal images)

__all__ = ["psnr", "ssim", "gaussian_window"]

WINDOW = 11
SIGMA = 1.5


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    """Normalized 1-D Gaussian ``(size,)`` float64."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(r**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity. ``x, y: (B, C, H, W)`` in ``[0, data_range]``, ``H, W >= 11`` -> ``(B,)`` float32."""
    _check(x, y)
    b, c, h, w = x.shape
    if h < WINDOW or w < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW}, got {h}x{w}")
    g = gaussian_window()
    kh = g.view(1, 1, WINDOW, 1).repeat(c, 1, 1, 1)  # depthwise, separable
    kw = g.view(1, 1, 1, WINDOW).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    x64, y64 = x.double(), y.double()
    mx, my = blur(x64), blur(y64)
    vx = blur(x64 * x64) - mx * mx
    vy = blur(y64 * y64) - my * my
    cxy = blur(x64 * y64) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()
