"""Episode recording: run a policy in a panorama world and store whole episodes
(``btnk-env collect --mode episodes``).

Each episode keeps its frames, actions, rewards, ``terminated``/``truncated`` flags, poses and
goal (:class:`btnk_env.collection.episode_format.Episode`). Episode ``i`` starts with
``env.reset(seed=seeds[i])`` and the policy's random generator is seeded with ``(seeds[i], i)``,
so an episode depends on its index alone: a killed recording resumes at the first incomplete
episode and ends with exactly the episodes an uninterrupted one writes.

Policies: ``"random"`` (uniform actions), ``"explorer"`` (the demo's scripted explorer, steering
to the goal from the pose in ``info``), or the path of a saved stable-baselines3 agent acting on
bottleneck-MAE latents (``"shipped"``: the PPO agent shipped with the package), run with the model
it was trained on (``policy_model``, default ``panorama-rooms-small``).

Command line::

    btnk-env collect --mode episodes --out data/episodes --num-episodes 20 --policy explorer --height 128
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from btnk_env.collection.seeds import SeedRanges, parse_seeds
from btnk_env.collection.episode_format import Episode, EpisodeFolderWriter, EpisodeWriter

__all__ = ["record_episodes", "make_policy", "episode_seeds", "load_agent", "POLICIES"]

logger = logging.getLogger(__name__)

POLICIES = ("random", "explorer")
DEFAULT_MAX_STEPS = 500  # the registered time limit of btnk_env/PanoramaRooms-v0


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


def load_agent(path: "str | os.PathLike"):
    """A saved stable-baselines3 agent, read safely (:func:`btnk_env.agent_io.load_agent`: weights
    and plain settings only, nothing in the file is unpickled); the one place agents are loaded here."""
    from btnk_env.agent_io import load_agent as read_agent

    if not Path(path).is_file():
        raise FileNotFoundError(f"no agent at {path}: give 'random', 'explorer', 'shipped' or a stable-baselines3 "
                                f".zip (examples/train_ppo_latents.py --save DIR writes DIR/ppo_latents.zip)")
    return read_agent(path, device="cpu")


class Policy:
    """``act(frame, info) -> action`` for one episode at a time; ``reset(rng)`` starts an episode."""

    name = "policy"

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, frame: np.ndarray, info: dict) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class RandomPolicy(Policy):
    name = "random"

    def __init__(self, num_actions: int) -> None:
        self.num_actions = num_actions

    def act(self, frame: np.ndarray, info: dict) -> int:
        return int(self.rng.integers(self.num_actions))


class ExplorerPolicy(Policy):
    name = "explorer"

    def reset(self, rng: np.random.Generator) -> None:
        from btnk_env.demo import scripted_explorer

        self._act = scripted_explorer(int(rng.integers(2**31 - 1)))

    def act(self, frame: np.ndarray, info: dict) -> int:
        return self._act(info)


class AgentPolicy(Policy):
    """A stable-baselines3 agent acting (deterministically) on the latents of its encoder."""

    def __init__(self, path: Path, model: Any, frame_hw: tuple[int, int], action_space: Any, device: str) -> None:
        from btnk_env.wrappers.frames import FrameEncoder, target_size

        self.agent = load_agent(path)
        self.name = f"agent:{Path(path).name}"
        if tuple(self.agent.observation_space.shape) != (model.latent_dim,):
            raise ValueError(f"the agent at {path} acts on observations of shape {self.agent.observation_space.shape}, "
                             f"but the model gives ({model.latent_dim},) latents: give the agent's own model (--policy-model)")
        if self.agent.action_space != action_space:
            raise ValueError(f"the agent at {path} acts in {self.agent.action_space} but the world's actions are "
                             f"{action_space}: use an agent trained in this world")
        self.encoder = FrameEncoder(model, target_size(frame_hw, model), device)

    def act(self, frame: np.ndarray, info: dict) -> int:
        action, _ = self.agent.predict(self.encoder.encode(frame[None])[0], deterministic=True)
        return int(action)


def make_policy(spec: str, env: Any, policy_model: Any = "panorama-rooms-small", device: str = "auto") -> Policy:
    """The policy ``spec`` names for ``env`` (see the module docstring)."""
    from gymnasium import spaces

    if not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(f"episode recording needs a Discrete action space, the world has {env.action_space}")
    if spec == "random":
        return RandomPolicy(int(env.action_space.n))
    if spec == "explorer":
        if env.action_space.n != 3:
            raise ValueError(f"the explorer drives Discrete(3) worlds (forward, left, right); this one has {env.action_space}")
        return ExplorerPolicy()
    if spec == "planner":  # plans in the shipped world model towards the view at the goal (btnk_env.planning)
        from btnk_env.planning.policy import make_planner_policy

        return make_planner_policy(env)
    from btnk_env.demo import SHIPPED_AGENT
    from models import BtnkMAE

    path = SHIPPED_AGENT if spec == "shipped" else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--policy {spec!r} is not one of {POLICIES + ('shipped',)} nor 'planner' nor an agent file")
    if isinstance(policy_model, (str, os.PathLike)):  # ours to place
        from models.device import resolve_device

        model = BtnkMAE.from_pretrained(policy_model, map_location=resolve_device(device))
    else:  # the caller's model runs where it is
        model = policy_model
    return AgentPolicy(path, model, _frame_hw(env), env.action_space, None)


def _frame_hw(env: Any) -> tuple[int, int]:
    space = env.observation_space["rgb"] if hasattr(env.observation_space, "spaces") else env.observation_space
    return int(space.shape[0]), int(space.shape[1])


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
) -> EpisodeWriter:
    """Record ``num_episodes`` episodes of ``env`` (resuming what ``out_dir`` already holds).

    Args:
        env: a panorama environment (``PanoramaRoomsEnv``, ``HabitatPanoramaEnv`` or a wrapper
            of one) whose ``info`` holds ``position``, ``heading``, ``scene`` and ``goal_position``.
        out_dir: the episode folder (ignored when ``writer`` is given).
        num_episodes: total episodes wanted.
        policy: ``"random"``, ``"explorer"``, ``"shipped"``, an agent path, or a :class:`Policy`.
        seeds: reset seeds of the episodes (``"0-99"`` or a list), continued by counting up.
        max_steps: an episode is truncated after this many steps.
        policy_model: the encoder an agent acts through (name, path or ``BtnkMAE``).
        device: where that encoder runs.
        writer: an :class:`EpisodeWriter` (default: an :class:`EpisodeFolderWriter` on ``out_dir``).
        progress: show a tqdm progress bar.
        callback: called as ``callback(index, episode)`` after each episode is stored.

    Returns:
        the writer (closed).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    given = parse_seeds(seeds) if isinstance(seeds, (str, SeedRanges)) else [int(s) for s in seeds]
    seed_list = episode_seeds(given, num_episodes)
    pol = policy if isinstance(policy, Policy) else make_policy(str(policy), env, policy_model, device)
    if writer is None:
        if out_dir is None:
            raise ValueError("give out_dir or writer")
        base = env.unwrapped
        settings = {"policy": pol.name if isinstance(policy, Policy) else str(policy), "seeds": given.to_json() if isinstance(given, SeedRanges) else given,
                    "max_steps": int(max_steps), "env": type(base).__name__, "world": getattr(base, "world", None),
                    "height": _frame_hw(env)[0]}
        if isinstance(pol, AgentPolicy):
            settings["policy_model"] = str(policy_model) if isinstance(policy_model, (str, os.PathLike)) else "custom"
        writer = EpisodeFolderWriter(out_dir, _frame_hw(env), repr(env.action_space), settings)
    from tqdm.auto import tqdm

    start = writer.num_complete()
    if start:
        logger.info("resuming at episode %d", start)
    bar = tqdm(total=num_episodes, initial=min(start, num_episodes), disable=not progress, desc="episodes", unit="ep")
    try:
        for i in range(start, num_episodes):
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


def run(args: argparse.Namespace, env: Any) -> int:
    """Record episodes for ``btnk-env collect --mode episodes`` into ``args.out`` with ``env``."""
    if args.num_episodes is None:
        print("btnk-env collect: --mode episodes needs --num-episodes N")
        return 2
    writer = record_episodes(env, args.out, args.num_episodes, policy=args.policy, seeds=args.seeds,
                             max_steps=args.max_steps, policy_model=args.policy_model, device=args.device,
                             progress=not args.no_progress)
    print(f"{writer.num_complete()} episodes in {args.out}")
    return 0
