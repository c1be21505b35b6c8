"""Episode recording: run a policy in a panorama world and store whole episodes
(``btnk-env collect --mode episodes``).

Each episode keeps its frames, actions, rewards, ``terminated``/``truncated`` flags, poses and
goal (:class:`btnk_env.formats.episodes.Episode`). Episode ``i`` starts with
``env.reset(seed=seeds[i])`` and the policy's random generator is seeded with ``(seeds[i], i)``,
so an episode depends on its index alone: a killed recording resumes at the first incomplete
episode and ends with exactly the episodes an uninterrupted one writes.

Policies: ``"random"`` (uniform actions), ``"explorer"`` (the demo's scripted explorer, steering
to the goal from the pose in ``info``), or the path of a saved stable-baselines3 agent acting on
bottleneck-MAE latents (``"shipped"``: the PPO agent shipped with the package), run with the model
it was trained on (``policy_model``, default ``panorama-rooms-small``).

Episodes go into an episode folder (:mod:`btnk_env.formats.episodes`) or, with ``format="shards"``,
a shard set (:mod:`btnk_env.formats.episode_shards`) that several machines can share
(``--num-shards``/``--shard-index`` or ``WORLD_SIZE``/``RANK``, then ``--merge-index``).

Command line::

    btnk-env collect --mode episodes --out data/episodes --num-episodes 20 --policy explorer --height 128
    btnk-env collect --mode episodes --format shards --out data/eps_shards --num-episodes 1000 --episodes-per-shard 8
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from btnk_env.collection.seeds import SeedRanges, parse_seeds, resolve_parts
from btnk_env.formats.episode_shards import EpisodeShardWriter
from btnk_env.formats.episodes import Episode, EpisodeFolderWriter, EpisodeWriter
from btnk_env.policies import AgentPolicy, Policy, frame_hw, make_policy

__all__ = ["record_episodes", "episode_seeds", "run_episode"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 500  # the registered time limit of btnk_env/PanoramaRooms-v0
DEFAULT_EPISODES_PER_SHARD = 8  # at most 8 x (max_steps + 1) frames in a shard
FORMATS = ("folder", "shards")


def episode_seeds(seeds: Sequence[int], num_episodes: int) -> list[int]:
    """The reset seed of each episode: the given seeds, then counting on from the last.

    Example:
        >>> episode_seeds([5], 3), episode_seeds([7, 2], 4)
        ([5, 6, 7], [7, 2, 3, 4])
    """
    n = len(seeds)
    if not n:
        raise ValueError("seeds must not be empty")
    return [int(seeds[i]) if i < n else int(seeds[n - 1]) + i - n + 1 for i in range(num_episodes)]  # ranges stay lazy


def _rgb(obs: Any) -> np.ndarray:
    return np.asarray(obs["rgb"] if isinstance(obs, dict) else obs, dtype=np.uint8)


def run_episode(env: Any, policy: Policy, seed: int, index: int, max_steps: int) -> Episode:
    """Play one episode from ``env.reset(seed=seed)``; truncated after ``max_steps`` steps."""
    obs, info = env.reset(seed=seed)
    policy.reset(np.random.default_rng([seed, index]))
    frames, positions, headings = [_rgb(obs)], [info["position"]], [info["heading"]]
    actions, rewards, terminated, truncated = [], [], [], []
    goal = np.asarray(info["goal_position"], np.float64)
    for t in range(max_steps):
        action = policy.act(frames[-1], info)
        obs, reward, term, trunc, info = env.step(action)
        frames.append(_rgb(obs))
        positions.append(info["position"])
        headings.append(info["heading"])
        actions.append(action)
        rewards.append(reward)
        terminated.append(bool(term))
        truncated.append(bool(trunc) or (t + 1 == max_steps and not term))
        if terminated[-1] or truncated[-1]:
            break
    extra = {"policy": policy.name}
    if "layout_seed" in info:
        extra["layout_seed"] = int(info["layout_seed"])
    for key in ("episode_id", "success", "spl", "path_length"):  # a PointNav episode's id and metrics
        if key in info:
            extra[key] = info[key] if key == "episode_id" else float(info[key])
    return Episode(np.stack(frames), np.array(actions, np.int64), np.array(rewards, np.float32),
                   np.array(terminated), np.array(truncated), np.array(positions, np.float64),
                   np.array(headings, np.float64), seed=seed, scene=str(info["scene"]), goal=goal, extra=extra)


def record_episodes(
    env: Any,
    out_dir: "str | os.PathLike | None",
    num_episodes: int,
    policy: "str | Policy" = "random",
    seeds: "Iterable[int] | str" = (0,),
    max_steps: int = DEFAULT_MAX_STEPS,
    policy_model: Any = "panorama-rooms-small",
    device: str = "auto",
    writer: EpisodeWriter | None = None,
    progress: bool = True,
    callback: Callable[[int, Episode], None] | None = None,
    *,
    format: str = "folder",
    episodes_per_shard: int = DEFAULT_EPISODES_PER_SHARD,
    shard_index: int | None = None,
    num_shards: int | None = None,
) -> EpisodeWriter:
    """Record ``num_episodes`` episodes of ``env`` (resuming what ``out_dir`` already holds).

    Args:
        env: a panorama environment (``PanoramaRoomsEnv``, ``HabitatPanoramaEnv`` or a wrapper
            of one) whose ``info`` holds ``position``, ``heading``, ``scene`` and ``goal_position``.
        out_dir: the episode dataset (ignored when ``writer`` is given).
        num_episodes: total episodes wanted (in all parts).
        policy: ``"random"``, ``"explorer"``, ``"shipped"``, an agent path, or a :class:`Policy`.
        seeds: reset seeds of the episodes (``"0-99"`` or a list), continued by counting up.
        max_steps: an episode is truncated after this many steps.
        policy_model: the encoder an agent acts through (name, path or ``BtnkMAE``).
        device: where that encoder runs.
        writer: an :class:`EpisodeWriter` (default: from ``format`` on ``out_dir``).
        progress: show a tqdm progress bar.
        callback: called as ``callback(index, episode)`` after each episode is stored (shards:
            added to its shard, which is stored with its last episode).
        format: ``"folder"`` (:class:`~btnk_env.formats.episodes.EpisodeFolderWriter`) or ``"shards"``
            (:class:`~btnk_env.formats.episode_shards.EpisodeShardWriter`).
        episodes_per_shard: episodes in one shard (``format="shards"``).
        shard_index, num_shards: record only the shards ``k % num_shards == shard_index`` into a
            part index (default: ``RANK`` / ``WORLD_SIZE`` from the environment, else everything).

    Returns:
        the writer (closed).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    given = parse_seeds(seeds) if isinstance(seeds, (str, SeedRanges)) else [int(s) for s in seeds]
    seed_list = episode_seeds(given, num_episodes)
    part, parts = resolve_parts(shard_index, num_shards) if writer is None else (0, 1)
    if parts > 1 and format != "shards":
        raise ValueError("splitting a recording over machines (num_shards > 1) needs format='shards'")
    pol = policy if isinstance(policy, Policy) else make_policy(str(policy), env, policy_model, device)
    if writer is None:
        if out_dir is None:
            raise ValueError("give out_dir or writer")
        base = env.unwrapped
        settings = {"policy": pol.name if isinstance(policy, Policy) else str(policy), "seeds": given.to_json() if isinstance(given, SeedRanges) else given,
                    "max_steps": int(max_steps), "env": type(base).__name__, "world": getattr(base, "world", None),
                    "height": frame_hw(env)[0]}
        if getattr(env, "stop_action", None) is not None:  # PointNav: the action that ends an episode
            settings["stop_action"] = int(env.stop_action)
        if isinstance(pol, AgentPolicy):
            settings["policy_model"] = str(policy_model) if isinstance(policy_model, (str, os.PathLike)) else "custom"
        if format == "shards":
            writer = EpisodeShardWriter(out_dir, frame_hw(env), repr(env.action_space), settings, num_episodes,
                                        episodes_per_shard, part, parts)
        else:
            writer = EpisodeFolderWriter(out_dir, frame_hw(env), repr(env.action_space), settings)
    from tqdm.auto import tqdm

    missing = getattr(writer, "missing", None)  # a writer that can re-do a damaged episode in the middle
    todo = missing(num_episodes) if missing is not None else list(range(writer.num_complete(), num_episodes))
    if len(todo) < num_episodes:
        logger.info("resuming: %d of %d episodes to record", len(todo), num_episodes)
    bar = tqdm(total=num_episodes, initial=num_episodes - len(todo), disable=not progress, desc="episodes", unit="ep")
    try:
        for i in todo:
            episode = run_episode(env, pol, seed_list[i], i, max_steps)
            writer.write(i, episode)
            bar.update(1)
            if callback is not None:
                callback(i, episode)
    finally:
        bar.close()
        writer.close()
    return writer


