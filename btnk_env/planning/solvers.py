"""Solvers over sequences of discrete actions: random shooting, the cross-entropy method and MPPI.

A solver minimises ``cost(actions (N, H) int64) -> (N,) float`` over action sequences of horizon ``H``
with ``A`` discrete actions. Each iteration draws ``N`` sequences from a per-step categorical
distribution ``(H, A)`` and evaluates them in **one** call of ``cost`` (one batched imagination), then
refits the distribution: CEM to the frequencies of the ``elites`` cheapest sequences, MPPI to the
frequencies weighted by ``exp(-(cost - min) / temperature)``. Random shooting draws once, uniformly.
``warm`` (the previous plan shifted by one step, receding horizon) seeds the distribution and is always
among the candidates, so a replanned sequence is never worse than the remainder of the last one.

Example:
    >>> import torch
    >>> target = torch.tensor([2, 0, 1])
    >>> cost = lambda a: (a != target).sum(1).float()
    >>> CEM(samples=64, iterations=4).solve(cost, horizon=3, num_actions=3, rng=torch.Generator().manual_seed(0))[0].tolist()
    [2, 0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

Cost = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Solver:
    samples: int = 128
    iterations: int = 3
    elites: int = 12
    temperature: float = 0.5
    smoothing: float = 0.1
    """Floor mixed into each refitted distribution (keeps every action possible)."""
    kind = "solver"

    def solve(self, cost: Cost, horizon: int, num_actions: int, rng: torch.Generator,
              warm: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, float]:
        """Returns ``(best actions (H,) int64, its cost)``."""
        probs = torch.full((horizon, num_actions), 1.0 / num_actions)
        if warm is not None and self.iterations > 1:
            probs = 0.5 * probs + 0.5 * torch.nn.functional.one_hot(warm, num_actions).float()
        best, best_cost = None, float("inf")
        for _ in range(max(1, self.iterations)):
            seqs = torch.multinomial(probs, self.samples, replacement=True, generator=rng).T  # (N, H)
            if warm is not None:
                seqs[0] = warm
            if best is not None:
                seqs[1] = best
            costs = cost(seqs).float()  # (N,)
            i = int(torch.argmin(costs))
            if float(costs[i]) < best_cost:
                best, best_cost = seqs[i].clone(), float(costs[i])
            weights = self.weights(costs)  # (N,)
            freq = torch.zeros(horizon, num_actions).scatter_add_(1, seqs.T, weights[None].expand(horizon, -1))
            probs = (1 - self.smoothing) * freq / freq.sum(1, keepdim=True) + self.smoothing / num_actions
        return best, best_cost

    def weights(self, costs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class RandomShooting(Solver):
    """Uniform samples, the cheapest kept (one iteration)."""

    kind = "random"

    def __init__(self, samples: int = 128, **_) -> None:
        super().__init__(samples=samples, iterations=1)

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(costs)


class CEM(Solver):
    """The cross-entropy method: refit to the ``elites`` cheapest samples."""

    kind = "cem"

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        w = torch.zeros_like(costs)
        w[torch.topk(costs, min(self.elites, len(costs)), largest=False).indices] = 1.0
        return w


class MPPI(Solver):
    """Model-predictive path integral: refit with weights ``exp(-(cost - min) / temperature)``."""

    kind = "mppi"

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(costs - costs.min()) / self.temperature)


SOLVERS = {"cem": CEM, "mppi": MPPI, "random": RandomShooting}


def make_solver(kind: str, **kwargs) -> Solver:
    if kind not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {kind!r}")
    return SOLVERS[kind](**kwargs)


__all__ = ["CEM", "MPPI", "RandomShooting", "SOLVERS", "Solver", "make_solver"]
