"""``btnk-env video``: from a checkpoint and a latents file to a video."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from btnk_env.cli import main
from btnk_env.video import decode_rollout, interpolate_latents
from btnk_env.video.layout import comparison_frames, interpolation_frames
from btnk_env.models import BtnkMAE, frames_to_tensor


@pytest.fixture
def files(tmp_path):
    """A saved ``test`` model (32x64, D=64), a (2, 5, D) rollout and its (2, 5, 32, 64, 3) truth."""
    torch.manual_seed(0)
    model = BtnkMAE("test", img_size=(32, 64)).eval()
    model.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, 5, 32, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        latents = model.encode(frames_to_tensor(truth.reshape(-1, 32, 64, 3))).reshape(2, 5, -1)
    np.save(tmp_path / "latents.npy", latents.numpy())
    np.save(tmp_path / "truth.npy", truth)
    return model, tmp_path, latents, truth


def test_comparison_video_equals_the_library_layout(files):
    model, tmp, latents, truth = files
    out = tmp / "frames"  # no suffix: PNG frames, lossless, to compare exactly
    args = [
        "video",
        "--checkpoint",
        str(tmp / "model"),
        "--latents",
        str(tmp / "latents.npy"),
        "--truth",
        str(tmp / "truth.npy"),
    ]
    assert main(args + ["--context", "2", "--out", str(out), "--batch-size", "3"]) == 0
    written = np.stack([iio.imread(p) for p in sorted(out.glob("*.png"))])
    expected = comparison_frames(decode_rollout(model, latents), truth, context=2)
    np.testing.assert_array_equal(written, expected)

    assert main(args + ["--out", str(tmp / "cmp.mp4"), "--fps", "4"]) == 0
    video = iio.imread(tmp / "cmp.mp4", index=None)
    assert video.shape[0] == 5 and video.shape[1] >= expected.shape[1] and video.shape[1] % 16 == 0
    assert iio.immeta(tmp / "cmp.mp4")["fps"] == 4.0


def test_raw_layout_and_interpolation(files, capsys):
    model, tmp, latents, truth = files
    base = ["video", "--checkpoint", str(tmp / "model")]
    assert main(base + ["--latents", str(tmp / "latents.npy"), "--layout", "raw", "--out", str(tmp / "raw")]) == 0
    raw = np.stack([iio.imread(p) for p in sorted((tmp / "raw").glob("*.png"))])
    decoded = decode_rollout(model, latents)
    np.testing.assert_array_equal(raw, np.concatenate([decoded[0], decoded[1]], axis=2))  # sequences side by side

    iio.imwrite(tmp / "a.png", truth[0, 0])
    iio.imwrite(tmp / "b.png", truth[1, 4])
    assert (
        main(
            base
            + [
                "--interpolate",
                str(tmp / "a.png"),
                str(tmp / "b.png"),
                "--steps",
                "4",
                "--method",
                "linear",
                "--out",
                str(tmp / "i"),
            ]
        )
        == 0
    )
    frames = np.stack([iio.imread(p) for p in sorted((tmp / "i").glob("*.png"))])
    path = interpolate_latents(latents[0, 0], latents[1, 4], 4, "linear")
    expected = interpolation_frames(truth[0, 0], decode_rollout(model, path)[0], truth[1, 4])
    assert frames.shape == expected.shape
    assert np.abs(frames.astype(int) - expected).max() <= 1
    assert "wrote" in capsys.readouterr().out


def test_errors_before_any_work(files, capsys):
    model, tmp, latents, truth = files
    base = ["video", "--checkpoint", str(tmp / "model")]
    np.save(tmp / "wide.npy", np.zeros((5, 65), np.float32))
    np.save(tmp / "empty.npy", np.zeros((0, 64), np.float32))
    np.save(tmp / "short_truth.npy", truth[:, :3])
    cases = [
        (["--latents", str(tmp / "wide.npy")], "D=65 but the model's latent is D=64"),
        (["--latents", str(tmp / "empty.npy")], "no frames"),
        (["--latents", str(tmp / "latents.npy"), "--truth", str(tmp / "short_truth.npy")], "must match"),
        (["--latents", str(tmp / "latents.npy"), "--context", "9"], "longer than the rollout"),
        (["--latents", str(tmp / "missing.npy")], "does not exist"),
    ]
    for extra, message in cases:
        assert main(base + extra + ["--out", str(tmp / "never.mp4")]) == 2, message
        assert message in capsys.readouterr().err
    (tmp / "file").write_text("x")
    assert main(base + ["--latents", str(tmp / "latents.npy"), "--out", str(tmp / "file" / "x.mp4")]) == 2
    assert main(base + ["--latents", str(tmp / "latents.npy"), "--out", str(tmp / "x.webm")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp / "never.mp4").exists() and not list(tmp.glob(".*tmp*"))
