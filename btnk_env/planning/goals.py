"""Goals of the planner: a goal image, a latent, or a position in the built-in world rendered to a view.

Heading does not matter for reaching a position: a pose goal is rendered at a heading of the caller's
choice (by default a random one), and the goal-distance head is trained on goal views at random headings.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def goal_view(env, position: Sequence[float], heading: float) -> np.ndarray:
    """The panorama seen from ``position`` (``(x, z)`` or ``(x, y, z)`` metres) at ``heading`` radians in a
    built-in world; the agent's pose is put back afterwards, so the episode goes on unchanged.

    Returns:
        ``(H, 2H, 3)`` uint8.
    """
    u = env.unwrapped
    pose = u.get_pose()
    view = u.set_pose(position, heading)
    u.set_pose(*pose)
    return np.asarray(view["rgb"] if isinstance(view, dict) else view, dtype=np.uint8)


def goal_latents(encoder, image: np.ndarray, rolls: int = 1):
    """A goal image's latent, and with ``rolls > 1`` those of the image rolled to ``rolls`` headings.

    A panorama turned by ``2 pi k / rolls`` is the image rolled by ``k W / rolls`` columns: the same place,
    seen turned, with no access to the world (heading does not matter for reaching a position).

    Args:
        image: ``(H, W, 3)`` uint8, a 360-degree panorama.

    Returns:
        ``(rolls, D)`` float32.
    """
    from btnk_env.imagine import encode_frames

    return encode_frames(encoder, rolled_views(image, rolls))


def rolled_views(image: np.ndarray, rolls: int) -> np.ndarray:
    """``(H, W, 3)`` -> ``(rolls, H, W, 3)`` uint8: the panorama turned by ``-2 pi k / rolls``, ``k = 0 .. rolls - 1``."""
    w = image.shape[1]
    return np.stack([np.roll(np.asarray(image, np.uint8), -round(k * w / rolls), axis=1) for k in range(max(1, int(rolls)))])


def goal_latent(goal, encoder, env=None, rng: Optional[np.random.Generator] = None):
    """The goal as a latent ``(D,)`` float32 tensor.

    Args:
        goal: a latent ``(D,)`` (tensor or array of floats), a goal image ``(H, W, 3)`` uint8, or a pose
            ``{"position": (x, z) or (x, y, z), "heading": optional radians}`` of the built-in world ``env``
            (rendered with :func:`goal_view`, at a heading drawn from ``rng`` when none is given).
    """
    import torch

    from btnk_env.imagine import encode_frames

    if isinstance(goal, dict):
        if env is None:
            raise ValueError("a pose goal needs the built-in world to render its view")
        heading = goal.get("heading")
        if heading is None:
            heading = float((rng or np.random.default_rng()).uniform(-np.pi, np.pi))
        goal = goal_view(env, goal["position"], float(heading))
    arr = goal if isinstance(goal, torch.Tensor) else np.asarray(goal)
    if arr.ndim == 1:
        return torch.as_tensor(arr, dtype=torch.float32)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"a goal is a latent (D,), an image (H, W, 3) or a pose dict; got shape {tuple(arr.shape)}")
    return encode_frames(encoder, np.asarray(arr, np.uint8)[None])[0]


__all__ = ["goal_latent", "goal_latents", "goal_view", "rolled_views"]
