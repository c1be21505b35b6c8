"""``btnk-env imagine``: watch what the latent dynamics model imagines.

From ``K`` real context frames, the dynamics model (:class:`btnk_env.models.dynamics.LatentDynamics`) imagines open
loop, the encoder's decoder renders every imagined latent (:func:`btnk_env.video.decode_rollout`), and a
truth / imagined / error video is written (:func:`btnk_env.video.comparison_frames`: context frames
framed green, imagined ones red). Two sources of actions:

- ``--episodes FOLDER --episode i``: a recorded episode (``btnk-env collect --mode episodes``), imagined
  under its recorded actions;
- ``--plan``: the built-in world (``--world``, ``--seed`` = layout): after ``K - 1`` left turns of
  context, the shortest action sequence to the goal is planned over the world's free space
  (:func:`plan_to_goal`, breadth-first over (position, heading) with the world's own collision check),
  imagined, and also executed in the world for the truth row (REMI's use: see the views along a plan);
  ``--plan --planner latent``: the latent planner (:mod:`btnk_env.planning`: CEM over imagined latents,
  the goal-distance head ``--head`` as the cost) chooses the actions instead, replanning at every step
  towards the view at the goal, and the dynamics model imagines the whole executed path open loop.

The dynamics model's latent width must equal the encoder's and its action count the world's (checked
before any work); a different encoder sha256 than it was trained on is refused as well.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import deque
from typing import List, Optional, Tuple

import numpy as np
import torch


def plan_to_goal(env, max_states: int = 200_000) -> List[int]:
    """Shortest action sequence from the agent's pose to within the goal radius in a built-in world.

    States are (position, heading) reachable with the world's own actions: a ``move_forward`` is kept
    only if the disc of the agent's radius is free at the target (``layout.is_free``), so executing the
    plan in the world moves exactly as planned (no sliding). Breadth-first search: every action costs 1.

    Args:
        env: a reset :class:`btnk_env.envs.panorama_rooms.PanoramaRoomsEnv` (unwrapped or wrapped).

    Returns:
        The actions (0 forward, 1 left, 2 right); empty if the agent is already at the goal.

    Raises:
        ValueError: no path within ``max_states`` states.
    """
    u = env.unwrapped
    n_head = int(round(2 * math.pi / u.turn))
    pos, heading = u.get_pose()
    start = (float(pos[0]), float(pos[2]))
    goal, radius, layout = u._goal, u.goal_radius, u.layout
    h0 = heading

    def key(p, h):
        return (round(p[0] / 1e-3), round(p[1] / 1e-3), h % n_head)

    def at_goal(p):
        return math.hypot(p[0] - goal[0], p[1] - goal[1]) < radius

    if at_goal(start):
        return []
    parents = {key(start, 0): None}
    queue = deque([(start, 0)])
    while queue:
        p, h = queue.popleft()
        for action in (0, 1, 2):
            if action == 0:
                ang = h0 + h * u.turn
                q = (p[0] - u.forward_step * math.sin(ang), p[1] - u.forward_step * math.cos(ang))
                if not layout.is_free(q[0], q[1], u.agent_radius):
                    continue
                nh = h
            else:
                q, nh = p, (h + (1 if action == 1 else -1)) % n_head
            k = key(q, nh)
            if k in parents:
                continue
            parents[k] = (key(p, h), action)
            if action == 0 and at_goal(q):
                actions = []
                while parents[k] is not None:
                    k, a = parents[k]
                    actions.append(a)
                return actions[::-1]
            if len(parents) > max_states:
                raise ValueError(f"no path to the goal within {max_states} states")
            queue.append((q, nh))
    raise ValueError("the goal cannot be reached from the agent's position")


def planned_rollout(env, seed: int, context: int, horizon: int) -> Tuple[np.ndarray, np.ndarray, int]:
    """True frames of a planned path to the goal in a built-in world, with ``context`` frames before it.

    The agent is reset to layout ``seed`` and turns left ``context - 1`` times (the context frames: the
    model sees the room around it), then follows the first ``horizon`` actions of :func:`plan_to_goal`.

    Returns:
        ``(frames (T, H, W, 3) uint8, actions (T - 1,) int64, planned)``: ``T = context + min(horizon,
        planned)``, ``planned`` the length of the whole plan to the goal.
    """
    frames = [env.reset(seed=seed)[0]]
    actions = [1] * (context - 1)
    for a in actions:
        frames.append(env.step(a)[0])
    full = plan_to_goal(env)
    for a in full[:horizon]:
        frames.append(env.step(a)[0])
    actions += full[:horizon]
    return np.stack(frames), np.asarray(actions, dtype=np.int64), len(full)


def encode_frames(encoder, frames: np.ndarray) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, D)`` float32 CPU latents, with the wrappers' conversion (as ``btnk-env encode``)."""
    from btnk_env.wrappers.frames import target_size
    from btnk_env.models import frames_to_tensor

    x = frames_to_tensor(frames, size=target_size(frames.shape[1:3], encoder))
    with torch.no_grad():
        return encoder.encode(x.to(encoder.device)).float().cpu()


