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

#: ``agent(env, obs, info, goal_frame, seed) -> act(obs, info) -> action``: an episode's acting function.
AgentFactory = Callable[..., Callable]


def planner_agent(planner, encoder) -> AgentFactory:
    """Acts with :class:`btnk_env.planning.policy.LatentPlanner` on the encoded observations."""
    from btnk_env.imagine import encode_frames

    def start(env, obs, info, goal_frame, seed):
        planner.reset_to_view(goal_frame, encoder, seed=seed)
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


def goal_frame(env, info: Dict, seed: int) -> np.ndarray:
    """The goal image of episode ``seed``: the view at ``info["goal_position"]`` at a heading drawn from
    ``(seed, 7)``; ``(H, 2H, 3)`` uint8."""
    from btnk_env.planning.goals import goal_view

    heading = float(np.random.default_rng([int(seed), 7]).uniform(-np.pi, np.pi))
    return goal_view(env, info["goal_position"], heading)


def run_episode(env, agent: AgentFactory, seed: int, max_steps: int, on_step: Optional[Callable] = None) -> Dict:
    """One episode from ``env.reset(seed=seed)``; returns ``success``, ``steps``, ``shortest``, ``spl``,
    ``time_per_step_s`` (the agent's deciding time per step)."""
    from btnk_env.imagine import plan_to_goal

    obs, info = env.reset(seed=int(seed))
    shortest = len(plan_to_goal(env))
    act = agent(env, obs, info, goal_frame(env, info, seed), int(seed))
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


def markdown_table(report: Dict) -> str:
    """The report as a Markdown table: one row per method."""
    rows = ["| method | success rate | SPL | steps (successes) | deciding time per step |", "|---|---|---|---|---|"]
    for name, m in report["methods"].items():
        rows.append(f"| {name} | {m['success_rate']:.2f} | {m['spl']:.2f} | {m['mean_steps_success']:.1f} | "
                    f"{m['time_per_step_s'] * 1000:.0f} ms |")
    return "\n".join(rows)


def plot(report: Dict, path):
    """Success rate and SPL per method as grouped bars, a PNG written with PIL."""
    from pathlib import Path

    from PIL import Image, ImageDraw

    from btnk_env.models.image_file import save_png

    methods = list(report["methods"])
    bar, gap, h, top, left = 24, 40, 240, 30, 40
    w = left + len(methods) * (2 * bar + gap) + 20
    img = Image.new("RGB", (max(w, 360), h + 70), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((left, 6), f"{report['num_episodes']} layouts, {report['max_steps']} steps at most: success rate (dark), SPL (light)",
              fill=(0, 0, 0))
    y = lambda v: top + (1 - v) * (h - top)  # noqa: E731
    for v in (0.0, 0.5, 0.8, 1.0):
        draw.line([(left, y(v)), (w - 10, y(v))], fill=(220, 220, 220))
        draw.text((4, y(v) - 6), f"{v:.1f}", fill=(0, 0, 0))
    for i, m in enumerate(methods):
        x = left + 10 + i * (2 * bar + gap)
        r = report["methods"][m]
        for j, (key, color) in enumerate((("success_rate", (200, 60, 40)), ("spl", (240, 160, 130)))):
            draw.rectangle([x + j * bar, y(r[key]), x + (j + 1) * bar - 2, y(0)], fill=color)
            draw.text((x + j * bar, y(r[key]) - 12), f"{r[key]:.2f}", fill=(0, 0, 0))
        draw.text((x, h + 8), m, fill=(0, 0, 0))
    return save_png(Path(path), np.asarray(img))


__all__ = ["evaluate", "goal_frame", "markdown_table", "plot", "oracle_agent", "planner_agent", "policy_agent", "run_episode", "summarize"]
