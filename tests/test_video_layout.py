"""Comparison layouts (btnk_env.video.layout): where the pictures go, borders, error maps, PSNR."""

from __future__ import annotations

import numpy as np
import pytest

from btnk_env.video.layout import (
    CONTEXT_COLOR,
    IMAGINED_COLOR,
    comparison_frames,
    comparison_strip,
    error_heatmap,
    interpolation_frames,
    iter_comparison_frames,
    psnr,
)


def _contains(canvas: np.ndarray, picture: np.ndarray) -> bool:
    """Whether ``picture`` (h, w, 3) appears verbatim somewhere in ``canvas`` (H, W, 3)."""
    h, w = picture.shape[:2]
    starts = np.argwhere((canvas[: canvas.shape[0] - h + 1, : canvas.shape[1] - w + 1] == picture[0, 0]).all(-1))
    return any(np.array_equal(canvas[y : y + h, x : x + w], picture) for y, x in starts)


def _has_color(image: np.ndarray, color) -> bool:
    return bool((image == np.array(color, np.uint8)).all(-1).any())


@pytest.fixture
def rollouts():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, 4, 8, 16, 3), dtype=np.uint8)
    pred = truth.copy()
    pred[0, 2:] = 255 - pred[0, 2:]  # sequence 0 goes wrong from step 2 on
    return truth, pred


def test_psnr_and_error_heatmap_values():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 1
    np.testing.assert_allclose(psnr(a, b), [np.inf, 10 * np.log10(255.0**2)])
    calm = error_heatmap(a, a)
    assert (calm == [0, 0, 4]).all()  # no error: the colormap's black
    ramp = np.arange(0, 256, 16, dtype=np.uint8).repeat(3).reshape(1, 16, 3)
    heat = error_heatmap(np.zeros_like(ramp), ramp, gain=1.0)[0].astype(int).sum(-1)  # brightness
    assert (np.diff(heat) > 0).all()  # a larger error is a brighter colour
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[:1])


def test_tiles_borders_and_grid(rollouts):
    truth, pred = rollouts
    video = comparison_frames(pred, truth, context=2, scale=1, columns=2)
    assert video.shape[0] == 4 and video.dtype == np.uint8
    for t in range(4):
        frame = video[t]
        for b in range(2):
            assert _contains(frame, truth[b, t]) and _contains(frame, pred[b, t])
            assert _contains(frame, error_heatmap(truth[b, t], pred[b, t]))
        assert _has_color(frame, CONTEXT_COLOR) == (t < 2)  # green model borders for context steps
        assert _has_color(frame, IMAGINED_COLOR) == (t >= 2)  # red for imagined ones

    one_column = comparison_frames(pred, truth, context=2, scale=1, columns=1)
    assert one_column.shape[1] > 1.8 * video.shape[1] and one_column.shape[2] < video.shape[2]  # wrapped
    model_only = comparison_frames(pred, None, context=2, scale=1)
    assert model_only.shape[1] <= video.shape[1] / 2  # no truth and error rows
    assert _contains(model_only[3], pred[0, 3]) and not _contains(model_only[3], truth[0, 3])


def test_scale_and_captions(rollouts):
    truth, pred = rollouts
    big = comparison_frames(pred, truth, scale=3)
    assert _contains(big[0], truth[0, 0].repeat(3, 0).repeat(3, 1))  # nearest-neighbour upscaling
    auto = comparison_frames(pred, truth)  # 8 px tall frames get scale 12 (>= 96 px)
    assert _contains(auto[0], truth[1, 0].repeat(12, 0).repeat(12, 1))
    with_psnr = comparison_frames(pred, truth, scale=8)  # wide enough for the whole caption
    without = comparison_frames(pred, truth, scale=8, psnr_caption=False)
    assert with_psnr.shape == without.shape and not np.array_equal(with_psnr, without)
    np.testing.assert_array_equal(np.stack(list(iter_comparison_frames(pred, truth, scale=8))), with_psnr)


def test_bad_inputs_are_named(rollouts):
    truth, pred = rollouts
    with pytest.raises(ValueError, match="must match"):
        comparison_frames(pred, truth[:, :3])
    with pytest.raises(ValueError, match="uint8"):
        comparison_frames(pred.astype(np.float32))
    with pytest.raises(ValueError, match="no frames"):
        comparison_frames(pred[:, :0])
    with pytest.raises(ValueError, match="context"):
        comparison_frames(pred, context=-1)
    with pytest.raises(ValueError, match="one sequence"):
        comparison_strip(pred, truth)


def test_strip_and_interpolation(rollouts):
    truth, pred = rollouts
    strip = comparison_strip(pred[0], truth[0], context=2, scale=1)
    for t in range(4):  # T = 4 <= 8: every step shown, time left to right
        assert _contains(strip, truth[0, t]) and _contains(strip, pred[0, t])
    assert _has_color(strip, CONTEXT_COLOR) and _has_color(strip, IMAGINED_COLOR)
    picked = comparison_strip(pred[0], truth[0], steps=[3], scale=1)
    assert picked.shape[1] < strip.shape[1] and _contains(picked, truth[0, 3]) and not _contains(picked, truth[0, 0])
    with pytest.raises(ValueError, match="steps"):
        comparison_strip(pred[0], steps=[4])

    frames = interpolation_frames(truth[0, 0], pred[1], truth[0, 1], scale=1)
    assert frames.shape[0] == 4
    for i in range(4):
        assert (
            _contains(frames[i], truth[0, 0]) and _contains(frames[i], pred[1, i]) and _contains(frames[i], truth[0, 1])
        )
    with pytest.raises(ValueError, match="start"):
        interpolation_frames(truth[0, 0, :4], pred[1], truth[0, 1])
