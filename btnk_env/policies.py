"""The policies that act in the panorama worlds, in one place.

Episode recording (``btnk-env collect --mode episodes --policy ...``), the demo, ``imagine`` and the
planner take their policies from here:

- ``"random"``: uniform actions (:class:`RandomPolicy`);
- ``"shortest-path"``: the geodesic oracle of a PointNav episode (:class:`btnk_env.envs.pointnav.ShortestPathPolicy`);
- ``"explorer"``: the scripted explorer (:func:`scripted_explorer`), steering to the goal from the
  pose in ``info`` (privileged state: a baseline, not a learner);
- ``"planner"``: the latent planner (:mod:`btnk_env.planning`): CEM over the shipped world model
  towards the view at the goal, from latents alone;
- ``"shipped"`` or the path of a saved stable-baselines3 agent acting on bottleneck-MAE latents
  (:class:`AgentPolicy`, :func:`ppo_policy`; :data:`SHIPPED_AGENT` is the PPO agent shipped with
  the package). Agent files are read by :func:`btnk_env.agent_io.load_agent` (nothing unpickled).

Example:
    >>> import numpy as np
    >>> policy = RandomPolicy(3)
    >>> policy.reset(np.random.default_rng(0))
    >>> policy.act(np.zeros((8, 16, 3), np.uint8), {}) in (0, 1, 2)
    True
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["POLICIES", "SHIPPED_AGENT", "Policy", "RandomPolicy", "ExplorerPolicy", "AgentPolicy",
           "make_policy", "load_agent", "frame_hw", "scripted_explorer", "ppo_policy"]

POLICIES = ("random", "explorer", "shortest-path")
"""Policies named by a word; ``"shipped"`` or an agent file's path name a saved agent."""

#: The PPO agent shipped with the package: trained on panorama-rooms-small latents in
#: ``world="single_room"`` (examples/train_ppo_latents.py --task rooms --model panorama-rooms-small
#: --height 128 --timesteps 40000; results.json beside it).
SHIPPED_AGENT = Path(__file__).resolve().parent / "agents" / "ppo_single_room" / "ppo_latents.zip"


def scripted_explorer(seed: int) -> Callable[[dict], int]:
    """A policy that heads for the goal it is told about and turns away from walls.

    It reads the agent pose and goal from ``info`` (no learning involved): turn towards the
    goal until it is within 20 degrees ahead, then walk; after a collision, turn for a few steps.
    """
    rng = np.random.default_rng(seed)
    state = {"escape": 0, "turn": 1}

    def act(info: dict) -> int:
        if info.get("collided"):
            state["escape"], state["turn"] = int(rng.integers(2, 5)), int(rng.integers(1, 3))
        if state["escape"] > 0:
            state["escape"] -= 1
            return state["turn"] if state["escape"] > 0 else 0
        dx, dz = np.asarray(info["goal_position"])[[0, 2]] - np.asarray(info["position"])[[0, 2]]
        bearing = math.atan2(-dx, -dz)  # heading 0 looks along -z, positive turns left
        delta = (bearing - info["heading"] + math.pi) % (2 * math.pi) - math.pi
        if abs(delta) < math.radians(20):
            return 0
        return 1 if delta > 0 else 2

    return act


def ppo_policy(path: Path, latent_dim: int) -> Callable[[dict, np.ndarray], int]:
    """A saved stable-baselines3 PPO agent acting on ``(D,)`` latents (deterministic actions).

    Read with :func:`btnk_env.agent_io.load_agent`: weights and plain settings only, nothing in
    the file is unpickled.
    """
    from btnk_env.agent_io import load_agent

    agent = load_agent(path, device="cpu")
    if tuple(agent.observation_space.shape) != (latent_dim,):
        raise ValueError(f"the agent at {path} acts on observations of shape {agent.observation_space.shape}, "
                         f"but this model gives ({latent_dim},) latents: use the agent's own model (--model)")

    def act(info: dict, latent: np.ndarray) -> int:
        action, _ = agent.predict(latent, deterministic=True)
        return int(action)

    return act


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
    if spec == "shortest-path":
        if getattr(env, "stop_action", None) is None:
            raise ValueError("--policy shortest-path walks PointNav episodes: give --pointnav DATASET")
        from btnk_env.envs.pointnav import ShortestPathPolicy

        return ShortestPathPolicy(env, env.success_distance)
    if spec == "planner":  # plans in the shipped world model towards the view at the goal (btnk_env.planning)
        from btnk_env.planning.policy import make_planner_policy

        return make_planner_policy(env)
    if spec == "explorer":
        if env.action_space.n != 3:
            raise ValueError(f"the explorer drives Discrete(3) worlds (forward, left, right); this one has {env.action_space}")
        return ExplorerPolicy()
    from btnk_env.models import BtnkMAE

    path = SHIPPED_AGENT if spec == "shipped" else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--policy {spec!r} is not one of {POLICIES + ('shipped',)} nor 'planner' nor an agent file")
    if isinstance(policy_model, (str, os.PathLike)):  # ours to place
        from btnk_env.models.device import resolve_device

        model = BtnkMAE.from_pretrained(policy_model, map_location=resolve_device(device))
    else:  # the caller's model runs where it is
        model = policy_model
    return AgentPolicy(path, model, frame_hw(env), env.action_space, None)


def frame_hw(env: Any) -> tuple[int, int]:
    """``(H, W)`` of the panorama frames ``env`` renders (its ``rgb`` observation)."""
    space = env.observation_space["rgb"] if hasattr(env.observation_space, "spaces") else env.observation_space
    return int(space.shape[0]), int(space.shape[1])
