"""PSNR / SSIM and the eval command."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from tests.test_training_helpers import GOLDEN_NOACT, make_images
from btnk_env.training.evaluate import add_arguments, run
from btnk_env.training.metrics import psnr, ssim


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 24, 40)
    assert torch.allclose(ssim(x, x), torch.ones(2))


def test_ssim_of_constant_images_hand_computed():
    # constant images a, b: means a, b, no variance -> (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, 0.7, 0.01**2
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 40, 48, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = metrics.structural_similarity(x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy(), channel_axis=2,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ssim(x, y).item() == pytest.approx(float(ref), abs=1e-5)


def test_psnr_known_value():
    x = torch.zeros(1, 3, 8, 8)
    assert psnr(x, x + 0.1).item() == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB


def test_metric_errors():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


@pytest.mark.usefixtures("needs_golden")  # a missing shared/ fails loudly
def test_eval_command_on_a_golden_checkpoint(tmp_path, capsys):
    make_images(tmp_path / "val", n=3, size=(80, 80))
    (tmp_path / "val" / "broken.png").write_bytes(b"nope")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "res.json"
    args = parser.parse_args(["--checkpoint", str(GOLDEN_NOACT), "--num-heads", "4", "--decoder-num-heads", "4",
                              "--data", str(tmp_path / "val"), "--batch-size", "2", "--json", str(out)])
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "SSIM" in printed and "over 3 images at 64x64 (1 unreadable, skipped)" in printed
    result = json.loads(out.read_text())
    assert len(result["per_image"]) == 3 and 0 < result["ssim"] < 1 and result["psnr"] > 0
    args = parser.parse_args(["--checkpoint", str(GOLDEN_NOACT), "--num-heads", "4", "--decoder-num-heads", "4",
                              "--data", str(tmp_path / "missing")])
    assert run(args) == 2 and "dataset folder not found" in capsys.readouterr().err
