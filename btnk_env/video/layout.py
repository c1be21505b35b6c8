"""Comparison layouts for decoded rollouts, in the style of Dreamer's open-loop videos.

For each sequence a column of tiles: ground truth, the model's frame (decoded from an observed
frame's latent, or imagined), and the error between them as a heatmap. The model tile has a
coloured border: :data:`CONTEXT_COLOR` (green) for context frames, whose latents came from
observations, :data:`IMAGINED_COLOR` (red) for frames the world model imagined. Several sequences
are tiled side by side (wrapping after ``columns``); a caption under each says the step, the kind
and, with ground truth, the frame's PSNR.

- :func:`comparison_frames` (:func:`iter_comparison_frames`): ``(B, T, H, W, 3)`` -> a video
  ``(T, H', W', 3)``.
- :func:`comparison_strip`: one sequence as a still, time running left to right.
- :func:`interpolation_frames`: ``[start | decoded | end]`` for a latent interpolation.

All inputs and outputs are uint8 RGB in ``[0, 255]``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterator, Optional, Sequence

import numpy as np

from btnk_env.models.metrics import psnr  # the project's one PSNR (uint8 frames: data range 255)

__all__ = [
    "CONTEXT_COLOR",
    "IMAGINED_COLOR",
    "psnr",
    "error_heatmap",
    "comparison_frames",
    "iter_comparison_frames",
    "comparison_strip",
    "interpolation_frames",
]

CONTEXT_COLOR = (40, 190, 80)
"""Border of model frames decoded from observed (context) frames."""
IMAGINED_COLOR = (230, 50, 50)
"""Border of model frames imagined by the world model."""
NEUTRAL_COLOR = (90, 90, 90)
BACKGROUND = (20, 20, 20)
TEXT_COLOR = (235, 235, 235)

# an inferno-like colormap: value in [0, 1] -> RGB (black, purple, red, orange, pale yellow)
_CMAP_X = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_CMAP_RGB = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


def error_heatmap(truth: np.ndarray, pred: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """``|pred - truth|`` averaged over RGB, times ``gain``, as an inferno-like heatmap.

    Args:
        truth, pred: ``(..., H, W, 3)`` uint8.
        gain: amplification; an error of ``255 / gain`` levels or more is the brightest colour.

    Returns:
        ``(..., H, W, 3)`` uint8; black where the frames agree.
    """
    err = np.abs(truth.astype(np.float32) - pred.astype(np.float32)).mean(-1) * (gain / 255.0)  # (..., H, W)
    err = np.clip(err, 0.0, 1.0)
    rgb = np.stack([np.interp(err, _CMAP_X, _CMAP_RGB[:, c]) for c in range(3)], -1)
    return np.round(rgb).astype(np.uint8)


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_band(width: int, height: int, text: str, color=TEXT_COLOR) -> np.ndarray:
    """``(height, width, 3)`` uint8: ``text`` on the background, left-aligned, clipped."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, height), BACKGROUND)
    if text:
        ImageDraw.Draw(band).text(
            (3, max(0, (height - _font_size(height)) // 2 - 1)), text, fill=tuple(color), font=_font(_font_size(height))
        )
    return np.asarray(band)


def _font_size(band_height: int) -> int:
    return max(8, band_height - 5)


def _tile(frame: np.ndarray, scale: int, border: int, color) -> np.ndarray:
    """Upscale ``(H, W, 3)`` by an integer factor (nearest) and frame it with a coloured border."""
    if scale > 1:
        frame = frame.repeat(scale, 0).repeat(scale, 1)
    return _bordered(frame, border, color) if border else frame


def _bordered(frame: np.ndarray, border: int, color) -> np.ndarray:
    h, w = frame.shape[:2]
    out = np.empty((h + 2 * border, w + 2 * border, 3), np.uint8)
    out[:] = color
    out[border : border + h, border : border + w] = frame
    return out


def _vstack(parts: Sequence[np.ndarray], gap: int) -> np.ndarray:
    width = parts[0].shape[1]
    spacer = np.empty((gap, width, 3), np.uint8)
    spacer[:] = BACKGROUND
    out = []
    for i, part in enumerate(parts):
        out += [spacer, part] if i else [part]
    return np.concatenate(out, 0)


def _hstack(parts: Sequence[np.ndarray], gap: int) -> np.ndarray:
    return np.ascontiguousarray(_vstack([p.transpose(1, 0, 2) for p in parts], gap).transpose(1, 0, 2))


def _auto_scale(height: int, scale: Optional[int]) -> int:
    if scale is None:
        return max(1, math.ceil(96 / height))  # tiny frames become at least ~96 px tall
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int or None (automatic), got {scale!r}")
    return scale


def _block(truth, pred, is_context: bool, caption: str, scale: int, border: int, gain: float, band: int) -> np.ndarray:
    """One column: [truth], model, [error] tiles and a caption band."""
    kind_color = CONTEXT_COLOR if is_context else IMAGINED_COLOR
    tiles = [_tile(pred, scale, border, kind_color)]
    if truth is not None:
        tiles = [
            _tile(truth, scale, border, NEUTRAL_COLOR),
            tiles[0],
            _tile(error_heatmap(truth, pred, gain), scale, border, NEUTRAL_COLOR),
        ]
    tiles.append(_text_band(tiles[0].shape[1], band, caption, kind_color))
    return _vstack(tiles, gap=2)


def _labels(block_height: int, tile_height: int, has_truth: bool, band: int, width: int = 44) -> np.ndarray:
    """The row-label gutter beside a row of blocks."""
    names = ["truth", "model", "error"] if has_truth else ["model"]
    parts = []
    for name in names:
        cell = np.empty((tile_height, width, 3), np.uint8)
        cell[:] = BACKGROUND
        text_height = min(band, tile_height)
        y = (tile_height - text_height) // 2
        cell[y : y + text_height] = _text_band(width, text_height, name)
        parts.append(cell)
    parts.append(_text_band(width, band, ""))
    out = _vstack(parts, gap=2)
    assert out.shape[0] == block_height
    return out


def _grid(blocks: Sequence[np.ndarray], columns: int, gutter: np.ndarray, gap: int = 4) -> np.ndarray:
    rows = []
    for start in range(0, len(blocks), columns):
        row = list(blocks[start : start + columns])
        while len(row) < columns and start:  # pad the last row so all rows have one width
            filler = np.empty_like(blocks[0])
            filler[:] = BACKGROUND
            row.append(filler)
        rows.append(_hstack([gutter] + row, gap))
    return _vstack(rows, gap)


def _as_batch(frames: np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(
            f"{name} must be (T, H, W, 3) or (B, T, H, W, 3) uint8, got shape {frames.shape} dtype {frames.dtype}"
        )
    if 0 in frames.shape[:2]:
        raise ValueError(f"{name} hold no frames (shape {frames.shape})")
    return frames


def _prepare(pred, truth, context, scale):
    pred = _as_batch(pred, "pred")
    if truth is not None:
        truth = _as_batch(truth, "truth")
        if truth.shape != pred.shape:
            raise ValueError(
                f"truth {truth.shape} and pred {pred.shape} must match (B, T, H, W, 3); resize the truth to the model's size"
            )
    if not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be an int >= 0 (the number of observed frames), got {context!r}")
    return pred, truth, _auto_scale(pred.shape[2], scale)


def _caption(t: int, is_context: bool, truth, pred, psnr_caption: bool) -> str:
    text = f"t={t} {'context' if is_context else 'imagined'}"
    if psnr_caption and truth is not None:
        text += f" {float(psnr(truth, pred)):.1f}dB"
    return text


def iter_comparison_frames(
    pred: np.ndarray,
    truth: Optional[np.ndarray] = None,
    *,
    context: int = 0,
    psnr_caption: bool = True,
    columns: int = 4,
    scale: Optional[int] = None,
    border: int = 2,
    error_gain: float = 4.0,
) -> Iterator[np.ndarray]:
    """:func:`comparison_frames` one video frame at a time (for long rollouts; the inputs are
    validated on the first ``next``). Yields ``(H', W', 3)`` uint8."""
    pred, truth, scale = _prepare(pred, truth, context, scale)
    b, t_len, h = pred.shape[:3]
    band = 14
    columns = max(1, min(columns, b))
    gutter = None
    for t in range(t_len):
        blocks = []
        for i in range(b):
            gt = None if truth is None else truth[i, t]
            caption = _caption(t, t < context, gt, pred[i, t], psnr_caption)
            blocks.append(_block(gt, pred[i, t], t < context, caption, scale, border, error_gain, band))
        if gutter is None:
            gutter = _labels(blocks[0].shape[0], h * scale + 2 * border, truth is not None, band)
        yield _grid(blocks, columns, gutter)


def comparison_frames(
    pred: np.ndarray,
    truth: Optional[np.ndarray] = None,
    *,
    context: int = 0,
    psnr_caption: bool = True,
    columns: int = 4,
    scale: Optional[int] = None,
    border: int = 2,
    error_gain: float = 4.0,
) -> np.ndarray:
    """Dreamer-style comparison video of decoded (or imagined) rollouts.

    Args:
        pred: ``(T, H, W, 3)`` or ``(B, T, H, W, 3)`` uint8, the model's frames (e.g.
            :func:`btnk_env.video.decode_rollout`).
        truth: the ground truth, same shape, or None (then only the model row is shown).
        context: steps ``t < context`` were decoded from observed frames (green border); the
            rest were imagined (red border).
        psnr_caption: add each frame's PSNR against the truth to its caption.
        columns: sequences per row of the grid; more sequences wrap onto further rows.
        scale: integer upscaling of every tile (nearest); None: enough for ~96 px tall tiles.
        border: border width in pixels (after scaling).
        error_gain: amplification of the error heatmap (see :func:`error_heatmap`).

    Returns:
        ``(T, H', W', 3)`` uint8 video frames (:func:`iter_comparison_frames` yields them one
        by one instead).

    Example:
        >>> pred = np.zeros((2, 3, 16, 32, 3), np.uint8)
        >>> video = comparison_frames(pred, pred, context=1, scale=2)
        >>> video.shape, video.dtype
        ((3, 128, 188, 3), dtype('uint8'))
    """
    kwargs = dict(
        context=context, psnr_caption=psnr_caption, columns=columns, scale=scale, border=border, error_gain=error_gain
    )
    return np.stack(list(iter_comparison_frames(pred, truth, **kwargs)))


def comparison_strip(
    pred: np.ndarray,
    truth: Optional[np.ndarray] = None,
    *,
    context: int = 0,
    steps: Optional[Sequence[int]] = None,
    psnr_caption: bool = True,
    scale: Optional[int] = None,
    border: int = 2,
    error_gain: float = 4.0,
) -> np.ndarray:
    """One sequence as a still image: time left to right, rows truth / model / error.

    Args:
        pred, truth: ``(T, H, W, 3)`` uint8 (truth optional), as in :func:`comparison_frames`.
        context: the first ``context`` steps are context frames (green), the rest imagined (red).
        steps: which time steps to show (default: up to 8, evenly spread over ``T``).

    Returns:
        ``(H', W', 3)`` uint8.
    """
    pred, truth, scale = _prepare(pred, truth, context, scale)
    if pred.shape[0] != 1:
        raise ValueError(f"comparison_strip shows one sequence; got {pred.shape[0]} (pass pred[i])")
    t_len, h = pred.shape[1], pred.shape[2]
    if steps is None:
        steps = sorted(set(np.linspace(0, t_len - 1, min(8, t_len)).round().astype(int).tolist()))
    if not steps or any(not 0 <= s < t_len for s in steps):
        raise ValueError(f"steps must be time indices in [0, {t_len}), got {list(steps)}")
    band = 14
    blocks = []
    for s in steps:
        gt = None if truth is None else truth[0, s]
        blocks.append(
            _block(
                gt,
                pred[0, s],
                s < context,
                _caption(s, s < context, gt, pred[0, s], psnr_caption),
                scale,
                border,
                error_gain,
                band,
            )
        )
    gutter = _labels(blocks[0].shape[0], h * scale + 2 * border, truth is not None, band)
    return _grid(blocks, len(blocks), gutter)


def interpolation_frames(
    start: np.ndarray, frames: np.ndarray, end: np.ndarray, *, scale: Optional[int] = None, border: int = 2
) -> np.ndarray:
    """A latent interpolation as a video: each frame shows ``[start | decoded | end]``.

    Args:
        start, end: ``(H, W, 3)`` uint8, the two real frames whose latents were interpolated.
        frames: ``(S, H, W, 3)`` uint8, the decoded interpolation (e.g. of
            :func:`btnk_env.video.interpolate_latents`).

    Returns:
        ``(S, H', W', 3)`` uint8, captioned with the interpolation weight ``alpha``.
    """
    frames = _as_batch(frames, "frames")[0]
    for name, img in (("start", start), ("end", end)):
        if img.shape != frames.shape[1:] or img.dtype != np.uint8:
            raise ValueError(
                f"{name} must be {frames.shape[1:]} uint8 like the decoded frames, got {img.shape} {img.dtype}"
            )
    scale = _auto_scale(frames.shape[1], scale)
    band, n = 14, len(frames)
    first = _vstack(
        [_tile(start, scale, border, CONTEXT_COLOR), _text_band(frames.shape[2] * scale + 2 * border, band, "start")], 2
    )
    last = _vstack(
        [_tile(end, scale, border, CONTEXT_COLOR), _text_band(frames.shape[2] * scale + 2 * border, band, "end")], 2
    )
    out = []
    for i, frame in enumerate(frames):
        alpha = i / max(1, n - 1)
        middle = _vstack(
            [_tile(frame, scale, border, IMAGINED_COLOR), _text_band(first.shape[1], band, f"alpha={alpha:.2f}")], 2
        )
        out.append(_hstack([first, middle, last], 4))
    return np.stack(out)
