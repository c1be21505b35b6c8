"""Bounds before allocation, validation of episode arrays and training settings, and one line with
exit status 2 for every bad input of issue 23 (a bug keeps its traceback)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from btnk_env.cli import main as cli_main
from btnk_env import formats as F
from btnk_env.formats.episodes import EpisodeFolder
from btnk_env.collection.episodes import record_episodes
from btnk_env.formats.shards import ShardWriter
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.models import BtnkMAE
from btnk_env.models.checkpoint import CheckpointError
from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics
from btnk_env.models.image_file import ImageDecodeError, read_image
from tests.conftest import ROOT
from btnk_env.training.encode import encode_dataset


def _one_line(capsys, argv, match):
    """``btnk-env argv`` exits 2 with one stderr line matching ``match``."""
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, (captured.out[-500:], captured.err[-500:])
    assert len(err) == 1 and __import__("re").search(match, err[0]), err


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    env = PanoramaRoomsEnv(height=16, world="single_room")
    root = tmp_path_factory.mktemp("eps") / "eps"
    try:
        record_episodes(env, root, 3, policy="random", seeds=[3], max_steps=3, progress=False)
    finally:
        env.close()
    return root


@pytest.fixture(scope="module")
def latents(episodes, tmp_path_factory):
    torch.manual_seed(0)
    model = tmp_path_factory.mktemp("m") / "tiny"
    BtnkMAE("test", img_size=(16, 32)).save_pretrained(model)
    return encode_dataset(episodes, tmp_path_factory.mktemp("lat") / "lat", model, batch_size=8, chunk_size=8,
                          workers=0, device="cpu", progress=False)


# ---------------------------------------------------------------------------- bounds before allocation
def test_an_image_header_over_the_pixel_limit_is_refused_before_decoding():
    from btnk_env.models import image_file

    side = int(getattr(image_file, "MAX_IMAGE_PIXELS", 16384 * 8192) ** 0.5) + 1
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # a few KB declaring > the limit
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageDecodeError, match="over the limit"):
        read_image(buf.getvalue())


def test_a_sparse_tar_member_is_refused_by_its_real_size(tmp_path, capsys):
    src = tmp_path / "set"
    with ShardWriter(src, image_size=(4, 8), max_count=4) as w:
        w.write(F.sample_key(0), np.zeros((4, 8, 3), np.uint8), {"index": 0})
    shard = src / F.shard_name(0)
    raw = bytearray(shard.read_bytes())
    with tarfile.open(shard) as tar:
        member = tar.getmembers()[0]
    raw[member.offset + 156] = ord("S")  # GNU sparse type flag: the member would expand, its bytes are few
    header = raw[member.offset:member.offset + 512]
    header[148:156] = b" " * 8
    header[148:156] = (f"{sum(header):06o}\0 ").encode()
    raw[member.offset:member.offset + 512] = header
    shard.write_bytes(bytes(raw))
    index = json.loads((src / F.INDEX).read_text())
    index["shards"][0]["bytes"] = len(raw)
    (src / F.INDEX).write_text(json.dumps(index))
    _one_line(capsys, ["collect", "--convert", str(src), "--out", str(tmp_path / "out"), "--no-progress"],
              "sparse|claims")


def test_config_sizes_are_checked_against_the_weights_header_before_allocation(tmp_path):
    model = tmp_path / "dyn"
    LatentDynamics(DynamicsConfig(latent_dim=8, width=16, heads=2)).save_pretrained(model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "width": 4096}))
    with pytest.raises(CheckpointError, match="config.json and the weights disagree"):
        LatentDynamics.from_pretrained(model)
    mae = tmp_path / "mae"
    BtnkMAE("test", img_size=(16, 32)).save_pretrained(mae)
    meta = json.loads((mae / "config.json").read_text())
    meta["config"]["embed_dim"] = 1024
    (mae / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="config.json and the weights disagree"):
        BtnkMAE.from_pretrained(mae)


class _Requests(torch.overrides.TorchFunctionMode):
    """Counts the elements of the tensors the constructors below are asked for, on any device."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.empty, torch.zeros, torch.ones):
            size = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
            self.elements += int(np.prod([int(v) for v in size]))
        return func(*args, **kwargs)


@pytest.mark.parametrize("which", ["dynamics", "mae"])
def test_an_oversized_config_is_refused_before_its_model_is_built(tmp_path, which):
    from safetensors import safe_open

    if which == "dynamics":
        LatentDynamics(DynamicsConfig(latent_dim=8, width=16, heads=2)).save_pretrained(tmp_path / "m")
        path, load, key = tmp_path / "m" / "config.json", LatentDynamics.from_pretrained, "width"
    else:
        BtnkMAE("test", img_size=(16, 32)).save_pretrained(tmp_path / "m")
        path, load, key = tmp_path / "m" / "config.json", BtnkMAE.from_pretrained, "embed_dim"
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        held = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    meta = json.loads(path.read_text())
    (meta if which == "dynamics" else meta["config"])[key] = 1 << 16  # a width no one could build (2**32 per matrix)
    path.write_text(json.dumps(meta))
    with _Requests() as asked, pytest.raises(CheckpointError, match="builds a model of more than .* config.json and "
                                                                    "the weights disagree"):
        load(tmp_path / "m")
    # not even on the meta device: what the build asked for stays within twice the weights and the slack
    from btnk_env.models.checkpoint import BUILD_SLACK_ELEMENTS
    assert asked.elements <= 2 * held + BUILD_SLACK_ELEMENTS


