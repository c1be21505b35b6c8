"""``btnk-env demo``: the main job end to end on the built-in defaults.

Creates the built-in panorama world, wraps it with the shipped bottleneck-MAE encoder, runs a
policy for one episode, decodes every latent back to a panorama, and writes the
truth / decoded / error comparison video, a still of it, and a short report.

``btnk-env demo --imagine`` is the imagination mode (:func:`run_imagination_demo`): in a held-out
layout of the world the shipped dynamics model was trained in, the agent looks around for a few
context frames, the shortest path to the goal is planned, and the dynamics model imagines the views
along it open loop; the truth / imagined / error video, a still and a report (imagined PSNR beside
the copy-last baseline) are written.

``btnk-env demo --plan`` is the planning mode (:func:`run_planning_demo`): in a held-out layout, the latent
planner of ``btnk-env plan`` (CEM over the dynamics model's imagined latents, the shipped goal-distance head
as the cost) acts from observations only towards a view at the goal; the video of the executed views beside
the imagined plans, a still and a report (success, steps against the shortest path) are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from btnk_env.policies import SHIPPED_AGENT, ppo_policy, scripted_explorer

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "panorama-rooms-small"
DEFAULT_DYNAMICS = "panorama-rooms-small-dynamics"
#: Defaults of the two modes: ``(out, world, height, layout seed, video fps)``. The imagination mode runs
#: where the shipped dynamics model was trained (single rooms at 128x256) in a held-out layout.
MODE_DEFAULTS = {"episode": (Path("runs/demo"), "apartment", 256, 15, 8.0),
                 "imagine": (Path("runs/demo_imagine"), "single_room", 128, 1002, 4.0),
                 "plan": (Path("runs/demo_plan"), "single_room", 128, 1003, 4.0)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: runs/demo, with --imagine runs/demo_imagine, with --plan runs/demo_plan)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or path (anything BtnkMAE.from_pretrained loads)")
    parser.add_argument("--steps", type=int, default=None, help="maximum environment steps (default: 150, with --plan 60)")
    parser.add_argument("--height", type=int, default=None,
                        help="panorama height H of the world, width 2H (default: 256, with --imagine 128)")
    parser.add_argument("--seed", type=int, default=None, help="layout seed (default: 15, with --imagine 1002: a held-out layout with a 15-step path, with --plan 1003)")
    parser.add_argument("--world", default=None,
                        help="built-in world preset: apartment or single_room (default: apartment, with --imagine single_room)")
    parser.add_argument("--imagine", action="store_true",
                        help="imagination mode: the shipped dynamics model imagines the views along a planned path "
                             "to the goal (open loop, after a few real context frames)")
    parser.add_argument("--plan", action="store_true",
                        help="planning mode: the latent planner (btnk-env plan) acts towards a goal view in a "
                             "held-out single room, and the video shows the imagined plan at every step")
    parser.add_argument("--dynamics", default=DEFAULT_DYNAMICS,
                        help=f"dynamics model for --imagine and --plan (default: {DEFAULT_DYNAMICS}; it names its encoder)")
    parser.add_argument("--horizon", type=int, default=30, help="imagined steps at most, for --imagine (default: 30)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--precision", default="auto",
                        help="auto (bf16 where the CPU or GPU has bf16 matrix units, else fp32; the default), "
                             "fp32, bf16, fp16 (CUDA) or int8 (CPU)")
    parser.add_argument("--fps", type=float, default=None, help="video frame rate (default: 8, with --imagine 4)")
    parser.add_argument("--agent", default=None,
                        help="'shipped' (the PPO agent trained in --world single_room on the shipped model's "
                             "latents) or a stable-baselines3 PPO .zip trained on this model's latents "
                             "(examples/train_ppo_latents.py --save); default: the scripted explorer")


def load_demo_model(name: str):
    """The shipped model (or ``name``); a random ``tiny`` model with a warning if it is missing."""
    from btnk_env.models import BtnkMAE

    try:
        return BtnkMAE.from_pretrained(name), None
    except (FileNotFoundError, KeyError) as err:
        warning = (f"model {name!r} is not available ({err}); using an UNTRAINED tiny model, "
                   f"so the decoded frames are noise")
        logger.warning(warning)
        return BtnkMAE("tiny", img_size=(128, 256)).eval(), warning


def run_demo(out: Path, model_name: str = DEFAULT_MODEL, steps: int = 150, height: int = 256, seed: int = 15,
             world: str = "apartment", device: str = "auto", precision: str = "auto", fps: float = 8.0,
             agent: "Path | str | None" = None, progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the report (also written to ``out/report.json``)."""
    import gymnasium as gym
    from tqdm import tqdm

    import btnk_env  # noqa: F401  (registers the environments)
    from btnk_env.video import decode_rollout
    from btnk_env.video.io import check_video_path, write_video
    from btnk_env.video.layout import comparison_frames
    from btnk_env.wrappers import BtnkMAEObservation
    from btnk_env.models import resize_frames
    from btnk_env.models.device import resolve_device
    from btnk_env.models.metrics import psnr

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    from btnk_env.models.files import atomic_writer, atomic_write_bytes, atomic_write_text, check_replaceable_dir, claim_dir

    out = Path(out)
    check_replaceable_dir(out, "demo", "choose another --out folder", _earlier_demo)  # before any work
    video_path = check_video_path(out / "episode.mp4")
    model, warning = load_demo_model(model_name)
    model.to(resolve_device(device))  # the demo's own model: it may move it
    env = gym.make("btnk_env/PanoramaRooms-v0", height=height, world=world)
    wrapped = BtnkMAEObservation(env, model, keep_image=True, precision=precision)
    size = wrapped.input_size  # the wrapper's encoder input (the model's height, the frames' aspect)
    if agent is not None:
        agent = SHIPPED_AGENT if str(agent) == "shipped" else Path(agent)
        act, policy_name = ppo_policy(agent, model.latent_dim), f"PPO agent on latents ({agent.name})"
    else:
        explore = scripted_explorer(seed)
        act = lambda info, latent: explore(info)  # noqa: E731
        policy_name = "scripted explorer (steers to the goal from the pose in info)"

    frames, latents, rewards = [], [], []
    obs, info = wrapped.reset(seed=seed)
    start = time.perf_counter()
    success = False
    bar = tqdm(total=steps, desc="episode", unit="step", disable=not progress)
    for _ in range(steps):
        frames.append(obs["image"])
        latents.append(obs["latent"])
        obs, reward, terminated, truncated, info = wrapped.step(act(info, obs["latent"]))
        rewards.append(float(reward))
        bar.update(1)
        if terminated or truncated:
            success = bool(info.get("success"))
            frames.append(obs["image"])
            latents.append(obs["latent"])
            break
    bar.close()
    episode_seconds = time.perf_counter() - start
    wrapped.close()

    latents_np = np.stack(latents).astype(np.float32)  # (T, D)
    start = time.perf_counter()
    decoded = decode_rollout(model, latents_np, size=size, precision=wrapped.encoder.precision)[0]  # (T, h, w, 3)
    decode_seconds = time.perf_counter() - start
    truth = resize_frames(np.stack(frames), size)  # (T, h, w, 3), what the encoder saw
    frame_psnr = psnr(truth, decoded)  # (T,)

    claim_dir(out, "demo", "choose another --out folder", _earlier_demo)
    video = comparison_frames(decoded, truth, context=len(decoded), psnr_caption=True)
    write_video(video_path, video, fps=fps)
    still = out / "still.png"
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(video[len(video) // 2]).save(png, format="PNG")
    atomic_write_bytes(still, png.getvalue())
    with atomic_writer(out / "latents.npy") as f:
        np.save(f, latents_np)

    report = {
        "model": model_name if warning is None else "untrained tiny (fallback)",
        "warning": warning,
        "policy": policy_name,
        "world": f"btnk_env/PanoramaRooms-v0, {world}, layout seed {seed}, {height}x{2 * height} panoramas",
        "model_input": f"{size[0]}x{size[1]}",
        "steps": len(rewards),
        "episode_return": round(sum(rewards), 3),
        "success": success,
        "latent_dim": model.latent_dim,
        "precision": wrapped.encoder.precision,  # what "auto" chose on this machine
        "env_steps_per_s": round(len(rewards) / episode_seconds, 1),
        "decoded_frames_per_s": round(len(decoded) / decode_seconds, 1),
        "psnr_db_mean": round(float(np.mean(frame_psnr)), 2),
        "psnr_db_min": round(float(np.min(frame_psnr)), 2),
        "files": {"video": str(video_path), "still": str(still), "latents": str(out / "latents.npy"),
                  "report": str(out / "report.json")},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _output_paths(out, kind: str, video: str):
    """``(out folder, video path)``, checked: a folder this demo mode may write into (``kind``: its
    ownership marker) and a video path the writer takes."""
    from btnk_env.video.io import check_video_path
    from btnk_env.models.files import check_replaceable_dir

    out = Path(out)
    check_replaceable_dir(out, kind, "choose another --out folder")
    return out, check_video_path(out / video)


def run_imagination_demo(out: Path, dynamics: str = DEFAULT_DYNAMICS, world: str = "single_room", height: int = 128,
                         seed: int = 1002, horizon: int = 30, fps: float = 4.0) -> dict[str, Any]:
    """The imagination mode: imagine the views along a planned path; returns the report (also
    written to ``out/report.json``).

    The dynamics model and its encoder are loaded and checked against the world (latent width,
    action count, encoder weights) before anything is rendered. Quality figures compare the
    imagined frames and the copy-last baseline (the last context frame's latent decoded at every
    step) with the frames the world renders along the same actions.
    """
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
    from btnk_env.imagine import imagine_video, load_pair, planned_rollout, psnr_beside_copy_last
    from btnk_env.video.io import write_video
    from btnk_env.models.files import atomic_write_bytes, atomic_write_text, claim_dir

    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    out, video_path = _output_paths(out, "demo-imagine", "imagined.mp4")  # before any work
    env = PanoramaRoomsEnv(height=height, world=world)
    try:
        dyn, encoder = load_pair(dynamics, None, int(env.action_space.n))
        k = dyn.config.context
        start = time.perf_counter()
        frames, actions, planned = planned_rollout(env, seed, k, horizon)  # (T, H, W, 3), (T - 1,)
    finally:
        env.close()
    video, decoded, truth = imagine_video(dyn, encoder, frames, actions)  # decoded: (T, h, w, 3), context then imagined
    seconds = time.perf_counter() - start
    imagined, copy_last = psnr_beside_copy_last(truth, decoded, k)  # (T - K,) each

    claim_dir(out, "demo-imagine", "choose another --out folder")
    write_video(video_path, video, fps=fps)
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(video[min(len(video) - 1, k + 9)]).save(png, format="PNG")  # 10 steps into imagination
    still = out / "still.png"
    atomic_write_bytes(still, png.getvalue())
    at = {h: (round(float(imagined[h - 1]), 2), round(float(copy_last[h - 1]), 2))
          for h in (1, 5, 10, 20, 30) if h <= len(imagined)}
    report = {
        "dynamics": dynamics,
        "encoder": dyn.config.encoder,
        "world": f"btnk_env/PanoramaRooms-v0, {world}, layout seed {seed}, {height}x{2 * height} panoramas",
        "context_frames": k,
        "planned_actions": planned,
        "imagined_steps": len(imagined),
        "imagined_psnr_db_mean": round(float(np.mean(imagined)), 2),
        "copy_last_psnr_db_mean": round(float(np.mean(copy_last)), 2),
        "psnr_db_at_step": {str(h): {"imagined": a, "copy_last": b} for h, (a, b) in at.items()},
        "seconds": round(seconds, 1),
        "files": {"video": str(video_path), "still": str(still), "report": str(out / "report.json")},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def run_planning_demo(out: Path, dynamics: str = DEFAULT_DYNAMICS, world: str = "single_room", height: int = 128,
                      seed: int = 1003, max_steps: int = 60, fps: float = 4.0) -> dict[str, Any]:
    """The planning mode: the latent planner acts in layout ``seed`` towards the evaluation's goal view
    (:func:`btnk_env.planning.evaluate.goal_frame`); returns the report (also written to ``out/report.json``).

    The encoder, dynamics model and goal-distance head are loaded and checked against each other and the
    world before anything is rendered (:func:`btnk_env.planning.load.load_models`).
    """
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
    from btnk_env.imagine import plan_to_goal
    from btnk_env.planning.evaluate import goal_frame
    from btnk_env.planning.load import DEFAULT_HEAD, load_models
    from btnk_env.planning.policy import PLANNER_DEFAULTS, make_planner
    from btnk_env.planning.video import plan_video
    from btnk_env.video.io import write_video
    from btnk_env.models.files import atomic_write_text, claim_dir
    from btnk_env.models.image_file import save_png

    if max_steps < 1:
        raise ValueError(f"steps must be >= 1, got {max_steps}")
    out, video_path = _output_paths(out, "demo-plan", "planned.mp4")  # before any work
    env = PanoramaRoomsEnv(height=height, world=world)
    try:
        dyn, head, encoder = load_models(dynamics, DEFAULT_HEAD, None, int(env.action_space.n))
        start = time.perf_counter()
        _, info = env.reset(seed=seed)
        shortest = len(plan_to_goal(env))
        video, steps, success = plan_video(env, make_planner(dyn, head, dyn), encoder, seed,
                                           goal_frame(env, info, seed), max_steps)
        seconds = time.perf_counter() - start
    finally:
        env.close()
    claim_dir(out, "demo-plan", "choose another --out folder")
    write_video(video_path, video, fps=fps)
    still = save_png(out / "still.png", video[len(video) // 2])
    report = {
        "dynamics": dynamics,
        "goal_distance_head": DEFAULT_HEAD,
        "encoder": dyn.config.encoder,
        "world": f"btnk_env/PanoramaRooms-v0, {world}, layout seed {seed}, {height}x{2 * height} panoramas",
        "planner": dict(PLANNER_DEFAULTS),
        "success": success,
        "steps": steps,
        "shortest_path": shortest,
        "seconds": round(seconds, 1),
        "files": {"video": str(video_path), "still": str(still), "report": str(out / "report.json")},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _earlier_demo(folder: Path) -> bool:
    """An unmarked folder an earlier version of the demo wrote: its four files only."""
    return {p.name for p in folder.iterdir()} <= {"episode.mp4", "still.png", "latents.npy", "report.json"}


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.imagine and args.plan:
        print("btnk-env demo: give --imagine or --plan, not both")
        return 2
    mode = "imagine" if args.imagine else "plan" if args.plan else "episode"
    out, world, height, seed, fps = (given if given is not None else default for given, default in
                                     zip((args.out, args.world, args.height, args.seed, args.fps), MODE_DEFAULTS[mode]))
    if args.plan:
        report = run_planning_demo(out, args.dynamics, world, height, seed, 60 if args.steps is None else args.steps, fps)
        print()
        print("btnk-env demo --plan: the agent plans in its world model and acts towards a goal view")
        for key in ("dynamics", "goal_distance_head", "world", "planner", "success", "steps", "shortest_path", "seconds"):
            print(f"  {key:<20} {report[key]}")
    elif args.imagine:
        report = run_imagination_demo(out, args.dynamics, world, height, seed, args.horizon, fps)
        print()
        print("btnk-env demo --imagine: a world model imagines the views along a planned path")
        for key in ("dynamics", "encoder", "world", "context_frames", "planned_actions", "imagined_steps",
                    "imagined_psnr_db_mean", "copy_last_psnr_db_mean", "seconds"):
            print(f"  {key:<24} {report[key]}")
        for step, row in report["psnr_db_at_step"].items():
            print(f"  PSNR at step {step:<11} imagined {row['imagined']} dB, copy-last {row['copy_last']} dB")
    else:
        report = run_demo(out, args.model, 150 if args.steps is None else args.steps, height, seed, world, args.device,
                          args.precision, fps, args.agent)
        print()
        print("btnk-env demo: the built-in panorama world, seen through the bottleneck MAE")
        for key in ("model", "policy", "world", "model_input", "steps", "episode_return", "success", "latent_dim",
                    "env_steps_per_s", "decoded_frames_per_s", "psnr_db_mean", "psnr_db_min"):
            print(f"  {key:<22} {report[key]}")
        if report["warning"]:
            print(f"  WARNING: {report['warning']}")
    print("files:")
    for key, path in report["files"].items():
        print(f"  {key:<8} {path}")
    return 0
