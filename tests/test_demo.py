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
    from btnk_env.models import BtnkMAE

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


def test_imagination_demo_writes_the_video_and_beats_copy_last(tmp_path, capsys):
    """``btnk-env demo --imagine``: the shipped dynamics model imagines a planned path in a held-out
    layout; the video has the context and imagined frames, and imagination beats copying the last latent."""
    from btnk_env.cli import main

    out = tmp_path / "imagine"
    assert main(["demo", "--imagine", "--out", str(out), "--horizon", "10"]) == 0
    assert "imagined_psnr_db_mean" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["world"].startswith("btnk_env/PanoramaRooms-v0, single_room, layout seed 1002")
    assert report["planned_actions"] == 15 and report["imagined_steps"] == 10
    video = iio.imread(out / "imagined.mp4", index=None)
    assert video.shape[0] == report["context_frames"] + 10
    assert report["imagined_psnr_db_mean"] > report["copy_last_psnr_db_mean"] + 1.0
    assert report["psnr_db_at_step"]["5"]["imagined"] > report["psnr_db_at_step"]["5"]["copy_last"]


def test_imagination_demo_never_writes_into_a_users_folder(tmp_path):
    from btnk_env.demo import run_imagination_demo
    from btnk_env.models.files import NotOursError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NotOursError, match="choose another --out folder"):
        run_imagination_demo(out, horizon=3)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_planning_demo_writes_the_video_and_a_report(tmp_path, capsys):
    """``btnk-env demo --plan``: the shipped planner acts in a held-out layout; one video frame per step."""
    from btnk_env.cli import main

    out = tmp_path / "plan"
    assert main(["demo", "--plan", "--out", str(out), "--steps", "3"]) == 0
    assert "shortest_path" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["world"].startswith("btnk_env/PanoramaRooms-v0, single_room, layout seed 1003")
    assert 1 <= report["steps"] <= 3 and report["shortest_path"] > 3 and report["success"] is False
    assert iio.imread(out / "planned.mp4", index=None).shape[0] == report["steps"]
    assert (out / "still.png").is_file()


def test_demo_refuses_imagine_and_plan_together(tmp_path, capsys):
    from btnk_env.cli import main

    assert main(["demo", "--imagine", "--plan", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().out and not (tmp_path / "x").exists()
