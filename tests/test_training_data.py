"""Datasets: folders, panorama datasets, ImageFolder roots, corrupt and missing data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from btnk_env.models import BtnkMAE
from tests.conftest import IMAGES, require_shared
from tests.test_training_helpers import GOLDEN_NOACT, golden_config, make_images
from btnk_env.training import train
from btnk_env.training.datasets import DatasetError, ImageTransform, build_dataset
from btnk_env.training.sampler import EpochBatchSampler


def test_recursive_png_and_jpeg_folder(tmp_path):
    make_images(tmp_path / "a", n=2)
    (tmp_path / "b" / "c").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "b" / "c" / "x.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = build_dataset(str(tmp_path), (32, 32))
    assert len(ds) == 3 and ds.key(2) == "b/c/x.JPG"
    img, _ = ds[(2, 5)]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32


def test_panorama_dataset_with_manifest(tmp_path):
    make_images(tmp_path / "images", n=3, size=(32, 64))
    (tmp_path / "dataset_config.json").write_text(json.dumps({"dataset_type": "panorama"}))
    lines = [json.dumps({"file": "images/img_002.png", "step": 0}), json.dumps({"file": "img_000.png"}), '{"file": "ima']
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines))  # last line cut short by a crash
    ds = build_dataset(str(tmp_path), (16, 32))
    assert ds.kind == "panorama" and [ds.key(i) for i in range(len(ds))] == ["images/img_002.png", "images/img_000.png"]
    # the original's layout: dataset_config.json + PNGs, no manifest
    (tmp_path / "manifest.jsonl").unlink()
    assert len(build_dataset(str(tmp_path), (16, 32))) == 3


def test_real_habitat_panorama_native_and_squashed():
    pano = require_shared(IMAGES / "habitat_pano")
    native = build_dataset(str(pano), (256, 512), kind="panorama")[(0, 0)][0]
    square = build_dataset(str(pano), (512, 512), kind="panorama")[(0, 0)][0]
    assert native.shape == (3, 256, 512) and square.shape == (3, 512, 512)


def test_imagefolder_root_uses_the_split(tmp_path):
    make_images(tmp_path / "tiny" / "train" / "n01" / "images", n=2)
    make_images(tmp_path / "tiny" / "val" / "images", n=1)
    assert len(build_dataset(str(tmp_path / "tiny"), (32, 32))) == 2
    assert len(build_dataset(str(tmp_path / "tiny"), (32, 32), split="val")) == 1


def test_missing_and_empty_datasets_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        build_dataset(str(tmp_path / "nope"), (32, 32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no PNG/JPEG images found"):
        build_dataset(str(tmp_path / "empty"), (32, 32))


def test_hf_dataset_needs_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(DatasetError, match="pip install datasets"):
        build_dataset("hf:imagenet-1k", (224, 224))


def test_hf_dataset_from_a_local_folder(tmp_path, monkeypatch):
    """``hf:<dir>`` goes through Hugging Face ``datasets`` (its image-folder builder, no network)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    make_images(tmp_path / "imgs", n=5, size=(40, 48))
    dataset = build_dataset(f"hf:{tmp_path / 'imgs'}", (32, 32), transform="resize")
    assert len(dataset) == 5
    image, key = dataset[0]
    assert tuple(image.shape) == (3, 32, 32) and image.dtype == torch.float32


def test_augmentation_is_a_function_of_the_seed():
    pixels = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    t = ImageTransform((32, 32), "random_resized_crop", hflip=True)
    assert torch.equal(t(pixels, 7), t(pixels, 7)) and not torch.equal(t(pixels, 7), t(pixels, 8))


def test_ranks_split_the_global_batch():
    one = EpochBatchSampler(12, 4, seed=3)
    one.set_epoch(2)
    ranks = [EpochBatchSampler(12, 2, world_size=2, rank=r, seed=3) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    for k, batch in enumerate(one):
        union = sorted(list(iter(ranks[0]))[k] + list(iter(ranks[1]))[k])
        assert sorted(batch) == union
    resumed = EpochBatchSampler(12, 4, seed=3)
    resumed.set_epoch(2, start_batch=1)
    assert list(resumed) == list(one)[1:]


@pytest.mark.usefixtures("needs_golden")  # a missing shared/ fails loudly
def test_corrupt_images_are_skipped_and_counted(tmp_path):
    data = tmp_path / "imgs"
    make_images(data, n=8)
    (data / "img_003.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = (data / "img_005.png").read_bytes()
    (data / "img_005.png").write_bytes(good[: len(good) // 2])  # truncated
    seen = []
    result = train(golden_config(data, tmp_path / "run", "train.epochs=1", "train.batch_size=4"),
                   hooks=[lambda trainer, row: seen.append(row)])
    assert result.skipped_images == ["img_003.png", "img_005.png"]
    assert seen[-1]["skipped_images"] == 2 and sum(r["images"] for r in seen) == 6  # never replaced
    assert BtnkMAE.from_pretrained(result.final_dir).latent_dim == 64
