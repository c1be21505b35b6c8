"""``btnk-env encode``: latents equal model.encode of the stored frames, resume after a crash,
torchrun (two processes) equals one, mismatches refused, Minari round trip, latent windows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from btnk_env.cli import main as cli_main
from btnk_env.collection import collect_panoramas
from btnk_env.formats.episodes import EpisodeFolder
from btnk_env.collection.episodes import record_episodes
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.models import BtnkMAE, frames_to_tensor
from tests.conftest import ROOT
from btnk_env.training.encode import encode_dataset
from btnk_env.training.latent_episodes import LatentWindows
from btnk_env.formats.latents import LatentDataset


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    """Five random-policy episodes of 32x64 panoramas (2 to 9 steps each)."""
    root = tmp_path_factory.mktemp("eps") / "eps"
    env = PanoramaRoomsEnv(height=32)
    try:
        for n, steps in enumerate((2, 9, 5, 9, 7)):  # episode n recorded (resumed) through a writer cutting it
            record_episodes(env, None, n + 1, policy="random", seeds=[0], max_steps=9, progress=False,
                            writer=_Writer(root, steps))
    finally:
        env.close()
    return root


class _Writer:
    """An EpisodeFolderWriter that cuts the episode it writes to ``steps`` steps (varied lengths)."""

    def __init__(self, root, steps):
        from btnk_env.formats.episodes import EpisodeFolderWriter

        self.inner = EpisodeFolderWriter(root, (32, 64), "Discrete(3)", {"policy": "random"})
        self.steps = steps

    def num_complete(self):
        return self.inner.num_complete()

    def write(self, index, ep):
        t = min(self.steps, ep.num_steps)
        ep.frames, ep.positions, ep.headings = ep.frames[:t + 1], ep.positions[:t + 1], ep.headings[:t + 1]
        ep.actions, ep.rewards, ep.terminated = ep.actions[:t], ep.rewards[:t], ep.terminated[:t]
        ep.truncated = np.r_[np.zeros(t - 1, bool), not ep.terminated[-1]]
        self.inner.write(index, ep)

    def close(self):
        self.inner.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    BtnkMAE("test", img_size=(32, 64)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def encoded(episodes, model_dir, tmp_path_factory):
    """The episodes encoded in chunks of 5 frames (batches of 5, two decoding workers)."""
    return encode_dataset(episodes, tmp_path_factory.mktemp("encoded") / "lat", model_dir, batch_size=5, chunk_size=5,
                          workers=2, device="cpu", progress=False)


def _stored_frames(root):
    data = EpisodeFolder(root)
    return np.concatenate([data.load(i).frames for i in range(len(data))])


def test_episode_latents_equal_model_encode_of_the_stored_frames(episodes, model_dir, encoded):
    lat = LatentDataset(encoded)
    model = BtnkMAE.from_pretrained(model_dir)
    frames = _stored_frames(episodes)  # (N, 32, 64, 3)
    with torch.inference_mode():
        expected = model.encode(frames_to_tensor(frames, size=model.img_size)).numpy()
    assert lat.latents.shape == expected.shape == (37, model.latent_dim)  # 3 + 10 + 6 + 10 + 8 frames
    np.testing.assert_allclose(lat.latents, expected, atol=1e-5, rtol=0)
    data = EpisodeFolder(episodes)
    assert lat.offsets.tolist() == [0, 3, 13, 19, 29, 37] and lat.num_episodes == 5
    for e in range(5):
        steps, got = data.steps(e), lat.episode(e)
        assert np.array_equal(got["actions"], steps["actions"]) and np.array_equal(got["rewards"], steps["rewards"])
        assert np.array_equal(got["truncated"], steps["truncated"]) and got["truncated"][-1]
        assert np.allclose(got["poses"][:, :3], steps["positions"]) and lat.actions[lat.offsets[e + 1] - 1] == -1
    assert lat.meta["img_size"] == [32, 64] and lat.meta["latent_dim"] == model.latent_dim and lat.meta["complete"]


def test_panorama_latents_align_with_sample_keys_and_float16(model_dir, tmp_path):
    env = PanoramaRoomsEnv(height=32)
    try:
        pano = collect_panoramas(env, tmp_path / "pano", 9, seeds=[1, 2], frames_per_scene=5, progress=False)
    finally:
        env.close()
    out = encode_dataset(pano, tmp_path / "lat", model_dir, batch_size=4, chunk_size=4, workers=0,
                         dtype="float16", device="cpu", progress=False)
    lat = LatentDataset(out)
    assert lat.keys == [f"images/{i:06d}.png" for i in range(9)] and lat.latents.dtype == np.float16
    from PIL import Image

    model = BtnkMAE.from_pretrained(model_dir)
    frame = np.asarray(Image.open(pano / lat.keys[6]).convert("RGB"))
    with torch.inference_mode():
        expected = model.encode(frames_to_tensor(frame)).numpy()[0]
    np.testing.assert_allclose(lat.latents[6].astype(np.float32), expected, atol=2e-3 * np.abs(expected).max())
    # a plain image folder of mixed sizes: each image resized (in the workers) to the model's input
    plain = tmp_path / "plain"
    (plain / "b").mkdir(parents=True)
    big = np.asarray(Image.fromarray(frame).resize((128, 64)))
    Image.fromarray(frame).save(plain / "a.png")
    Image.fromarray(big).save(plain / "b" / "c.png")
    lat = LatentDataset(encode_dataset(plain, tmp_path / "plain_lat", model_dir, workers=1, device="cpu", progress=False))
    assert lat.keys == ["a.png", "b/c.png"]
    with torch.inference_mode():
        expected = model.encode(frames_to_tensor(np.stack([frame]), size=(32, 64))).numpy()
        expected_big = model.encode(frames_to_tensor(big, size=(32, 64))).numpy()
    np.testing.assert_allclose(lat.latents, np.concatenate([expected, expected_big]), atol=1e-5, rtol=0)


def test_killed_encode_resumes_without_duplicates(episodes, model_dir, encoded, tmp_path):
    stored = []

    def crash(k):
        stored.append(k)
        if len(stored) == 3:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(episodes, part, model_dir, chunk_size=5, batch_size=5, workers=0, device="cpu",
                       progress=False, on_chunk=crash)
    assert not (part / "latents.npy").exists()
    with pytest.raises(ValueError, match="no complete latent dataset"):
        LatentDataset(part)
    resumed = []
    encode_dataset(episodes, part, model_dir, chunk_size=5, batch_size=5, workers=0, device="cpu",
                   progress=False, on_chunk=resumed.append)
    assert stored == [0, 1, 2] and resumed == [3, 4, 5, 6, 7]  # 37 frames = 8 chunks: each encoded once
    a, b = LatentDataset(encoded), LatentDataset(part)
    np.testing.assert_allclose(a.latents, b.latents, atol=1e-6, rtol=0)
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.offsets, b.offsets)
    again = []
    encode_dataset(episodes, part, model_dir, chunk_size=5, workers=0, device="cpu", progress=False, on_chunk=again.append)
    assert again == []  # complete: nothing to redo


def test_mismatching_model_or_empty_dataset_is_refused_before_any_work(episodes, encoded, tmp_path):
    out = encoded
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    wide = BtnkMAE("test", img_size=(32, 64), embed_dim=32, num_heads=4)
    with pytest.raises(ValueError, match=r"latent_dim: 64 there, 32 now"):
        encode_dataset(episodes, out, wide, chunk_size=5, workers=0, device="cpu", progress=False)
    small = BtnkMAE("test", img_size=(16, 32))
    with pytest.raises(ValueError, match=r"img_size: \[32, 64\] there, \[16, 32\] now"):
        encode_dataset(episodes, out, small, chunk_size=5, workers=0, device="cpu", progress=False)
    other = BtnkMAE("test", img_size=(32, 64))  # same shapes, other weights
    with pytest.raises(ValueError, match="other weights"):
        encode_dataset(episodes, out, other, chunk_size=5, workers=0, device="cpu", progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    from btnk_env.formats.episodes import EpisodeFolderWriter

    EpisodeFolderWriter(tmp_path / "empty", (32, 64), "Discrete(3)", {}).close()
    assert cli_main(["encode", str(tmp_path / "empty"), "--out", str(tmp_path / "x"), "--model", str(model_dir)]) == 2
    assert not (tmp_path / "x").exists()


def test_minari_round_trip_keeps_episode_boundaries_and_actions(episodes, model_dir, encoded, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    shutil.copytree(encoded, tmp_path / "lat")  # every chunk done: the command only assembles and exports
    status = cli_main(["encode", str(episodes), "--out", str(tmp_path / "lat"), "--model", str(model_dir),
                       "--chunk-size", "5", "--device", "cpu", "--minari-id", "btnk/rooms/test-v0", "--no-progress"])
    assert status == 0
    lat = LatentDataset(tmp_path / "lat")
    ds = minari.load_dataset("btnk/rooms/test-v0")
    from gymnasium import spaces

    assert ds.observation_space == spaces.Box(-np.inf, np.inf, (lat.latent_dim,), np.float32)
    assert ds.action_space == spaces.Discrete(3) and ds.total_episodes == 5 and ds.total_steps == 37 - 5
    for e, ep in enumerate(ds.iterate_episodes()):
        mine = lat.episode(e)
        assert ep.observations.dtype == np.float32
        assert np.array_equal(ep.observations, mine["latents"]) and np.array_equal(ep.actions, mine["actions"])
        assert np.array_equal(ep.terminations, mine["terminated"]) and np.array_equal(ep.truncations, mine["truncated"])
        np.testing.assert_allclose(ep.rewards, mine["rewards"], rtol=1e-6)
    # the id holds other latents (float16 now): refused before any work
    assert cli_main(["encode", str(episodes), "--out", str(tmp_path / "again"), "--model", str(model_dir),
                     "--dtype", "float16", "--minari-id", "btnk/rooms/test-v0"]) == 2
    assert not (tmp_path / "again").exists()


def test_latent_windows_never_cross_episodes(encoded):
    lat = LatentDataset(encoded)
    windows = LatentWindows(lat, window=4)
    # episodes of 3, 10, 6, 10, 8 frames: 0 + 7 + 3 + 7 + 5 windows
    assert len(windows) == 22
    for i in range(len(windows)):
        item = windows[i]
        e, s = int(item["episode"]), int(item["start"])
        lo = int(lat.offsets[e])
        assert item["latents"].shape == (4, lat.latent_dim) and item["actions"].shape == (4,)
        assert lo + s + 4 <= lat.offsets[e + 1]  # inside its episode
        assert torch.equal(item["latents"], torch.from_numpy(np.array(lat.latents[lo + s:lo + s + 4])))
        assert (item["actions"][:-1] >= 0).all()  # every transition inside the window is a real step
    assert len(LatentWindows(lat, window=4, stride=3)) == 0 + 3 + 1 + 3 + 2
    with pytest.raises(ValueError, match="the longest has 10"):
        LatentWindows(lat, window=11)
    loader = torch.utils.data.DataLoader(windows, batch_size=8, shuffle=True)
    batch = next(iter(loader))
    assert batch["latents"].shape == (8, 4, lat.latent_dim) and batch["actions"].dtype == torch.int64


def test_encode_killed_with_sigkill_at_a_random_chunk_resumes_exactly(episodes, model_dir, encoded, tmp_path):
    """A real kill (SIGKILL: no cleanup, no exception) after a random chunk; the rerun encodes the
    remaining chunks once each and the result equals an uninterrupted encode."""
    import random

    k = random.randrange(0, 7)  # the chunk after which the process dies (of 8 chunks)
    out = tmp_path / "killed"
    code = (
        "import os, signal\n"
        "from btnk_env.training.encode import encode_dataset\n"
        f"def cb(c):\n    if c == {k}: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"encode_dataset({str(episodes)!r}, {str(out)!r}, {str(model_dir)!r}, chunk_size=5, batch_size=5, "
        "workers=0, device='cpu', progress=False, on_chunk=cb)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, f"kill after chunk {k}: {proc.returncode} {proc.stderr[-2000:]}"
    resumed = []
    encode_dataset(episodes, out, model_dir, chunk_size=5, batch_size=5, workers=0, device="cpu", progress=False,
                   on_chunk=resumed.append)
    assert resumed == list(range(k + 1, 8)), f"killed after chunk {k}, then re-encoded {resumed}"
    a, b = LatentDataset(encoded), LatentDataset(out)
    np.testing.assert_allclose(a.latents, b.latents, atol=1e-6, rtol=0)
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.actions, b.actions)


def test_two_process_torchrun_encode_equals_one_process(episodes, model_dir, encoded, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "btnk_env",
           "encode", str(episodes), "--out", str(tmp_path / "two"), "--model", str(model_dir), "--chunk-size", "5",
           "--batch-size", "5", "--device", "cpu", "--workers", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("latents of") == 1  # rank 0 alone reports (and writes the index)
    a, b = LatentDataset(encoded), LatentDataset(tmp_path / "two")
    np.testing.assert_allclose(a.latents, b.latents, atol=1e-5, rtol=0)
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.actions, b.actions)
    meta = json.loads((tmp_path / "two" / "latents.json").read_text())
    assert meta["complete"] and meta["num_frames"] == 37


def test_encode_reads_a_shard_set_as_collect_writes_it(tmp_path, model_dir):
    from btnk_env.formats import iter_shard, open_shard_set
    from btnk_env.training.datasets import decode_image

    shards = tmp_path / "shards"
    assert cli_main(["collect", "--out", str(shards), "--format", "shards", "--shard-size", "3", "--num-frames", "7",
                     "--height", "32", "--world", "single_room", "--no-progress"]) == 0
    assert cli_main(["encode", str(shards), "--out", str(tmp_path / "lat"), "--model", str(model_dir), "--workers", "0",
                     "--chunk-size", "4", "--device", "cpu", "--no-progress"]) == 0
    lat = LatentDataset(tmp_path / "lat")
    shard_set = open_shard_set(shards)
    frames = np.stack([decode_image(s["png"]) for e in shard_set.shards for _, s in iter_shard(shard_set.path(e))])
    assert len(frames) == 7 and lat.latents.shape == (7, 64)
    model = BtnkMAE.from_pretrained(model_dir)
    with torch.no_grad():
        expected = model.encode(frames_to_tensor(frames, size=(32, 64))).numpy()
    np.testing.assert_allclose(np.asarray(lat.latents), expected, atol=1e-4)
