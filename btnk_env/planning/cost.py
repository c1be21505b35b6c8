"""The planning cost: imagine candidate action sequences with a dynamics model, score them with the
goal-distance head.

For ``N`` candidate sequences of ``H`` actions from the current context, one batched imagination gives
``(N, H, D)`` latents; the head estimates the actions still needed from each, ``d (N, H)``. Costs:

- ``"mean"`` (default): the mean of ``d_t`` over the horizon (a running cost): it keeps pulling
  towards the goal where the head is unsure near it;
- ``"min"``: ``min_t (t + d_t)``, the estimated length of the whole route that follows the
  candidate for ``t`` steps and then goes the rest of the way (a route that reaches the goal early
  counts as early);
- ``"terminal"``: ``d_H``.
"""

from __future__ import annotations

from typing import Callable

import torch

COSTS = ("mean", "min", "terminal")

#: ``step(latents (B, K, D), actions (B, K)) -> (B, D)``: a dynamics model or a baseline.
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def imagine(step: Step, context: torch.Tensor, context_actions: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Open loop from one context for ``N`` candidates.

    Args:
        context: ``(K, D)`` latents; context_actions: ``(K - 1,)``; actions: ``(N, H)`` int64.

    Returns:
        ``(N, H, D)`` imagined latents.
    """
    from btnk_env.models.rollout import imagine as imagine_open_loop

    n = len(actions)
    acts = torch.cat([context_actions.long()[None].expand(n, -1), actions.long()], 1)  # (N, K - 1 + H)
    return imagine_open_loop(step, context.float()[None].expand(n, -1, -1), acts)


@torch.no_grad()
def sequence_cost(head, imagined: torch.Tensor, goal: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """``imagined (N, H, D)``, ``goal (D,)`` or ``(G, D)`` -> ``(N,)`` costs (see the module docstring); with
    ``G`` goal latents (one goal seen at several headings) the head's estimate is their mean."""
    n, h, d = imagined.shape
    flat = imagined.reshape(n * h, d)
    dist = torch.stack([head(flat, g[None]) for g in goal.reshape(-1, d)]).mean(0).reshape(n, h)  # (N, H) steps-to-go
    if kind == "min":
        return (dist + torch.arange(1, h + 1, dtype=dist.dtype)).min(1).values
    if kind == "terminal":
        return dist[:, -1]
    if kind == "mean":
        return dist.mean(1)
    raise ValueError(f"cost must be one of {COSTS}, got {kind!r}")


__all__ = ["COSTS", "imagine", "sequence_cost"]
