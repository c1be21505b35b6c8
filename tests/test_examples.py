"""The example scripts run end to end on small settings and write what they promise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_rollout_video_imagines_with_the_shipped_dynamics_model(tmp_path):
    out, still = tmp_path / "rollout.mp4", tmp_path / "still.png"
    text = run_example("rollout_video.py", "--sequences", "4", "--steps", "12", "--out", str(out), "--still", str(still))
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 12 and frames.ndim == 4
    picture = np.asarray(Image.open(still))
    assert picture.ndim == 3 and picture.std() > 10  # a real picture, not a blank canvas
    imagined, copy_last = map(float, re.search(r"imagined PSNR ([\d.]+) dB, copy-last baseline ([\d.]+) dB", text).groups())
    assert imagined > copy_last  # the trained model, not a copy of the last frame
    assert "8 imagined steps after 4 context frames" in text


def test_train_ppo_latents_trains_evaluates_and_saves(tmp_path):
    run_example("train_ppo_latents.py", "--task", "rooms", "--model", "panorama-rooms-small", "--timesteps", "256",
                "--n-envs", "2", "--eval-episodes", "2", "--max-steps", "30", "--save", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"random", "before", "after"} <= results.keys()
    assert results["args"]["timesteps"] == 256
    for name in ("random", "before", "after"):  # 2 evaluation episodes of at most 30 steps each
        r = results[name]
        assert r["success_rate"] in (0.0, 0.5, 1.0), r  # a fraction of 2 episodes, not any float
        assert 1 <= r["mean_length"] <= 30 and np.isfinite(r["mean_return"]), r
    assert (tmp_path / "ppo_latents.zip").stat().st_size > 0
    again = tmp_path / "again"  # --load --timesteps 0: the saved agent, only evaluated
    run_example("train_ppo_latents.py", "--task", "rooms", "--model", "panorama-rooms-small", "--timesteps", "0",
                "--n-envs", "1", "--eval-episodes", "2", "--max-steps", "30", "--load", str(tmp_path / "ppo_latents.zip"),
                "--save", str(again))
    rerun = json.loads((again / "results.json").read_text())
    assert rerun["before"] == rerun["after"] and rerun["args"]["load"].endswith("ppo_latents.zip")


def test_heldout_reconstructions_draws_truth_beside_reconstruction(tmp_path):
    from btnk_env.collection import collect_panoramas

    data = collect_panoramas("btnk_env/PanoramaRooms-v0", tmp_path / "data", num_frames=3, seeds=[1000],
                             height=128, frames_per_scene=3, progress=False)
    out = tmp_path / "heldout.png"
    stdout = run_example("heldout_reconstructions.py", "--data", str(data), "--count", "3", "--stride", "1", "--out", str(out))
    assert "mean PSNR" in stdout
    w, h = Image.open(out).size
    assert w == 2 * 256 + 4 and h == 3 * (128 + 16) + 2 * 4  # three rows of truth | reconstruction


def test_learning_curve_evaluates_each_checkpoint_once_and_plots(tmp_path):
    from btnk_env.collection import collect_panoramas
    from btnk_env.training.config import load_config
    from btnk_env.training.trainer import train

    run = tmp_path / "run"
    train(load_config(overrides=[
        "data.kind=render", "data.path=0-3", "data.max_images=8", "model.preset=test", "model.img_size=[32,64]",
        "train.batch_size=4", "train.epochs=1", f"io.out_dir={run}", "io.snapshot_every=null",
    ]))
    data = collect_panoramas("btnk_env/PanoramaRooms-v0", tmp_path / "data", num_frames=2, seeds=[1000],
                             height=32, frames_per_scene=2, progress=False)
    args = ["--run", str(run), "--data", str(data), "--baseline", str(run / "final"), "--plot", str(tmp_path / "c.png")]
    stdout = run_example("learning_curve.py", *args)
    curve = json.loads((run / "learning_curve.json").read_text())
    assert list(curve["points"]) == ["0", "2"] and stdout.count("PSNR") == 2  # checkpoint-latest and -epoch0001: one step
    assert all(5 < p["psnr"] < 60 and p["images"] == 2 for p in curve["points"].values())
    assert Image.open(tmp_path / "c.png").size == (920, 300)
    assert "PSNR" not in run_example("learning_curve.py", *args)  # nothing new: nothing evaluated again