# -- command line (options added to ``btnk-env collect``) ------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env collect --mode episodes``."""
    group = parser.add_argument_group(
        "episodes (--mode episodes)", "records whole episodes; --seeds are the episodes' reset seeds, continued by "
        "counting up (--seeds 0 --num-episodes 50: seeds 0..49); --height, --world, --habitat-scene as above")
    group.add_argument("--num-episodes", type=int, default=None, help="total episodes in the folder")
    group.add_argument("--policy", default="random",
                       help="random, explorer, shipped (the PPO agent shipped with the package), planner (plans in the shipped "
                       "world model, btnk-env plan) or a stable-baselines3 .zip")
    group.add_argument("--policy-model", default="panorama-rooms-small", help="the encoder an agent policy acts through")
    group.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="steps before an episode is truncated")
    group.add_argument("--device", default="auto", help="device of the agent's encoder: auto, cpu or cuda")
    group.add_argument("--episodes-per-shard", type=int, default=DEFAULT_EPISODES_PER_SHARD,
                       help="episodes in one shard (--format shards); --num-shards/--shard-index split the shards")
    group.add_argument("--pointnav", default=None, metavar="DATASET",
                       help="play the episodes of a habitat-lab PointNav dataset (.json.gz) in --habitat-scene: "
                            "--seeds are episode indices; adds STOP (action 3); success and SPL are stored per episode")