def test_a_huge_num_steps_in_the_index_is_checked_against_the_files(episodes, tmp_path):
    root = tmp_path / "eps"
    shutil.copytree(episodes, root)
    lines = (root / "episodes.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "num_steps": 100_000_000})
    (root / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    data = EpisodeFolder(root)
    assert len(data) == 2 and "frames its record says" in data.damaged[0]


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("change, match", [
    (lambda a: {**a, "actions": np.r_[a["actions"], np.zeros(6, np.int64)]}, "actions has shape"),
    (lambda a: {**a, "actions": np.where(np.arange(len(a["actions"])) == 0, 9, a["actions"])}, "action space"),
    (lambda a: {**a, "actions": np.where(np.arange(len(a["actions"])) == 0, -4, a["actions"])}, "action space"),
    (lambda a: {**a, "actions": np.where(np.arange(len(a["actions"])) == 0, 10**12, a["actions"])}, "action space"),
    (lambda a: {**a, "rewards": np.full_like(a["rewards"], np.nan)}, "non-finite"),
])
def test_episode_arrays_are_validated(episodes, tmp_path, change, match):
    root = tmp_path / "eps"
    shutil.copytree(episodes, root)
    path = root / "episodes/000001/steps.npz"
    with np.load(path) as z:
        arrays = change({k: z[k] for k in z.files})
    np.savez(path, **arrays)
    data = EpisodeFolder(root)
    assert [r["index"] for r in data.episodes] == [0, 2] and match in data.damaged[0] and "000001" in data.damaged[0]


def test_latent_episode_offsets_must_be_monotone(latents, tmp_path):
    from btnk_env.formats.latents import LatentDataset

    root = tmp_path / "lat"
    shutil.copytree(latents, root)
    offsets = np.load(root / "episode_offsets.npy")
    offsets[1] = -3
    np.save(root / "episode_offsets.npy", offsets)
    with pytest.raises(ValueError, match="episode_offsets.npy must rise"):
        LatentDataset(root)


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"), ("optim.lr=nan", "optim.lr"), ("train.steps=-5", "train.steps"),
    ("data.horizon=0", "data.horizon"), ("train.batch_size=0", "train.batch_size"),
    ("io.checkpoint_every=0", "io.checkpoint_every"), ("model.width=0", "model.width"),
])
def test_every_numeric_setting_of_train_dynamics_is_checked(latents, tmp_path, capsys, override, key):
    _one_line(capsys, ["train-dynamics", f"data.path={latents}", f"io.out_dir={tmp_path / 'run'}", override], key)
    assert not (tmp_path / "run" / "final").exists()


def test_nan_latents_are_refused_in_one_line(latents, tmp_path, capsys):
    root = tmp_path / "lat"
    shutil.copytree(latents, root)
    z = np.load(root / "latents.npy")
    z[5, 0] = np.nan
    np.save(root / "latents.npy", z)
    _one_line(capsys, ["train-dynamics", f"data.path={root}", f"io.out_dir={tmp_path / 'run'}", "train.steps=2"],
              "latents.npy row 5 is not finite")


# ---------------------------------------------------------------------------- one line, exit 2
@pytest.mark.parametrize("record", [b"{not json", b"[" * 100_000 + b"]" * 100_000])
def test_a_shard_record_that_is_not_json_or_too_deep_is_one_line(tmp_path, capsys, record):
    src = tmp_path / "set"
    with ShardWriter(src, image_size=(4, 8), max_count=4) as w:
        w.write(F.sample_key(0), np.zeros((4, 8, 3), np.uint8), {"index": 0})
    shard = src / F.shard_name(0)
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            data = record if m.name.endswith(".json") else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    index = json.loads((src / F.INDEX).read_text())
    index["shards"][0]["bytes"] = shard.stat().st_size
    (src / F.INDEX).write_text(json.dumps(index))
    _one_line(capsys, ["collect", "--convert", str(src), "--out", str(tmp_path / "out"), "--no-progress"],
              "not valid JSON|nested too deeply")


@pytest.mark.parametrize("text", ["{not json", "[" * 100_000 + "]" * 100_000])
def test_an_index_or_config_that_is_not_json_or_too_deep_is_one_line(tmp_path, capsys, text):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "index.json").write_text(text)
    _one_line(capsys, ["collect", "--convert", str(tmp_path / "set"), "--out", str(tmp_path / "o1"), "--no-progress"],
              "not valid JSON|nested too deeply")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "dataset_config.json").write_text(text)
    _one_line(capsys, ["collect", "--convert", str(tmp_path / "folder"), "--out", str(tmp_path / "o2"),
                       "--no-progress"], "not valid JSON|nested too deeply")


@pytest.mark.parametrize("damage", ["shape", "truncated"])
def test_dynamics_weights_of_a_wrong_shape_or_truncated_are_one_line(tmp_path, capsys, damage):
    from safetensors.torch import save_file

    model = tmp_path / "dyn"
    LatentDynamics(DynamicsConfig(latent_dim=192, width=16, heads=2)).save_pretrained(model)
    weights = model / "model.safetensors"
    if damage == "shape":
        save_file({"latent_mean": torch.zeros(3)}, str(weights))
    else:
        weights.write_bytes(weights.read_bytes()[:-100])
    _one_line(capsys, ["imagine", "--out", str(tmp_path / "v.gif"), "--dynamics", str(model), "--plan"],
              "model.safetensors")


def test_imagine_with_a_negative_seed_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "btnk_env", "imagine", "--out", str(tmp_path / "v.gif"), "--plan",
                           "--seed", "-1"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "seed -1 is outside" in proc.stderr and "Traceback" not in proc.stderr
