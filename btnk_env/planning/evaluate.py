"""Evaluation of goal reaching in the built-in world: the planner beside random actions, the shipped PPO
agent and the breadth-first oracle, on a range of layouts with the same step budget.

Episode ``s`` resets the world with ``seed=s`` (layout ``s``, its start pose and goal); the goal image is
the view at the goal position at a heading drawn from ``(s, 7)``. Success: the world ends the episode at
the goal (``terminated``) within ``max_steps``. SPL (success weighted by path length, Anderson et al.):
``success * shortest / max(shortest, steps)`` with ``shortest`` the oracle's number of actions.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
import torch

#: ``agent(env, obs, info, goal_frame, seed) -> act(obs, info) -> action``: an episode's acting function.
AgentFactory = Callable[..., Callable]


def planner_agent(planner, encoder) -> AgentFactory:
    """Acts with :class:`btnk_env.planning.policy.LatentPlanner` on the encoded observations."""
    from btnk_env.imagine import encode_frames

    def start(env, obs, info, goal_frame, seed):
        planner.reset(encode_frames(encoder, goal_frame[None])[0], seed=seed)
        return lambda o, i: planner.act(encode_frames(encoder, np.asarray(o)[None])[0])

    return start


def policy_agent(policy) -> AgentFactory:
    """An episode-recorder policy (:class:`btnk_env.collection.episodes.Policy`: random, the PPO agent)."""

    def start(env, obs, info, goal_frame, seed):
        policy.reset(np.random.default_rng([seed, 1]))
        return policy.act

    return start


def oracle_agent() -> AgentFactory:
    """The breadth-first shortest path over the world's free space (:func:`btnk_env.imagine.plan_to_goal`)."""
    from btnk_env.imagine import plan_to_goal

    def start(env, obs, info, goal_frame, seed):
        path = iter(plan_to_goal(env))
        return lambda o, i: next(path, 0)

    return start


def run_episode(env, agent: AgentFactory, seed: int, max_steps: int, on_step: Optional[Callable] = None) -> Dict:
    """One episode from ``env.reset(seed=seed)``; returns ``success``, ``steps``, ``shortest``, ``spl``,
    ``time_per_step_s`` (the agent's deciding time per step)."""
    from btnk_env.imagine import plan_to_goal
    from btnk_env.planning.goals import goal_view

    obs, info = env.reset(seed=int(seed))
    shortest = len(plan_to_goal(env))
    heading = float(np.random.default_rng([int(seed), 7]).uniform(-np.pi, np.pi))
    goal_frame = goal_view(env, info["goal_position"], heading)
    act = agent(env, obs, info, goal_frame, int(seed))
    success, steps, think = False, 0, 0.0
    for steps in range(1, max_steps + 1):
        t0 = time.perf_counter()
        action = int(act(obs, info))
        think += time.perf_counter() - t0
        obs, _, terminated, truncated, info = env.step(action)
        if on_step is not None:
            on_step(obs, action)
        if terminated:
            success = bool(info.get("success", True))
            break
        if truncated:
            break
    spl = float(success) * shortest / max(shortest, steps, 1) if shortest or success else float(success)
    return {"seed": int(seed), "success": success, "steps": steps, "shortest": shortest, "spl": spl,
            "time_per_step_s": think / max(steps, 1)}


def evaluate(env, agents: Dict[str, AgentFactory], seeds: Iterable[int], max_steps: int,
             progress: bool = False) -> Dict:
    """Every agent on every seed; returns ``{"methods": {name: summary with "episodes"}, ...}``."""
    from tqdm.auto import tqdm

    seeds = [int(s) for s in seeds]
    out = {"seeds": [seeds[0], seeds[-1]] if seeds else [], "num_episodes": len(seeds), "max_steps": int(max_steps),
           "methods": {}}
    for name, agent in agents.items():
        rows: List[Dict] = []
        for s in tqdm(seeds, desc=name, disable=not progress, unit="ep"):
            rows.append(run_episode(env, agent, s, max_steps))
        out["methods"][name] = summarize(rows)
    return out


def summarize(rows: List[Dict]) -> Dict:
    """Mean success rate, SPL, steps (of the successful episodes) and deciding time per step."""
    ok = [r for r in rows if r["success"]]
    return {"success_rate": float(np.mean([r["success"] for r in rows])) if rows else float("nan"),
            "spl": float(np.mean([r["spl"] for r in rows])) if rows else float("nan"),
            "mean_steps_success": float(np.mean([r["steps"] for r in ok])) if ok else float("nan"),
            "mean_shortest": float(np.mean([r["shortest"] for r in rows])) if rows else float("nan"),
            "time_per_step_s": float(np.mean([r["time_per_step_s"] for r in rows])) if rows else float("nan"),
            "episodes": rows}


__all__ = ["evaluate", "oracle_agent", "planner_agent", "policy_agent", "run_episode", "summarize"]
