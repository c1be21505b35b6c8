"""Position tables: the fixed 2-D sin-cos tables of MAE, for any ``(H, W)`` patch grid.

The original computes them in float64 with numpy and casts to float32; so do we, so that the
tables match the checkpoints bit for bit. Layout (as in MAE): tokens in row-major grid order;
the first half of the channels encodes the column index, the second half the row index.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``positions: (M,)`` -> ``(M, dim)`` float64, sines then cosines."""
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim/2,)
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)  # (M, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed(dim: int, grid_size: Tuple[int, int], cls_token: bool = False) -> torch.Tensor:
    """Fixed 2-D sin-cos position table.

    Args:
        dim: channels, divisible by 4.
        grid_size: patch grid ``(gh, gw)``.
        cls_token: prepend an all-zero row for the CLS token.

    Returns:
        ``(1, [1 +] gh * gw, dim)`` float32.
    """
    if dim % 4:
        raise ValueError(f"sin-cos table needs a width divisible by 4, got {dim}")
    gh, gw = grid_size
    cols, rows = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
    table = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], axis=1)  # (N, dim)
    if cls_token:
        table = np.concatenate([np.zeros([1, dim]), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)


class SincosTables:
    """Fixed sin-cos tables of one width, computed once per ``(grid, device, dtype)`` and kept.

    Tables are created outside inference mode, so a table first made under
    ``torch.inference_mode()`` can later be used in training.
    """

    #: Tables kept per cache (a few grids per model in practice); the oldest goes first.
    MAX_ENTRIES = 32

    def __init__(self, dim: int, cls_token: bool = False) -> None:
        self.dim, self.cls_token = dim, cls_token
        self._cache: Dict[tuple, torch.Tensor] = {}

    def get(self, grid_size: Tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """``(1, [1 +] gh * gw, dim)`` on ``like``'s device and dtype."""
        key = (tuple(grid_size), like.device, like.dtype)
        table = self._cache.get(key)
        if table is None:
            with torch.inference_mode(False), torch.no_grad():
                table = sincos_pos_embed(self.dim, key[0], self.cls_token).to(like.device, like.dtype)
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = table
        return table


def resample_grid_tokens(
    tokens: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int]
) -> torch.Tensor:
    """Bicubically resample per-patch learned vectors to a new grid (DeiT/timm style).

    Not timm's ``resample_abs_pos_embed(..., antialias=False)``: the same ``F.interpolate`` call
    (equal bitwise, same speed, measured), without timm's ~1.7 s import (it pulls torchvision).

    Args:
        tokens: ``(1, gh * gw, D)`` learned table on ``old_grid``.
        old_grid, new_grid: ``(gh, gw)`` grids.

    Returns:
        ``(1, new_gh * new_gw, D)``, same dtype and device.
    """
    if tuple(old_grid) == tuple(new_grid):
        return tokens.clone()
    (gh, gw), dim = old_grid, tokens.shape[-1]
    grid = tokens.reshape(1, gh, gw, dim).permute(0, 3, 1, 2).float()  # (1, D, gh, gw)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(tokens.dtype)  # (1, N', D)
