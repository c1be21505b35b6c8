"""Rendered training data (``data.kind=render``): shapes, normalization, held-out seeds refused, training on it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from btnk_env.models import BtnkMAE
from btnk_env.models.image import denormalize
from btnk_env.training.config import load_config
from btnk_env.training.datasets import DatasetError, dataset_from_config
from btnk_env.training.losses import bottleneck_losses
from btnk_env.training.online_data import HELDOUT_LAYOUT_SEEDS, RenderedPanoramaDataset, parse_layout_seeds
from btnk_env.training.trainer import train


@pytest.fixture(scope="module")
def dataset():
    ds = RenderedPanoramaDataset((32, 64), layout_seeds=[0, 1, 2], length=12)
    yield ds
    ds.close()


def test_items_are_normalized_panoramas_of_the_training_layouts(dataset):
    image, key = dataset[(4, 77)]
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    pixels = denormalize(image[None])[0]
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.05  # a scene, not a blank
    assert key == "rooms-seed-1/77"  # index 4 of 3 layouts -> layout 1
    truth = dataset.render(1, 77)  # the same pose rendered directly, no flip (no augmentation set)
    assert np.abs(pixels.permute(1, 2, 0).numpy() * 255 - truth).max() < 1.0


def test_a_sample_is_a_function_of_its_index_and_seed_and_each_epoch_sees_new_views(dataset):
    a, b, c = dataset[(0, 5)][0], dataset[(3, 9)][0], dataset[(0, 5)][0]  # (3, 9): the same layout 0, another pose
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_held_out_layouts_are_never_rendered(dataset):
    assert {dataset[(i, i)][1].split("/")[0] for i in range(len(dataset))} == {f"rooms-seed-{s}" for s in (0, 1, 2)}
    default = RenderedPanoramaDataset((32, 64))
    assert not set(default.layout_seeds) & set(HELDOUT_LAYOUT_SEEDS) and max(default.layout_seeds) < 1000
    for bad in ("0-1005", "1019", "1000-1019"):
        with pytest.raises(DatasetError, match="held-out"):
            parse_layout_seeds(bad)
    with pytest.raises(DatasetError, match="held-out"):
        RenderedPanoramaDataset((32, 64), layout_seeds=[3, 1010])
    with pytest.raises(DatasetError, match="layout seeds"):
        parse_layout_seeds("data/rooms")
    with pytest.raises(DatasetError, match="H x 2H"):
        RenderedPanoramaDataset((32, 32))


def test_config_selects_it_and_needs_an_epoch_length(tmp_path):
    cfg = load_config(overrides=["data.kind=render", "data.path=0-3", "data.max_images=8", "model.img_size=[32,64]"])
    ds = dataset_from_config(cfg.data, cfg.model.img_hw)
    assert isinstance(ds, RenderedPanoramaDataset) and len(ds) == 8 and ds.layout_seeds == [0, 1, 2, 3]
    cfg = load_config(overrides=["data.kind=render", "data.path=0-3"])
    with pytest.raises(DatasetError, match="max_images"):
        dataset_from_config(cfg.data, (32, 64))


def test_training_on_rendered_panoramas_lowers_the_loss(tmp_path, dataset):
    """A few real optimizer steps of ``btnk-env train``'s loop (rendering in this process: it has rendered already)."""
    cfg = load_config(overrides=[
        "data.kind=render", "data.path=0-2", "data.max_images=16", "data.num_workers=0", "data.hflip=true",
        "model.preset=test", "model.img_size=[32,64]", "optim.lr=2e-3", "optim.warmup_iters=2",
        "train.batch_size=4", "train.epochs=5", "train.full_mae_loss_coeff=0", f"io.out_dir={tmp_path}/run",
        "io.snapshot_every=null", "io.log_every=1",
    ])
    fixed = torch.stack([dataset[(i, 1000 + i)][0] for i in range(8)])  # held-apart poses of the same layouts

    def loss(model):
        model.eval()
        with torch.no_grad():
            return float(bottleneck_losses(model, fixed, model(fixed), 1.0, 0.0)["loss"])

    torch.manual_seed(0)  # the trainer seeds the same way before building the model
    before = loss(BtnkMAE("test", img_size=(32, 64)))
    result = train(cfg)
    after = loss(BtnkMAE.from_pretrained(result.final_dir))
    assert result.step == 20 and result.last_metrics["skipped_images"] == 0
    assert after < 0.8 * before, (before, after)


FORK_SCRIPT = """
from torch.utils.data import DataLoader
from btnk_env.training.online_data import RenderedPanoramaDataset
ds = RenderedPanoramaDataset((32, 64), [0, 1], 4)
print(tuple(next(iter(DataLoader(ds, batch_size=2, num_workers=1)))[0].shape))  # rendered in the worker only
ds[(0, 1)]  # now this process has rendered: a forked worker must fail clearly, not hang
try:
    next(iter(DataLoader(ds, batch_size=2, num_workers=1)))
except RuntimeError as err:
    print("refused:", "forked from one that had already rendered" in str(err))
"""


def test_workers_render_with_their_own_context_and_a_fork_after_rendering_is_refused():
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-800:]
    assert result.stdout.split("\n")[:2] == ["(2, 3, 32, 64)", "refused: True"], result.stdout


def test_scene_cache_returns_to_a_layout_unchanged():
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

    cached, plain = PanoramaRoomsEnv(height=32, scene_cache=1), PanoramaRoomsEnv(height=32)
    try:
        frames = [[env.reset(seed=s)[0] for s in (0, 1, 0, 2, 0)] for env in (cached, plain)]
        assert all(np.array_equal(a, b) for a, b in zip(*frames))
        assert list(cached._scene_cache) == [0] and not plain._scene_cache  # the most recent one kept
    finally:
        cached.close()
        plain.close()
    with pytest.raises(ValueError, match="scene_cache"):
        PanoramaRoomsEnv(height=32, scene_cache=-1)