def load_pair(dynamics: str, encoder_name: Optional[str], num_actions: int):
    """The dynamics model and its encoder, checked: latent width, action count, encoder weights."""
    from btnk_env.models import BtnkMAE
    from btnk_env.models.dynamics import LatentDynamics
    from btnk_env.models.identity import model_sha256

    dyn = LatentDynamics.from_pretrained(dynamics)
    encoder = BtnkMAE.from_pretrained(encoder_name or dyn.config.encoder or "panorama-rooms-small").eval()
    dyn.check_compatible(encoder.latent_dim, num_actions)
    dyn.check_compatible(encoder.latent_dim, num_actions, model_sha256(encoder))
    return dyn, encoder


def imagine_video(dyn, encoder, frames: np.ndarray, actions: np.ndarray,
                  context: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Imagine after the first ``K`` of ``frames`` under ``actions`` and lay out the comparison video.

    Args:
        frames: ``(T, H, W, 3)`` uint8 true frames; ``actions``: ``(T - 1,)`` the actions between them.

    Returns:
        ``(video (T, H', W', 3), decoded (T, h, w, 3), truth (T, h, w, 3))``, uint8: the comparison video,
        the context frames decoded then the imagined ones, and ``frames`` at the decoded size.
    """
    from btnk_env.video import decode_rollout
    from btnk_env.video.layout import comparison_frames
    from btnk_env.models import resize_frames

    k = dyn.config.context if context is None else context
    if len(frames) < k + 1 or len(actions) != len(frames) - 1:
        raise ValueError(f"need at least {k + 1} frames and one action between each two, got {len(frames)} frames "
                         f"and {len(actions)} actions")
    z = encode_frames(encoder, frames[:k])  # (K, D)
    a = torch.as_tensor(np.asarray(actions), dtype=torch.long)[None]  # (1, T-1)
    with torch.no_grad():
        imagined = dyn.rollout(z[None], a[:, :k - 1], a[:, k - 1:])[0]  # (T-K, D)
    decoded = decode_rollout(encoder, torch.cat([z, imagined]))[0]  # (T, h, w, 3)
    truth = resize_frames(frames, decoded.shape[1:3])  # (T, h, w, 3), as the encoder saw them
    return comparison_frames(decoded, truth, context=k, columns=1), decoded, truth


def psnr_beside_copy_last(truth: np.ndarray, decoded: np.ndarray, context: int) -> Tuple[np.ndarray, np.ndarray]:
    """PSNR of the imagined frames and of the copy-last baseline (the last context frame held).

    Args:
        truth, decoded: ``(..., T, h, w, 3)`` uint8 of one shape; ``decoded`` holds ``context`` decoded
            context frames, then the imagined ones.

    Returns:
        ``(imagined, copy_last)``: ``(..., T - K)`` dB each.
    """
    from btnk_env.models.metrics import psnr

    k = context
    held = np.repeat(decoded[..., k - 1:k, :, :, :], truth.shape[-4] - k, axis=-4)  # (..., T - K, h, w, 3)
    return psnr(truth[..., k:, :, :, :], decoded[..., k:, :, :, :]), psnr(truth[..., k:, :, :, :], held)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from btnk_env.collection.seeds import seed_arg

    parser.add_argument("--out", required=True, help="video path (.mp4, .gif, or a folder of PNGs)")
    parser.add_argument("--dynamics", default="panorama-rooms-small-dynamics", help="dynamics model folder or bundled name")
    parser.add_argument("--encoder", default=None, help="the encoder (default: the one the dynamics model names)")
    parser.add_argument("--episodes", default=None, help="a recorded episode folder or shard set (btnk-env collect --mode episodes)")
    parser.add_argument("--episode", type=int, default=0, help="which episode of --episodes")
    parser.add_argument("--plan", action="store_true", help="plan the shortest path to the goal in the built-in world")
    parser.add_argument("--world", default="single_room", help="built-in world for --plan: single_room or apartment")
    parser.add_argument("--seed", type=seed_arg, default=1000, help="layout seed for --plan")
    parser.add_argument("--height", type=int, default=128, help="panorama height of the built-in world for --plan")
    parser.add_argument("--planner", choices=("bfs", "latent"), default="bfs",
                        help="who plans for --plan: bfs (the world's free space, shortest path) or latent "
                             "(the latent planner of btnk-env plan, from observations only)")
    parser.add_argument("--head", default=None, help="goal-distance head of --planner latent (default: the shipped one)")
    parser.add_argument("--horizon", type=int, default=30, help="imagined steps at most")
    parser.add_argument("--fps", type=float, default=4)


def run(args: argparse.Namespace) -> int:
    from btnk_env.video.io import check_video_path, write_video

    if bool(args.episodes) == bool(args.plan):
        print("btnk-env imagine: give either --episodes FOLDER (recorded actions) or --plan (built-in world)")
        return 2
    # input errors (a bad folder, model or episode) become one line via btnk_env.models.errors.run_cli
    if args.head and not (args.plan and args.planner == "latent"):
        print("btnk-env imagine: --head is the cost of --plan --planner latent")
        return 2
    check_video_path(args.out)
    if args.episodes:
        from btnk_env.formats.episode_shards import open_episodes

        folder = open_episodes(args.episodes)
        if not 0 <= args.episode < len(folder):
            raise ValueError(f"--episode {args.episode}: the folder has {len(folder)} episodes")
        ep = folder.load(args.episode)
        m = re.fullmatch(r"Discrete\((\d+)\)", str(folder.config.get("action_space", "")))
        num_actions = int(m.group(1)) if m else 3
        stop = (folder.config.get("collection") or {}).get("stop_action")
        last = len(ep.frames)
        if stop is not None:  # PointNav: STOP (the last action) moves nothing; the world has the others
            num_actions = int(stop)
            last = 1 + next((t for t, a in enumerate(ep.actions) if a == stop), len(ep.actions))
        dyn, encoder = load_pair(args.dynamics, args.encoder, num_actions)
        k = dyn.config.context
        n = min(last, k + args.horizon)
        frames, actions = ep.frames[:n], np.asarray(ep.actions[:n - 1])
    else:
        from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

        env = PanoramaRoomsEnv(height=args.height, world=args.world)
        try:
            if args.planner == "latent":
                from btnk_env.planning.load import DEFAULT_HEAD, load_models
                from btnk_env.planning.policy import make_planner, planner_rollout

                dyn, head, encoder = load_models(args.dynamics, args.head or DEFAULT_HEAD, args.encoder,
                                                 int(env.action_space.n))
                k = dyn.config.context
                frames, actions, success = planner_rollout(env, make_planner(dyn, head, dyn), encoder, args.seed,
                                                           k, args.horizon)
                said = f"the latent planner {'reached' if success else 'did not reach'} the goal"
            else:
                dyn, encoder = load_pair(args.dynamics, args.encoder, int(env.action_space.n))
                k = dyn.config.context
                frames, actions, planned = planned_rollout(env, args.seed, k, args.horizon)
                said = f"planned {planned} actions to the goal"
        finally:
            env.close()
        print(f"{said} in {args.world} layout {args.seed}; imagining {len(actions) - (k - 1)}")
    video, _, _ = imagine_video(dyn, encoder, frames, actions)
    out = write_video(args.out, video, fps=args.fps)
    print(f"{len(video)} frames ({k} context, {len(video) - k} imagined) -> {out}")
    return 0


__all__ = ["encode_frames", "imagine_video", "load_pair", "plan_to_goal", "planned_rollout", "psnr_beside_copy_last"]
