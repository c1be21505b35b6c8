"""The demo of the main job: world + shipped encoder + policy -> comparison video and report."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest

from btnk_env.demo import run_demo


def test_demo_writes_video_still_latents_and_report(tmp_path):
    report = run_demo(tmp_path / "demo", steps=12, height=64, seed=15, progress=False)
    assert report["model"] == "panorama-rooms-small" and report["warning"] is None
    assert report["latent_dim"] == 192 and report["model_input"] == "128x256"
    n_frames = report["steps"] + int(report["success"])
    video = iio.imread(report["files"]["video"], index=None)
    assert video.shape[0] == n_frames and video.ndim == 4
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["steps"] == report["steps"]
    assert 10 < report["psnr_db_mean"] < 60  # a trained model, not noise (an untrained one gives ~9 dB)


def test_demo_runs_a_saved_ppo_agent(tmp_path):
    import gymnasium as gym
    from stable_baselines3 import PPO

    import btnk_env  # noqa: F401
    from btnk_env import BtnkMAEObservation
    from models import BtnkMAE

    env = BtnkMAEObservation(gym.make("btnk_env/PanoramaRooms-v0", height=64), BtnkMAE.from_pretrained("panorama-rooms-small"))
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    agent.learn(16)
    agent.save(tmp_path / "agent.zip")
    report = run_demo(tmp_path / "demo", steps=5, height=64, agent=tmp_path / "agent.zip", progress=False)
    assert report["policy"].startswith("PPO agent") and report["steps"] >= 1


def test_demo_rejects_a_missing_agent_before_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="train one with"):
        run_demo(tmp_path / "demo", steps=5, height=64, agent=tmp_path / "nope.zip", progress=False)
    assert not (tmp_path / "demo").exists()


def test_demo_with_the_shipped_ppo_agent_reaches_goals(tmp_path):
    """The shipped agent acts on the shipped model's latents; over a few single-room layouts it
    reaches the goal more often than a random policy does (33% in examples/train_ppo_latents.py)."""
    reports = [run_demo(tmp_path / f"demo{seed}", steps=60, height=128, seed=seed, world="single_room",
                        agent="shipped", progress=False) for seed in range(100_000, 100_006)]
    assert all(r["policy"] == "PPO agent on latents (ppo_latents.zip)" for r in reports)
    assert sum(r["success"] for r in reports) >= 3
