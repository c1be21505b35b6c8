"""Open-loop imagination with any one-step latent dynamics, and the copy-last baseline.

A *step* is ``step(latents (B, K, D), actions (B, K)) -> next latents (B, D)``: the learned
:class:`btnk_env.models.dynamics.LatentDynamics`, a ridge baseline, or :func:`copy_last`. :func:`imagine`
rolls one forward open loop; the evaluation (``btnk-env eval-dynamics``) and the planner
(:mod:`btnk_env.planning`) both imagine through it.

Example:
    >>> import torch
    >>> z = torch.arange(6.).reshape(1, 2, 3)              # (B=1, K=2, D=3)
    >>> imagine(copy_last, z, torch.zeros(1, 4, dtype=torch.long)).shape  # K - 1 + H = 4 -> H = 3
    torch.Size([1, 3, 3])
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["Step", "copy_last", "imagine"]

#: step(latents (B, K, D), actions (B, K)) -> next latents (B, D)
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def copy_last(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The baseline "nothing changes": the last latent."""
    return z[:, -1]


@torch.no_grad()
def imagine(step: Step, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Open loop: ``context (B, K, D)``, ``actions (B, K - 1 + H)`` (the context's actions, then the
    ``H`` to imagine, the first taken at ``context[:, -1]``) -> ``(B, H, D)``."""
    k = context.shape[1]
    z, a = context.float(), actions[:, :k].long()
    out = []
    for i in range(actions.shape[1] - k + 1):
        nxt = step(z, a)
        out.append(nxt)
        z = torch.cat([z[:, 1:], nxt[:, None]], 1)
        if k + i < actions.shape[1]:
            a = torch.cat([a[:, 1:], actions[:, k + i:k + i + 1].long()], 1)
    return torch.stack(out, 1)
