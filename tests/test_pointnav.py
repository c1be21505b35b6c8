"""PointNav episodes without habitat-lab: habitat-lab's dataset files, its success rule and SPL, the
recorder and ``imagine`` on them; on the habitat-sim stand-in and on the real simulator where importable."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from btnk_env.cli import main
from btnk_env.collection.episodes import record_episodes
from btnk_env.formats.episodes import EpisodeFolder
from btnk_env.envs.pointnav import (STOP, PointNavEnv, PointNavEpisode, load_pointnav, sample_pointnav_episodes,
                                    write_pointnav)
from tests.test_habitat_env import REAL, _env, hab, real_room  # noqa: F401  (fixtures)

pytestmark = pytest.mark.habitat

HABITAT_LAB_FILE = {"episodes": [  # the layout of habitat-lab's pointnav_v1 files (data/datasets/pointnav/...)
    {"episode_id": "7", "scene_id": "data/scene_datasets/habitat-test-scenes/van-gogh-room.glb",
     "start_position": [-0.77, 0.1, 0.46], "start_rotation": [0.0, 0.2588, 0.0, 0.9659],
     "info": {"geodesic_distance": 2.61, "difficulty": "easy"},
     "goals": [{"position": [1.2, 0.1, -1.1], "radius": None}], "shortest_paths": None, "start_room": None}]}


def test_reads_a_habitat_lab_dataset_and_writes_one_back(tmp_path):
    path = tmp_path / "val.json.gz"
    path.write_bytes(gzip.compress(json.dumps(HABITAT_LAB_FILE).encode()))
    (ep,) = load_pointnav(path)
    assert ep.episode_id == "7" and ep.scene_id.endswith("van-gogh-room.glb") and ep.geodesic_distance == 2.61
    assert ep.start_position == (-0.77, 0.1, 0.46) and ep.goals == ((1.2, 0.1, -1.1),)
    assert ep.heading == pytest.approx(math.radians(30), abs=1e-3)
    out = write_pointnav(tmp_path / "copy.json.gz", [ep])
    back = json.loads(gzip.decompress(out.read_bytes()))
    assert back["episodes"][0]["goals"] == [{"position": [1.2, 0.1, -1.1], "radius": None}]
    assert load_pointnav(out) == [ep]
    with pytest.raises(FileExistsError):
        write_pointnav(out, [ep])
    (tmp_path / "bad.json").write_text('{"episodes": [{"scene_id": "a.glb"}]}')
    with pytest.raises(ValueError, match="episode 0"):
        load_pointnav(tmp_path / "bad.json")


@pytest.fixture
def scene(hab, tmp_path):
    """The scene PointNav runs in: an exported apartment on the real simulator, the box room on the stand-in."""
    if not hab.real:
        return hab.scene
    from btnk_env.envs.export_scene import export_scene

    return str(export_scene(3, tmp_path / "apartment.glb"))


def test_success_needs_stop_within_the_success_distance(hab, scene):
    env = PointNavEnv(_env(scene=scene), [_nearby_episode(_env(scene=scene))])
    obs, info = env.reset(seed=0)
    assert env.action_space.n == 4 and info["success"] == 0.0 and info["distance_to_goal"] < 0.2
    _, _, terminated, _, info = env.step(1)  # a turn near the goal: not a success, the episode goes on
    assert not terminated and info["success"] == 0.0 and info["spl"] == 0.0
    _, reward, terminated, truncated, info = env.step(STOP)
    assert terminated and not truncated and info["success"] == 1.0
    assert info["spl"] == pytest.approx(1.0) and info["path_length"] == pytest.approx(0.0, abs=1e-4)
    env.close()


def _nearby_episode(probe_env) -> PointNavEpisode:
    """An episode whose goal lies 0.1 m from its start (dataset coordinates: navmesh points)."""
    start, _ = probe_env.sample_navigable_pose(np.random.default_rng(1))
    up = np.array([0.0, probe_env.floor_offset, 0.0])
    goal = start + [0.1, 0.0, 0.0]
    d = probe_env.geodesic_distance(start, goal)
    probe_env.close()
    return PointNavEpisode("near", Path(probe_env.scene).name, tuple(start + up), (0.0, 0.0, 0.0, 1.0), (tuple(goal + up),), d)


def test_a_pointnav_dataset_runs_to_its_end_with_success_and_spl(hab, scene, tmp_path):
    env = _env(scene=scene)
    path = write_pointnav(tmp_path / "apartment.pointnav.json.gz", sample_pointnav_episodes(env, 3, seed=0))
    pointnav = PointNavEnv(env, path)
    assert [ep.episode_id for ep in load_pointnav(path)] == ["0", "1", "2"]
    record_episodes(pointnav, tmp_path / "oracle", 3, policy="shortest-path", seeds=[0], max_steps=300, progress=False)
    record_episodes(pointnav, tmp_path / "random", 2, policy="random", seeds=[0], max_steps=5, progress=False)
    pointnav.close()
    oracle = EpisodeFolder(tmp_path / "oracle")
    assert oracle.config["action_space"] == "Discrete(4)" and oracle.config["collection"]["stop_action"] == STOP
    for i, record in enumerate(oracle.episodes):
        episode = oracle.load(i)
        assert episode.extra["episode_id"] == str(i) and episode.actions[-1] == STOP and episode.terminated[-1]
        assert record["success"] == 1.0 and 0.5 < record["spl"] <= 1.0, record  # the index holds habitat-lab's success
    for record in EpisodeFolder(tmp_path / "random").episodes:  # no STOP near the goal: no success
        assert record["success"] == 0.0 and record["spl"] == 0.0


def test_the_command_line_writes_plays_and_imagines_pointnav_episodes(hab, scene, tmp_path, tiny_model, capsys):
    from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics

    data = tmp_path / "apt.pointnav.json.gz"
    assert main(["pointnav", "--scene", scene, "--out", str(data), "--num-episodes", "2", "--seed", "4"]) == 0
    assert "2 PointNav episodes" in capsys.readouterr().out
    rc = main(["collect", "--mode", "episodes", "--habitat-scene", scene, "--pointnav", str(data), "--policy",
               "shortest-path", "--num-episodes", "2", "--seeds", "0", "--height", "32", "--out", str(tmp_path / "eps"),
               "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and "PointNav (2 episodes recorded now): success 1.000, SPL" in text, text
    tiny_model.save_pretrained(tmp_path / "enc")
    torch.manual_seed(0)
    LatentDynamics(DynamicsConfig(latent_dim=tiny_model.latent_dim, num_actions=3, context=3, width=16, depth=1,
                                  heads=2)).save_pretrained(tmp_path / "dyn")
    out = tmp_path / "imagined.gif"
    rc = main(["imagine", "--episodes", str(tmp_path / "eps"), "--episode", "1", "--dynamics", str(tmp_path / "dyn"),
               "--encoder", str(tmp_path / "enc"), "--out", str(out), "--horizon", "4"])
    assert rc == 0, capsys.readouterr().out
    assert iio.imread(out, index=None).shape[0] >= 4
