"""The point-goal navigation task shared by the panorama environments (built-in and Habitat)."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple, TypeVar

T = TypeVar("T")


class PointGoalTask:
    """Reward, termination and ``render`` of the panorama environments' point-goal task.

    Per step: the decrease of the distance to the goal minus ``STEP_PENALTY``; reaching the goal
    (distance below ``self.goal_radius``) adds ``SUCCESS_REWARD`` and ends the episode. The
    environment provides ``goal_radius``, ``depth`` and ``_obs`` (the last observation).
    """

    SUCCESS_REWARD = 5.0
    STEP_PENALTY = 0.01

    def _task_reward(self, before: float, after: float) -> Tuple[float, bool]:
        """``(reward, success)`` for a step that took the goal distance from ``before`` to ``after``."""
        success = after < self.goal_radius
        return (before - after) - self.STEP_PENALTY + (self.SUCCESS_REWARD if success else 0.0), bool(success)

    def render(self) -> Any:
        """The current panorama, ``(H, 2H, 3)`` uint8."""
        if self._obs is None:
            raise RuntimeError("call reset() before render()")
        return self._obs["rgb"] if self.depth else self._obs


def pick_goal(sample: Callable[[], T], distance: Callable[[T], float], bounds: Tuple[float, float],
              tries: int, default: Optional[T] = None) -> Optional[T]:
    """The first of ``tries`` sampled points whose ``distance`` lies within ``bounds``, else the
    closest to the bounds (``default`` if every distance is infinite, e.g. unreachable)."""
    lo, hi = bounds
    best, best_err = default, math.inf
    for _ in range(tries):
        point = sample()
        d = distance(point)
        err = max(lo - d, d - hi, 0.0) if math.isfinite(d) else math.inf
        if err < best_err:
            best, best_err = point, err
        if err == 0.0:
            break
    return best
