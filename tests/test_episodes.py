"""Episode recording: replay, resume after a crash, policies, bad input, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from btnk_env.cli import main as cli_main
from btnk_env.formats.episodes import EpisodeFolder, EpisodeFolderWriter
from btnk_env.collection.episodes import episode_seeds, record_episodes
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv


@pytest.fixture(scope="module")
def env():
    e = PanoramaRoomsEnv(height=32, world="single_room")
    yield e
    e.close()


def test_recorded_episodes_replay_from_seed_and_actions(env, tmp_path):
    record_episodes(env, tmp_path / "eps", 3, policy="random", seeds="4", max_steps=12, progress=False)
    data = EpisodeFolder(tmp_path / "eps")
    assert len(data) == 3 and [r["seed"] for r in data.episodes] == [4, 5, 6]
    assert data.config["image_size"] == [32, 64] and data.config["action_space"] == "Discrete(3)"
    fresh = PanoramaRoomsEnv(height=32, world="single_room")  # another environment object replays them
    try:
        for i in range(3):
            ep = data.load(i)
            t_end = ep.num_steps
            assert ep.frames.shape == (t_end + 1, 32, 64, 3) and ep.positions.shape == (t_end + 1, 3)
            assert ep.terminated[-1] or ep.truncated[-1]
            assert not (ep.terminated[:-1].any() or ep.truncated[:-1].any())
            assert t_end == 12 or ep.terminated[-1]  # truncated exactly at max_steps, unless it succeeded first
            obs, info = fresh.reset(seed=ep.seed)
            assert np.array_equal(obs, ep.frames[0])
            assert np.allclose(info["goal_position"], ep.goal) and np.allclose(info["position"], ep.positions[0])
            for t, action in enumerate(ep.actions):
                obs, reward, terminated, _, info = fresh.step(int(action))
                assert np.array_equal(obs, ep.frames[t + 1])
                assert reward == pytest.approx(float(ep.rewards[t]), abs=1e-6) and terminated == ep.terminated[t]
                assert np.allclose(info["position"], ep.positions[t + 1]) and info["heading"] == pytest.approx(ep.headings[t + 1])
            assert len(set(ep.actions.tolist())) > 1  # the random policy really varies
    finally:
        fresh.close()


def test_killed_recording_resumes_at_the_last_complete_episode(env, tmp_path):
    full = tmp_path / "full"
    record_episodes(env, full, 4, policy="explorer", seeds=[2], max_steps=10, progress=False)

    part = tmp_path / "part"

    def crash(index, episode):
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record_episodes(env, part, 4, policy="explorer", seeds=[2], max_steps=10, progress=False, callback=crash)
    # a crash in the middle of writing episode 2: its temp folder is left behind
    (part / "episodes" / ".000002.tmp").mkdir()
    (part / "episodes" / ".000002.tmp" / "000000.png").write_bytes(b"partial")
    assert len(EpisodeFolder(part)) == 2
    record_episodes(env, part, 4, policy="explorer", seeds=[2], max_steps=10, progress=False)
    a, b = EpisodeFolder(full), EpisodeFolder(part)
    assert a.episodes == b.episodes
    for i in range(4):
        ea, eb = a.load(i), b.load(i)
        assert np.array_equal(ea.frames, eb.frames) and np.array_equal(ea.actions, eb.actions)
    assert sorted(p.name for p in (part / "episodes").iterdir()) == [f"{i:06d}" for i in range(4)]
    with pytest.raises(ValueError, match="different settings"):
        record_episodes(env, part, 5, policy="random", seeds=[2], max_steps=10, progress=False)


def test_bad_policies_and_empty_datasets_are_refused(env, tmp_path, tiny_model):
    import gymnasium as gym
    from gymnasium import spaces
    from stable_baselines3 import PPO

    class Four(gym.Env):  # an agent's world with four actions
        observation_space = spaces.Box(-np.inf, np.inf, (tiny_model.latent_dim,), np.float32)
        action_space = spaces.Discrete(4)

        def reset(self, *, seed=None, options=None):
            return np.zeros(tiny_model.latent_dim, np.float32), {}

        def step(self, action):
            return np.zeros(tiny_model.latent_dim, np.float32), 0.0, True, False, {}

    agent = PPO("MlpPolicy", Four(), n_steps=8, batch_size=8, device="cpu")
    agent.save(tmp_path / "four.zip")
    with pytest.raises(ValueError, match=r"acts in Discrete\(4\) but the world's actions are Discrete\(3\)"):
        record_episodes(env, tmp_path / "x", 1, policy=str(tmp_path / "four.zip"), policy_model=tiny_model, progress=False)
    with pytest.raises(ValueError, match="acts on observations of shape"):
        record_episodes(env, tmp_path / "x", 1, policy="shipped", policy_model=tiny_model, progress=False)
    with pytest.raises(FileNotFoundError, match="nor an agent file"):
        record_episodes(env, tmp_path / "x", 1, policy="nope.zip", progress=False)
    EpisodeFolderWriter(tmp_path / "empty", (32, 64), "Discrete(3)", {}).close()
    with pytest.raises(ValueError, match="holds no complete episodes"):
        EpisodeFolder(tmp_path / "empty")


def test_shipped_agent_records_through_its_encoder(env, tmp_path):
    record_episodes(env, tmp_path / "ppo", 1, policy="shipped", seeds=[0], max_steps=6, device="cpu", progress=False)
    (rec,) = EpisodeFolder(tmp_path / "ppo").episodes
    assert rec["policy"] == "agent:ppo_latents.zip" and 1 <= rec["num_steps"] <= 6


def test_cli_records_episodes(tmp_path, capsys):
    status = cli_main(["collect", "--mode", "episodes", "--out", str(tmp_path / "eps"), "--num-episodes", "2",
                       "--policy", "explorer", "--height", "32", "--world", "single_room", "--max-steps", "5",
                       "--seeds", "7", "--no-progress"])
    assert status == 0 and "2 episodes" in capsys.readouterr().out
    assert [r["seed"] for r in EpisodeFolder(tmp_path / "eps").episodes] == [7, 8]
    assert cli_main(["collect", "--mode", "episodes", "--out", str(tmp_path / "e2"), "--height", "32"]) == 2


def test_episode_seeds_continue_from_the_last():
    assert episode_seeds([3], 4) == [3, 4, 5, 6]
    assert episode_seeds([9, 1, 5], 2) == [9, 1]


@pytest.mark.habitat
def test_records_habitat_episodes(monkeypatch, tmp_path):
    """The same recorder drives HabitatPanoramaEnv (against the habitat_sim stand-in of test_habitat_env)."""
    import sys

    from tests.test_habitat_env import VERSIONS, _env, _fake_habitat_sim

    for name, module in _fake_habitat_sim(VERSIONS[-1]).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("HSIM_DISABLE_CUDA_DEVICE", "1")
    env = _env()
    try:
        record_episodes(env, tmp_path / "hab", 2, policy="random", seeds=[3], max_steps=4, progress=False)
    finally:
        env.close()
    data = EpisodeFolder(tmp_path / "hab")
    assert [r["scene"] for r in data.episodes] == ["apt_0", "apt_0"] and data.config["image_size"] == [16, 32]
    ep = data.load(1)
    assert ep.frames.shape[1:] == (16, 32, 3) and ep.positions.shape == (ep.num_steps + 1, 3) and ep.seed == 4
