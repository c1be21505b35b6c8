"""The video of a planned episode: the executed view beside the goal view, and below them the context the
planner imagined from (decoded, framed green) and the plan it chose (imagined, decoded with
:func:`btnk_env.video.decode_rollout`, framed red), one video frame per step, as ``btnk-env imagine`` shows
them. Written by ``btnk-env plan --out`` and ``btnk-env demo --plan``.
"""

from __future__ import annotations

import numpy as np


def plan_video(env, planner, encoder, seed: int, goal_frame: np.ndarray, max_steps: int):
    """One episode; returns ``(video (T, H', W', 3) uint8, steps, success)``, one video frame per step."""
    import torch

    from btnk_env.imagine import encode_frames
    from btnk_env.video import decode_rollout
    from btnk_env.video.layout import comparison_strip
    from btnk_env.models import resize_frames

    obs = env.render()
    planner.reset_to_view(goal_frame, encoder, seed=seed)
    video, success = [], False
    goal_small = None
    for _ in range(max_steps):
        action = planner.act(encode_frames(encoder, np.asarray(obs)[None])[0])
        z, _ = planner.context_now()
        decoded = decode_rollout(encoder, torch.cat([z, planner.last_imagined]))[0]  # (K + H, h, w, 3)
        k = len(z)
        shown = sorted(set(np.linspace(k, len(decoded) - 1, min(6, len(decoded) - k)).round().astype(int).tolist()))
        strip = comparison_strip(decoded, context=k, steps=list(range(k)) + shown, psnr_caption=False)
        if goal_small is None:
            goal_small = resize_frames(goal_frame[None], decoded.shape[1:3])[0]
        top = np.concatenate([resize_frames(np.asarray(obs)[None], decoded.shape[1:3])[0], goal_small], 1)
        video.append(_stack(top, strip))
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            success = bool(terminated)
            break
    return np.stack(video), len(video), success


def _stack(top: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """``top`` (the executed view beside the goal view) scaled 2x above ``strip``, padded to one width."""
    top = top.repeat(2, 0).repeat(2, 1)
    width = max(top.shape[1], strip.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)))  # noqa: E731
    return np.concatenate([pad(top), np.zeros((4, width, 3), np.uint8), pad(strip)], 0)


__all__ = ["plan_video"]
