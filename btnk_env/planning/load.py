"""Load the planner's three models and check that they belong together, before any work."""

from __future__ import annotations

from typing import Optional

DEFAULT_HEAD = "panorama-rooms-small-goal-distance"


def load_models(dynamics: str = "panorama-rooms-small-dynamics", head: str = DEFAULT_HEAD,
                encoder: Optional[str] = None, num_actions: int = 3):
    """``(dynamics, head, encoder)``, checked: the dynamics model against the encoder and the world's
    actions (:func:`btnk_env.imagine.load_pair`), the goal-distance head against both models' parameter
    hashes.

    Raises:
        btnk_env.models.dynamics.DynamicsMismatchError: a pair that was not trained together.
    """
    from btnk_env.imagine import load_pair
    from btnk_env.models.goal_distance import GoalDistance
    from btnk_env.models.identity import model_sha256

    dyn, enc = load_pair(dynamics, encoder, num_actions)
    gd = GoalDistance.from_pretrained(head)
    gd.check_compatible(enc.latent_dim, model_sha256(enc), model_sha256(dyn))
    return dyn, gd, enc


__all__ = ["DEFAULT_HEAD", "load_models"]
