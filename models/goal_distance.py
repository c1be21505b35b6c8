"""A goal-distance head: how many actions separate a latent from a goal view's latent.

:class:`GoalDistance` maps two latents of the same encoder, ``z`` (where the agent is) and ``g`` (a view
taken at the goal, at any heading), to the estimated number of actions of the shortest path from ``z``'s
pose to the goal (``steps-to-go``, clipped at ``max_steps``). It is the planning cost of
:mod:`btnk_env.planning`: a single-vector latent's plain distance to the goal view tracks the metric
distance poorly, a regressor trained on shortest-path lengths knows where the goal is.

Both latents are standardized with the training latents' mean and std (buffers saved with the weights);
the trunk is an MLP over ``[z, g, z - g, z * g]`` and a softplus keeps the output non-negative.

The config records the encoder's and the dynamics model's parameter hashes: the head is trained on that
encoder's latents and on that dynamics model's imagined latents, and :meth:`GoalDistance.check_compatible`
refuses any other pair. ``models/`` imports nothing from ``btnk_env`` or ``training``.

Example:
    >>> import torch
    >>> head = GoalDistance(GoalDistanceConfig(latent_dim=8, width=16, depth=2))
    >>> head(torch.randn(5, 8), torch.randn(5, 8)).shape
    torch.Size([5])
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from btnk_env.models.dynamics import DynamicsMismatchError, config_from_dict
from btnk_env.models.files import atomic_path, atomic_write_text, claim_dir

PathLike = Union[str, "os.PathLike[str]"]

#: Goal-distance heads shipped inside this package: name -> folder in ``models/weights``.
BUNDLED_GOAL_DISTANCE = {"panorama-rooms-small-goal-distance": "panorama_rooms_small_goal_distance"}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass
class GoalDistanceConfig:
    """Sizes of a :class:`GoalDistance` and what it was trained with (saved as ``config.json``)."""

    latent_dim: int = 192
    width: int = 256
    depth: int = 3
    max_steps: float = 30.0
    """Targets are clipped here: farther than this is "far"."""
    encoder: str = ""
    encoder_sha256: str = ""
    """Parameter hash (:func:`btnk_env.models.identity.model_sha256`) of the encoder whose latents it reads."""
    dynamics: str = ""
    dynamics_sha256: str = ""
    """Parameter hash of the dynamics model whose imagined latents it was trained on."""

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.width, self.depth) < 1 or self.max_steps <= 0:
            raise ValueError("latent_dim, width and depth must be >= 1 and max_steps > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GoalDistanceConfig":
        return config_from_dict(cls, values, "goal-distance")


class GoalDistance(nn.Module):
    """``(z (B, D), g (B, D)) -> (B,)`` float32 estimated actions from ``z`` to the goal seen in ``g``."""

    def __init__(self, config: GoalDistanceConfig) -> None:
        super().__init__()
        self.config = c = config
        self.register_buffer("latent_mean", torch.zeros(c.latent_dim))
        self.register_buffer("latent_std", torch.ones(c.latent_dim))
        layers, width = [], 4 * c.latent_dim
        for _ in range(c.depth):
            layers += [nn.Linear(width, c.width), nn.GELU()]
            width = c.width
        self.trunk = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1)

    @torch.no_grad()
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension ``(D,)`` mean and standard deviation of the training latents."""
        self.latent_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.latent_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def forward(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``z (B, D)``, ``g (B, D)`` (or ``(1, D)``, broadcast) float -> ``(B,)`` steps-to-go >= 0."""
        zs = (z.float() - self.latent_mean) / self.latent_std  # (B, D)
        gs = ((g.float() - self.latent_mean) / self.latent_std).expand_as(zs)
        h = self.trunk(torch.cat([zs, gs, zs - gs, zs * gs], -1))  # (B, W)
        return F.softplus(self.out(h)[..., 0])

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: PathLike) -> Path:
        """Write ``model.safetensors`` (float32) and ``config.json``, each atomically."""
        from safetensors.torch import save_file

        folder = claim_dir(folder, "goal-distance-head", "choose a new folder for the head")
        state = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_text(folder / "config.json", json.dumps(self.config.to_dict(), indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, name_or_path: PathLike) -> "GoalDistance":
        """Load a :meth:`save_pretrained` folder or a bundled name (:data:`BUNDLED_GOAL_DISTANCE`), in eval mode."""
        from safetensors.torch import load_file

        folder = Path(name_or_path)
        if str(name_or_path) in BUNDLED_GOAL_DISTANCE:
            folder = WEIGHTS_DIR / BUNDLED_GOAL_DISTANCE[str(name_or_path)]
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{name_or_path}: not a goal-distance head folder (config.json + model.safetensors) "
                                    f"nor a bundled head {sorted(BUNDLED_GOAL_DISTANCE)}")
        model = cls(GoalDistanceConfig.from_dict(json.loads((folder / "config.json").read_text())))
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return model.eval()

    def check_compatible(self, latent_dim: int, encoder_sha256: Optional[str] = None,
                         dynamics_sha256: Optional[str] = None) -> None:
        """Raise :class:`btnk_env.models.dynamics.DynamicsMismatchError` if the latent width, the encoder's or
        (when given) the dynamics model's parameter hash differ from what this head was trained on."""
        c = self.config
        if int(latent_dim) != c.latent_dim:
            raise DynamicsMismatchError(f"the goal-distance head reads {c.latent_dim}-d latents but the encoder gives "
                                        f"{latent_dim}-d; use the encoder it was trained on ({c.encoder or 'see its config.json'})")
        for what, given, own in (("encoder", encoder_sha256, c.encoder_sha256), ("dynamics model", dynamics_sha256, c.dynamics_sha256)):
            if given and own and given != own:
                raise DynamicsMismatchError(
                    f"the goal-distance head was trained with the {what} of parameter hash {own[:12]}..., this one is "
                    f"{given[:12]}...; retrain the head (btnk-env train-goal-distance) for this {what}")


__all__ = ["BUNDLED_GOAL_DISTANCE", "GoalDistance", "GoalDistanceConfig"]
