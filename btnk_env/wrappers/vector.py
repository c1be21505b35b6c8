"""``BtnkMAEVectorObservation``: the latent observation wrapper for Gymnasium vector environments,
one batched forward pass over all sub-environments per step, correct under every autoreset mode.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Tuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from btnk_env.wrappers.frames import DeviceLike, LatentSetup, LatentSetupViews, SizeLike, check_model
from btnk_env.models import BtnkMAE

logger = logging.getLogger(__name__)

__all__ = ["BtnkMAEVectorObservation"]


class BtnkMAEVectorObservation(LatentSetupViews, VectorWrapper):
    """Replace the image observations of a vector environment by bottleneck-MAE latents.

    Same options, single observation space and setup (:class:`~btnk_env.wrappers.frames.LatentSetup`)
    as :class:`btnk_env.BtnkMAEObservation`; the
    batched space is ``(num_envs, D)`` (``(num_envs, K, D)`` with ``history=K``, or the batched
    ``Dict``). All sub-environments' frames of a step are encoded in **one** forward pass.

    Autoreset (``env.metadata["autoreset_mode"]``):

    - ``NEXT_STEP`` (Gymnasium's default): the observation of a terminating step is the episode's
      final one, encoded as usual; on the next step the sub-environment resets and its history
      starts afresh.
    - ``SAME_STEP``: ``info["final_obs"]`` holds the final observations of the sub-environments
      that ended (``info["_final_obs"]`` marks them); they are encoded in the same forward pass as
      the step's observations and replaced by their wrapped form (with history: the ending
      episode's history).
    - ``DISABLED``: ``reset(options={"reset_mask": mask})`` re-encodes, and restarts the history
      of, the masked sub-environments only.

    Args:
        env: a vector environment with uint8 RGB image observations (or a ``Dict`` holding one).
        model, image_key, keep_image, keep_aspect, size, history, device, precision, backend: as for
            :class:`btnk_env.BtnkMAEObservation`; ``model`` is shared, never copied.

    Example:
        >>> import gymnasium as gym
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> envs = gym.vector.SyncVectorEnv([lambda: RandomFrames((32, 32, 3))] * 3)
        >>> envs = BtnkMAEVectorObservation(envs, BtnkMAE("test", img_size=32), device="cpu")
        >>> obs, _ = envs.reset(seed=0)
        >>> obs.shape, obs.dtype, envs.single_observation_space.shape
        ((3, 64), dtype('float32'), (64,))
    """

    def __init__(
        self,
        env: VectorEnv,
        model: BtnkMAE,
        *,
        image_key: Optional[str] = None,
        keep_image: bool = False,
        keep_aspect: bool = True,
        size: SizeLike = None,
        history: int = 1,
        device: DeviceLike = None,
        precision: str = "fp32",
        backend: str = "torch",
    ) -> None:
        super().__init__(env)
        owner = type(self).__name__
        if not isinstance(env, VectorEnv):
            raise TypeError(f"{owner} wraps a gymnasium.vector.VectorEnv, got {type(env).__name__}; use BtnkMAEObservation for one env")
        self.model = check_model(model, owner)
        self.setup = LatentSetup.build(
            env.single_observation_space, model, owner, image_key=image_key, keep_image=keep_image,
            keep_aspect=keep_aspect, size=size, history=history, device=device, precision=precision,
            backend=backend,
        )
        self.autoreset_mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if "autoreset_mode" not in env.metadata:
            logger.warning("%s: vector env has no metadata['autoreset_mode']; assuming NEXT_STEP", owner)
        self.single_observation_space = self.setup.observation_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._buffer = np.zeros((self.num_envs, self.history, model.latent_dim), np.float32)  # (N, K, D)
        self._needs_reset = np.zeros(self.num_envs, bool)  # NEXT_STEP: sub-envs whose next obs starts an episode

    # ------------------------------------------------------------------ helpers
    def _frames(self, obs: Any) -> np.ndarray:
        return self.setup.frames(obs)

    def _push(self, latents: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Append ``latents: (M, D)`` to the histories of sub-envs ``rows``; returns ``(M, K, D)``."""
        buf = self._buffer[rows]  # (M, K, D) copy
        buf[:, :-1] = buf[:, 1:]
        buf[:, -1] = latents
        self._buffer[rows] = buf
        return buf

    def _wrap(self, obs: Any, latent: np.ndarray) -> Any:
        """Build a (batched or single) wrapped observation from ``latent: (..., K, D)``."""
        return self.setup.wrap(obs, latent)

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: Any = None, options: Optional[dict[str, Any]] = None) -> Tuple[Any, dict[str, Any]]:
        """Reset (all sub-environments, or those of ``options["reset_mask"]``) and encode them."""
        mask = None
        if options is not None and options.get("reset_mask") is not None:
            mask = np.asarray(options["reset_mask"], bool).copy()
        obs, infos = self.env.reset(seed=seed, options=options)
        rows = np.arange(self.num_envs) if mask is None else np.flatnonzero(mask)
        frames = self._frames(obs)
        latents = self.encoder.encode(frames[rows])  # (M, D), one forward
        self._buffer[rows] = 0.0
        self._push(latents, rows)
        self._needs_reset[rows] = False
        return self._wrap(obs, self._buffer.copy()), infos

    def step(self, actions: Any) -> Tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all sub-environments; their frames (and any final frames) in one forward."""
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        return self.encode_step(obs, rewards, terminations, truncations, infos)

    def encode_step(
        self, obs: Any, rewards: np.ndarray, terminations: np.ndarray, truncations: np.ndarray, infos: dict[str, Any],
        autoreset_mode: Optional[AutoresetMode] = None,
    ) -> Tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Encode what the wrapped env's ``step`` returned (its frames and any final frames in one
        forward) and return it wrapped, as :meth:`step` does. ``autoreset_mode`` (default: the
        env's) says how to read it: :class:`btnk_env.sb3_vec.SB3VecEnv` hands in a ``DISABLED``
        env's step joined with its masked reset as a ``SAME_STEP`` one."""
        mode = self.autoreset_mode if autoreset_mode is None else AutoresetMode(autoreset_mode)
        n = self.num_envs
        frames = self._frames(obs)  # (N, H, W, 3)
        final_rows = np.zeros(0, dtype=np.int64)
        if mode == AutoresetMode.SAME_STEP and "final_obs" in infos:
            marks = infos.get("_final_obs", np.array([o is not None for o in infos["final_obs"]]))
            final_rows = np.flatnonzero(marks)
        if len(final_rows):
            final_frames = np.stack([self._frames(infos["final_obs"][i]) for i in final_rows])
            latents = self.encoder.encode(np.concatenate([frames, final_frames]))  # (N + M, D), one forward
            step_latents, final_latents = latents[:n], latents[n:]
        else:
            step_latents = self.encoder.encode(frames)  # (N, D)

        if len(final_rows):  # the ending episodes' histories, then fresh ones
            final_hist = self._push(final_latents, final_rows)  # (M, K, D)
            final_obs = infos["final_obs"].copy()
            for j, i in enumerate(final_rows):
                final_obs[i] = self._wrap(infos["final_obs"][i], final_hist[j])
            infos = {**infos, "final_obs": final_obs}
            self._buffer[final_rows] = 0.0
        if mode == AutoresetMode.NEXT_STEP:
            self._buffer[self._needs_reset] = 0.0
            self._needs_reset = np.logical_or(terminations, truncations)
        self._push(step_latents, np.arange(n))
        return self._wrap(obs, self._buffer.copy()), rewards, terminations, truncations, infos