def run(args: argparse.Namespace, env: Any) -> int:
    """Record episodes for ``btnk-env collect --mode episodes`` into ``args.out`` with ``env``."""
    if args.num_episodes is None:
        print("btnk-env collect: --mode episodes needs --num-episodes N")
        return 2
    scores: list[tuple[float, float]] = []
    if args.pointnav:
        from btnk_env.envs.pointnav import PointNavEnv

        if type(env.unwrapped).__name__ != "HabitatPanoramaEnv":
            raise ValueError("--pointnav plays habitat-lab episodes in a Habitat scene: give --habitat-scene")
        env = PointNavEnv(env, args.pointnav)
    writer = record_episodes(env, args.out, args.num_episodes, policy=args.policy, seeds=args.seeds,
                             max_steps=args.max_steps, policy_model=args.policy_model, device=args.device,
                             progress=not args.no_progress,
                             callback=lambda i, ep: "spl" in ep.extra and scores.append((ep.extra["success"], ep.extra["spl"])),
                             format=args.format, episodes_per_shard=args.episodes_per_shard,
                             shard_index=args.shard_index, num_shards=args.num_shards)
    if isinstance(writer, EpisodeShardWriter):
        parts = writer.settings["num_shards"]
        print(f"{writer.num_stored} episodes in {len(writer.entries)} shards in {args.out}"
              + (f" ({writer.index_path.name}; merge with 'btnk-env collect --merge-index {args.out}')" if parts > 1 else ""))
    else:
        print(f"{writer.num_complete()} episodes in {args.out}")
    if scores:
        success, spl = np.mean(scores, axis=0)
        print(f"PointNav ({len(scores)} episodes recorded now): success {success:.3f}, SPL {spl:.3f}")
    return 0
