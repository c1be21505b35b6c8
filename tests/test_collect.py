"""Panorama collection: dataset layout, read-back, resume without duplicates or gaps, CLI."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

from btnk_env.cli import main as cli_main
from btnk_env.collection import collect_panoramas, load_manifest, parse_seeds
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv


@pytest.fixture
def env():
    e = PanoramaRoomsEnv(height=32)
    yield e
    e.close()


def _snapshot(root):
    """Manifest records and the decoded pixels of every frame."""
    records = load_manifest(root)
    pixels = [np.asarray(Image.open(os.path.join(root, r["file"]))) for r in records]
    return records, pixels


def test_collects_a_few_hundred_panoramas_readable_like_the_original_loader(env, tmp_path):
    out = collect_panoramas(env, tmp_path / "rooms", 300, mode="poses", seeds="0-9", progress=False)
    config = json.loads((out / "dataset_config.json").read_text())
    assert config["dataset_type"] == "panorama" and config["num_images"] == 300
    assert config["image_size"] == [32, 64]
    # the original btnk_mae loader: every **/*.png under the folder, opened as RGB
    paths = sorted(glob.glob(os.path.join(out, "**/*.png"), recursive=True))
    assert len(paths) == 300
    records = load_manifest(out)
    assert [r["index"] for r in records] == list(range(300))
    assert [os.path.join(out, r["file"]) for r in records] == paths
    assert {r["scene"] for r in records} == {f"rooms-seed-{s}" for s in range(10)}
    for r in records[::37]:
        img = Image.open(out / r["file"]).convert("RGB")
        assert img.size == (64, 32)
        x, _, z = r["position"]
        env.reset(seed=r["seed"])
        assert env.layout.is_free(x, z, env.agent_radius)
        assert np.array_equal(np.asarray(img), env.set_pose(r["position"], r["heading"]))
    assert len({r["heading"] for r in records}) == 300  # no duplicated frames


@pytest.mark.parametrize("mode", ["poses", "walk"])
def test_interrupted_then_resumed_equals_uninterrupted(env, tmp_path, mode):
    n = 23
    full = collect_panoramas(env, tmp_path / "full", n, mode=mode, seeds=[3, 4], frames_per_scene=6, progress=False)

    # interruption 1: a short run, resumed to n
    part = tmp_path / "part"
    collect_panoramas(env, part, 8, mode=mode, seeds=[3, 4], frames_per_scene=6, progress=False)
    assert len(load_manifest(part)) == 8

    # interruption 2: a crash in the middle of a walk segment
    def crash(index, record):
        if index == 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect_panoramas(env, part, n, mode=mode, seeds=[3, 4], frames_per_scene=6, progress=False, callback=crash)
    assert len(load_manifest(part)) == 15
    fresh = PanoramaRoomsEnv(height=32)  # a new process would have a fresh environment
    collect_panoramas(fresh, part, n, mode=mode, seeds=[3, 4], frames_per_scene=6, progress=False)
    fresh.close()

    (rec_a, pix_a), (rec_b, pix_b) = _snapshot(full), _snapshot(part)
    assert rec_a == rec_b
    assert len(pix_a) == n and all(np.array_equal(a, b) for a, b in zip(pix_a, pix_b))
    assert len(os.listdir(part / "images")) == n  # no leftovers, no duplicates


def test_resume_re_renders_a_missing_png_and_drops_a_torn_manifest_line(env, tmp_path):
    root = collect_panoramas(env, tmp_path / "d", 10, seeds=[1], progress=False)
    reference = _snapshot(root)
    (root / "images" / "000007.png").unlink()
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write('{"index": 10, "file": "images/0000')  # a line cut by a crash
    (root / "images" / ".000011.png.tmp").write_bytes(b"partial")
    assert len(load_manifest(root)) == 9  # the frame without its PNG costs itself alone: 8 and 9 are kept
    collect_panoramas(env, root, 10, seeds=[1], progress=False)
    records, pixels = _snapshot(root)
    assert records == reference[0]
    assert all(np.array_equal(a, b) for a, b in zip(pixels, reference[1]))
    assert sorted(os.listdir(root / "images")) == [f"{i:06d}.png" for i in range(10)]
    assert len((root / "manifest.jsonl").read_text().splitlines()) == 10


def test_trajectory_mode_renders_the_given_poses(env, tmp_path):
    env.reset(seed=2)
    trajectory = []
    for i in range(5):
        p, h = env.sample_navigable_pose(np.random.default_rng(100 + i))
        trajectory.append({"position": p.tolist(), "heading": h, "seed": 2})
    root = collect_panoramas(env, tmp_path / "t", mode="trajectory", trajectory=trajectory, progress=False)
    records = load_manifest(root)
    assert len(records) == 5
    for rec, step in zip(records, trajectory):
        assert np.allclose(rec["position"], step["position"]) and rec["heading"] == pytest.approx(step["heading"])
        assert rec["scene"] == "rooms-seed-2" and rec["mode"] == "trajectory"


def test_resuming_with_other_settings_is_refused(env, tmp_path):
    collect_panoramas(env, tmp_path / "d", 3, seeds=[0], progress=False)
    with pytest.raises(ValueError, match="different settings"):
        collect_panoramas(env, tmp_path / "d", 6, seeds=[1], progress=False)


def test_bad_arguments_raise(env, tmp_path):
    with pytest.raises(ValueError):
        collect_panoramas(env, tmp_path / "a", 3, mode="teleport")
    with pytest.raises(ValueError):
        collect_panoramas(env, tmp_path / "b", 3, mode="trajectory")


def test_command_line_collects_from_a_gym_id_and_resumes(tmp_path, capsys):
    args = ["collect", "--out", str(tmp_path / "cli"), "--num-frames", "4", "--height", "32",
            "--seeds", "0-1", "--frames-per-scene", "2", "--no-progress"]
    assert cli_main(args) == 0
    args[4] = "6"
    assert cli_main(args) == 0
    assert "6 panoramas" in capsys.readouterr().out
    records = load_manifest(tmp_path / "cli")
    assert [r["seed"] for r in records] == [0, 0, 1, 1, 0, 0]


def test_gym_id_is_accepted(tmp_path):
    root = collect_panoramas("btnk_env/PanoramaRooms-v0", tmp_path / "g", 2, height=32, progress=False,
                             env_kwargs={"world": "single_room"})
    assert [r["scene"] for r in load_manifest(root)] == ["single_room-seed-0"] * 2


def test_parse_seeds():
    assert parse_seeds("0-2,5, 9") == [0, 1, 2, 5, 9]
    assert parse_seeds("7") == [7]
    with pytest.raises(ValueError):
        parse_seeds(" , ")
