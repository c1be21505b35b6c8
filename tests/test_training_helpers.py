"""Helpers shared by the training tests (tiny generated datasets, golden-model configs)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch
from PIL import Image

from tests.conftest import GOLDEN
from btnk_env.training.config import TrainConfig, load_config

GOLDEN_NOACT = GOLDEN / "btnk_tiny_noact_64.pth"


def make_images(folder: Path, n: int = 8, size=(64, 64), seed: int = 0) -> List[Path]:
    """``n`` smooth random RGB PNGs (gradients plus blobs) of ``size`` (H, W)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    paths = []
    for i in range(n):
        img = np.zeros((h, w, 3))
        for c in range(3):
            a, b, p = rng.uniform(-1, 1, 3)
            img[..., c] = 0.5 + 0.35 * np.sin(2 * np.pi * (a * xx + b * yy) + p * np.pi)
        cy, cx = rng.uniform(0.2, 0.8, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.02] = rng.uniform(0, 1, 3)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def golden_config(data: Path, out: Path, *overrides: str) -> TrainConfig:
    """A config that finetunes the golden tiny checkpoint (D=64, 64x64) on ``data``."""
    return load_config(overrides=[
        f"data.path={data}", f"io.out_dir={out}", f"model.init=pretrained:{GOLDEN_NOACT}",
        "model.num_heads=4", "model.decoder_num_heads=4", "model.img_size=[64,64]",
        "data.transform=resize", "train.batch_size=4", "train.epochs=3", "optim.lr=1e-3",
        "io.log_every=1", "io.snapshot_every=null", *overrides,
    ])


def dataset_loss(model, data: Path) -> float:
    """Mean bottleneck reconstruction loss of ``model`` (eval mode) over every image of ``data``."""
    from btnk_env.training.datasets import build_dataset, collate_skip

    ds = build_dataset(str(data), model.img_size, transform="resize")
    images, _ = collate_skip([ds[(i, 0)] for i in range(len(ds))])
    model.eval()
    with torch.no_grad():
        pred = model.decode_patches(model.encode(images))
        return float((pred - model.patchify(images)).pow(2).mean())


def state_max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
