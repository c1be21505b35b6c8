"""The planner as a policy: receding-horizon planning in imagination from latents only.

:class:`LatentPlanner` keeps the agent's own history (the last ``K`` latents and the actions between
them), and at every step plans ``H`` actions with a solver (:mod:`btnk_env.planning.solvers`) whose
candidates are imagined by the dynamics model in one batch and scored by the goal-distance head
(:mod:`btnk_env.planning.cost`), executes the first action and replans at the next observation (the rest
of the plan, shifted, seeds the next search). It sees latents and actions, never the world's state:
``act(latent)`` is all it is given. :class:`PlannerPolicy` wraps it for the episode recorder
(``btnk-env collect --mode episodes --policy planner``): frames in, the goal given as the world's goal
position rendered to a view.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import torch

from btnk_env.policies import Policy
from btnk_env.planning.cost import imagine, sequence_cost
from btnk_env.planning.solvers import Solver, make_solver


def padded_context(latents: torch.Tensor, actions: torch.Tensor, k: int):
    """The dynamics model's context from an episode's first ``t`` latents.

    Args:
        latents: ``(t, D)``, ``t >= 1``; actions: ``(t - 1,)`` the actions between them.

    Returns:
        ``(context (K, D), context_actions (K - 1,) int64)``: the last ``K`` latents, padded in front with
        copies of the first one (with "forward" between them: a blocked step, the latent unchanged).
    """
    pad = max(0, k - len(latents))
    z = torch.cat([latents[:1].expand(pad, -1), latents])[-k:]
    a = torch.cat([torch.zeros(pad, dtype=torch.long), actions.long()])[-(k - 1):] if k > 1 else actions[:0].long()
    return z, a


class LatentPlanner:
    """Plans with ``step`` (a :class:`btnk_env.models.dynamics.LatentDynamics` or a baseline ``step(z, a)``) and a
    goal-distance ``head``.

    Example:
        >>> import torch
        >>> from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics
        >>> from btnk_env.models.goal_distance import GoalDistance, GoalDistanceConfig
        >>> dyn = LatentDynamics(DynamicsConfig(latent_dim=8, num_actions=3, context=2, width=16, depth=1, heads=2))
        >>> head = GoalDistance(GoalDistanceConfig(latent_dim=8, width=16, depth=1))
        >>> planner = LatentPlanner(dyn, head, num_actions=3, context=2, horizon=4)
        >>> planner.reset(torch.zeros(8))
        >>> planner.act(torch.ones(8)) in (0, 1, 2)
        True
    """

    def __init__(self, step, head, num_actions: int, context: int, horizon: int = 10,
                 solver: "str | Solver" = "cem", cost: str = "mean", seed: int = 0, goal_rolls: int = 1,
                 **solver_args) -> None:
        self.step, self.head = step, head
        self.goal_rolls = int(goal_rolls)
        """Headings a goal image is seen at by :meth:`reset_to_view` (:func:`btnk_env.planning.goals.goal_latents`)."""
        self.num_actions, self.context, self.horizon, self.cost = int(num_actions), int(context), int(horizon), cost
        self.solver = solver if isinstance(solver, Solver) else make_solver(solver, **solver_args)
        self.seed = seed
        self.reset(None)

    def reset(self, goal: Optional[torch.Tensor], seed: Optional[int] = None) -> None:
        """Start an episode towards ``goal`` ``(D,)`` (a goal latent, :func:`btnk_env.planning.goals.goal_latent`),
        or ``(G, D)``: the latents of one goal (the cost is the head's mean over them)."""
        self.goal = None if goal is None else torch.as_tensor(goal, dtype=torch.float32)
        self.rng = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        self._latents: list = []
        self._actions: list = []
        self._plan: Optional[torch.Tensor] = None
        self.last_plan: Optional[torch.Tensor] = None
        """``(H,)`` the actions planned at the last step."""
        self.last_imagined: Optional[torch.Tensor] = None
        """``(H, D)`` what the dynamics model imagines along them."""
        self.last_cost = float("nan")
        self.last_time_s = 0.0

    def reset_to_view(self, image: np.ndarray, encoder, seed: Optional[int] = None) -> None:
        """:meth:`reset` towards a goal image ``(H, W, 3)`` uint8, encoded at ``goal_rolls`` headings."""
        from btnk_env.planning.goals import goal_latents

        self.reset(goal_latents(encoder, image, self.goal_rolls), seed=seed)

    def context_now(self):
        """``(context (K, D), context_actions (K - 1,))`` of the current step."""
        n = len(self._latents)
        between = self._actions[len(self._actions) - (n - 1):] if n > 1 else []
        return padded_context(torch.stack(self._latents), torch.as_tensor(between, dtype=torch.long), self.context)

    @torch.no_grad()
    def act(self, latent) -> int:
        """One step: the latent ``(D,)`` of the current observation -> the action to take."""
        if self.goal is None:
            raise RuntimeError("call reset(goal) before act()")
        t0 = time.perf_counter()
        self._latents = (self._latents + [torch.as_tensor(latent, dtype=torch.float32).reshape(-1)])[-self.context:]
        z, a = self.context_now()

        def cost(seqs: torch.Tensor) -> torch.Tensor:
            return sequence_cost(self.head, imagine(self.step, z, a, seqs), self.goal, self.cost)

        warm = None
        if self._plan is not None:
            warm = torch.cat([self._plan[1:], self._plan[-1:]])
        plan, self.last_cost = self.solver.solve(cost, self.horizon, self.num_actions, self.rng, warm)
        self._plan = self.last_plan = plan
        self.last_imagined = imagine(self.step, z, a, plan[None])[0]
        action = int(plan[0])
        self._actions = (self._actions + [action])[-max(1, self.context - 1):]
        self.last_time_s = time.perf_counter() - t0
        return action


class PlannerPolicy(Policy):
    """:class:`LatentPlanner` for the episode recorder: encodes each frame; the goal is the view at the
    world's goal position (rendered once per episode at a random heading)."""

    name = "planner"

    def __init__(self, env: Any, encoder, planner: LatentPlanner) -> None:
        self.env, self.encoder, self.planner = env, encoder, planner

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._started = False

    def act(self, frame: np.ndarray, info: dict) -> int:
        from btnk_env.imagine import encode_frames
        from btnk_env.planning.goals import goal_view

        if not self._started:
            view = goal_view(self.env, info["goal_position"], float(self.rng.uniform(-np.pi, np.pi)))
            self.planner.reset_to_view(view, self.encoder, seed=int(self.rng.integers(2**31 - 1)))
            self._started = True
        return self.planner.act(encode_frames(self.encoder, np.asarray(frame)[None])[0])


#: The planner's settings unless told otherwise (``btnk-env plan``, ``imagine --planner latent``, ``demo --plan``).
PLANNER_DEFAULTS = {"solver": "cem", "samples": 64, "iterations": 2, "horizon": 8, "cost": "mean", "goal_rolls": 1}


def make_planner(step, head, dyn, **settings) -> LatentPlanner:
    """A :class:`LatentPlanner` imagining with ``step`` (``dyn`` or a baseline) for ``dyn``'s actions and
    context, with :data:`PLANNER_DEFAULTS` overridden by ``settings``."""
    return LatentPlanner(step, head, dyn.config.num_actions, dyn.config.context, **{**PLANNER_DEFAULTS, **settings})


def planner_rollout(env, planner: LatentPlanner, encoder, seed: int, context: int, horizon: int):
    """True frames of the latent planner acting in a built-in world: :func:`btnk_env.imagine.planned_rollout`
    with the planner instead of the breadth-first search choosing the path.

    The agent is reset to layout ``seed`` and turns left ``context - 1`` times (the context frames); then
    the planner acts, replanning at every step, towards the goal view of the evaluation
    (:func:`btnk_env.planning.evaluate.goal_frame`) for ``horizon`` steps at most or until the world ends the
    episode at the goal.

    Returns:
        ``(frames (T, H, W, 3) uint8, actions (T - 1,) int64, success)``, ``T = context + steps``.
    """
    from btnk_env.imagine import encode_frames
    from btnk_env.planning.evaluate import goal_frame

    obs, info = env.reset(seed=seed)
    frames, actions, success = [obs], [1] * (context - 1), False
    for a in actions:
        frames.append(env.step(a)[0])
    planner.reset_to_view(goal_frame(env, info, seed), encoder, seed=seed)
    for _ in range(horizon):
        actions.append(planner.act(encode_frames(encoder, np.asarray(frames[-1])[None])[0]))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        frames.append(obs)
        if terminated or truncated:
            success = bool(terminated)
            break
    return np.stack(frames), np.asarray(actions, dtype=np.int64), success


def make_planner_policy(env: Any, dynamics: str = "panorama-rooms-small-dynamics", head: Optional[str] = None,
                        encoder: Optional[str] = None, **planner_args) -> PlannerPolicy:
    """The shipped models, checked against each other and ``env``'s actions, as a :class:`PlannerPolicy`."""
    from btnk_env.planning.load import DEFAULT_HEAD, load_models

    dyn, gd, enc = load_models(dynamics, head or DEFAULT_HEAD, encoder, int(env.action_space.n))
    return PlannerPolicy(env, enc, make_planner(dyn, gd, dyn, **planner_args))


__all__ = ["PLANNER_DEFAULTS", "LatentPlanner", "PlannerPolicy", "make_planner", "make_planner_policy", "padded_context", "planner_rollout"]
