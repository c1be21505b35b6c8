"""Procedural material textures for the built-in panorama world, generated with numpy.

Every texture is tileable (it wraps at its edges), so surfaces repeat it once per metre or so
without visible seams. The set is a stack of layers, one per material, uploaded once per
apartment as a 2D texture array; the layer index of a material is its value in :class:`Material`.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Material", "make_textures", "TEXTURE_SIZE"]

TEXTURE_SIZE = 128
"""Side of every texture layer in texels."""


class Material(IntEnum):
    """Texture layers; the value is the layer index in the array made by :func:`make_textures`."""

    WOOD_FLOOR = 0
    TILE_FLOOR = 1
    CARPET = 2
    PAINT = 3
    WALLPAPER = 4
    CEILING = 5
    FABRIC = 6
    WOOD = 7
    PAINTING_A = 8
    PAINTING_B = 9
    PLAIN = 10


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Tileable value noise.

    Returns:
        ``(size, size)`` float32 in [0, 1], smoothly interpolated from a ``cells x cells`` grid.
    """
    grid = rng.random((cells, cells)).astype(np.float32)
    t = np.arange(size, dtype=np.float32) * cells / size
    i0 = np.floor(t).astype(np.int64)
    i1 = (i0 + 1) % cells
    f = t - i0
    f = f * f * (3.0 - 2.0 * f)  # smoothstep
    rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]  # (size, cells)
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]


def _fractal(rng: np.random.Generator, size: int, octaves: tuple[int, ...]) -> np.ndarray:
    """Sum of noise octaves, ``(size, size)`` float32 in [0, 1]."""
    total = sum(_noise(rng, size, c) / (i + 1) for i, c in enumerate(octaves))
    return total / sum(1.0 / (i + 1) for i in range(len(octaves)))


def _rgb(gray: np.ndarray, color: tuple[float, float, float]) -> np.ndarray:
    return gray[..., None] * np.asarray(color, dtype=np.float32)


def _wood(rng: np.random.Generator, n: int, base, planks: int) -> np.ndarray:
    """Planks along u (columns) with grain, seams and a brightness per plank."""
    v = np.arange(n) * planks // n  # plank index per row
    plank_shade = 0.8 + 0.35 * rng.random(planks)[v]  # (n,)
    grain = _noise(rng, n, 4)
    stretched = np.repeat(_noise(rng, n // 8, 8)[:, :1], 8, axis=0)[:n]  # per-row streaks
    gray = plank_shade[:, None] * (0.8 + 0.2 * grain) * (0.85 + 0.25 * stretched)
    seam = (np.arange(n) % (n // planks)) == 0
    gray[seam] *= 0.45
    return _rgb(gray, base)


def _tiles(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    idx = np.arange(n) * count // n
    shade = 0.9 + 0.1 * rng.random((count, count))[idx][:, idx]
    gray = shade * (0.95 + 0.05 * _noise(rng, n, 16))
    grout = (np.arange(n) % (n // count)) < 1
    gray[grout, :] = 0.72
    gray[:, grout] = 0.72
    return _rgb(gray, (0.93, 0.93, 0.92))


def _painting(rng: np.random.Generator, n: int) -> np.ndarray:
    """An abstract picture: a few soft coloured blobs on a light ground, with a dark frame."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    img = np.ones((n, n, 3), np.float32) * rng.uniform(0.75, 0.95)
    for _ in range(6):
        cx, cy, r = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.08, 0.3)
        w = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (r * r))[..., None]
        img = img * (1 - w) + w * rng.uniform(0.05, 0.9, size=3).astype(np.float32)
    img *= (0.9 + 0.1 * _noise(rng, n, 16))[..., None]
    frame = (x < 0.05) | (x > 0.95) | (y < 0.05) | (y > 0.95)
    img[frame] = 0.12
    return img


def make_textures(seed: int, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Generate every material layer from ``seed``.

    Args:
        seed: same seed, same texels.
        size: side of each layer in texels (a multiple of 16).

    Returns:
        ``(len(Material), size, size, 3)`` uint8 RGB, layer ``i`` is ``Material(i)``.

    Example:
        >>> tex = make_textures(0, size=32)
        >>> tex.shape, tex.dtype
        ((11, 32, 32, 3), dtype('uint8'))
        >>> bool((make_textures(0, size=32) == tex).all())
        True
    """
    if size % 16 or size <= 0:
        raise ValueError(f"size must be a positive multiple of 16, got {size}")
    rng = np.random.default_rng([seed, 0x7E47])
    n = size
    layers = {
        Material.WOOD_FLOOR: _wood(rng, n, (0.62, 0.42, 0.26), planks=8),
        Material.TILE_FLOOR: _tiles(rng, n, count=4),
        Material.CARPET: _rgb(0.75 + 0.25 * _fractal(rng, n, (32, 64)), (0.8, 0.78, 0.74)),
        Material.PAINT: _rgb(0.92 + 0.08 * _fractal(rng, n, (4, 16, 64)), (1.0, 1.0, 1.0)),
        Material.WALLPAPER: _rgb(
            (0.9 + 0.1 * ((np.arange(n) * 8 // n) % 2))[None, :] * (0.93 + 0.07 * _noise(rng, n, 32)),
            (1.0, 0.98, 0.95),
        ),
        Material.CEILING: _rgb(0.95 + 0.05 * _noise(rng, n, 32), (1.0, 1.0, 1.0)),
        Material.FABRIC: _rgb(
            0.8 + 0.1 * _noise(rng, n, 64) + 0.1 * ((np.add.outer(np.arange(n), np.arange(n)) % 4) < 2),
            (1.0, 1.0, 1.0),
        ),
        Material.WOOD: _wood(rng, n, (0.55, 0.36, 0.22), planks=4),
        Material.PAINTING_A: _painting(rng, n),
        Material.PAINTING_B: _painting(rng, n),
        Material.PLAIN: np.ones((n, n, 3), np.float32),
    }
    stack = np.stack([layers[m] for m in Material])  # (L, n, n, 3)
    return (np.clip(stack, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
