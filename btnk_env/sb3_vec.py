"""stable-baselines3 on a Gymnasium vector environment: :class:`SB3VecEnv`, an SB3 ``VecEnv``
over a ``gymnasium.vector.VectorEnv``, so that ``PPO``/``A2C`` get the latents of
:class:`btnk_env.BtnkMAEVectorObservation` with one encoder forward per vector step (SB3's
``DummyVecEnv`` of single-env wrappers runs one forward per sub-environment).

:func:`latent_vec_env` builds the whole stack from environment factories.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import iterate
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from btnk_env.wrappers.spaces import LATENT_KEY
from btnk_env.wrappers.vector import BtnkMAEVectorObservation
from btnk_env.models import BtnkMAE

__all__ = ["SB3VecEnv", "latent_vec_env"]


class SB3VecEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` seen as a stable-baselines3 ``VecEnv``.

    stable-baselines3 expects a sub-environment that ends to be reset in the same step: the
    returned observation starts the next episode and ``infos[i]["terminal_observation"]`` holds
    the final one (with ``infos[i]["TimeLimit.truncated"]`` for time limits). By autoreset mode
    (``env.metadata["autoreset_mode"]``):

    - ``SAME_STEP``: that is Gymnasium's ``info["final_obs"]``; the vector latent wrapper encodes
      the final frames in the step's forward (one forward per step).
    - ``DISABLED``: the ended sub-environments are reset with ``reset_mask`` in the same step.
      On a :class:`~btnk_env.BtnkMAEVectorObservation` the step's frames, the final frames and
      the reset frames are encoded in one forward; on another vector env, its own ``reset``.
    - ``NEXT_STEP`` (Gymnasium's default) resets a sub-environment one step *after* it ended,
      ignoring that step's action: stable-baselines3 would record it as a transition, so it is
      refused (a ``ValueError`` naming the fix: build the vector env with ``SAME_STEP``).

    Gymnasium's batched ``infos`` (arrays with ``_key`` masks) become SB3's list of per-env
    dicts; an ended sub-environment's dict is its final step's info.

    Args:
        env: a ``gymnasium.vector.VectorEnv``, usually a :class:`~btnk_env.BtnkMAEVectorObservation`.
        flatten: flatten a ``(K, D)`` latent history (``history=K``; the ``"latent"`` entry of a
            ``Dict``) to ``(K * D,)``, the flat vector SB3's ``MlpPolicy`` expects.

    Example:
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> venv = gym.vector.SyncVectorEnv([lambda: RandomFrames((32, 32, 3))] * 2, autoreset_mode=AutoresetMode.SAME_STEP)
        >>> venv = SB3VecEnv(BtnkMAEVectorObservation(venv, BtnkMAE("test", img_size=32), history=2))
        >>> venv.observation_space.shape, venv.reset().shape
        ((128,), (2, 128))
    """

    def __init__(self, env: VectorEnv, *, flatten: bool = True) -> None:
        if not isinstance(env, VectorEnv):
            raise TypeError(f"SB3VecEnv wraps a gymnasium.vector.VectorEnv, got {type(env).__name__}")
        mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode == AutoresetMode.NEXT_STEP:
            raise ValueError(
                "SB3VecEnv needs a vector env with autoreset_mode SAME_STEP or DISABLED, got NEXT_STEP (a sub-env resets "
                "one step after it ends, which stable-baselines3 would learn from as a transition); build it with "
                "gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP) "
                "or use btnk_env.sb3_vec.latent_vec_env"
            )
        self.env = env
        self.autoreset_mode = mode
        self.flatten = bool(flatten)
        # a DISABLED env directly under the latent wrapper: step + masked reset, one forward
        self._joined_reset = mode == AutoresetMode.DISABLED and isinstance(env, BtnkMAEVectorObservation)
        super().__init__(env.num_envs, _flat_space(env.single_observation_space, self.flatten), env.single_action_space)
        self._actions: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ observations and infos
    def _obs(self, obs: Any, batched: bool = True) -> Any:
        """Wrapped observations (a batch, or one with ``batched=False``), the latent history
        flattened if asked: ``(N, K, D)`` -> ``(N, K*D)``."""
        if not self.flatten:
            return obs
        keep = 2 if batched else 1
        if isinstance(obs, dict):
            return {**obs, LATENT_KEY: _flat(obs[LATENT_KEY], keep)}
        return _flat(obs, keep)

    def _infos(self, infos: dict, terminations: np.ndarray, truncations: np.ndarray) -> List[dict]:
        """Gymnasium's batched step ``infos`` -> SB3's per-env list (final info and observation
        of the sub-envs that ended)."""
        out = unbatch_infos(infos, self.num_envs)
        final_info = infos.get("final_info")
        final_obs = infos.get("final_obs")
        marks = infos.get("_final_obs", np.zeros(self.num_envs, bool))
        finals = unbatch_infos(final_info, self.num_envs) if isinstance(final_info, dict) else None
        for i in np.flatnonzero(np.logical_or(terminations, truncations)):
            info = finals[i] if finals is not None else out[i]
            if marks[i]:
                info["terminal_observation"] = self._obs(final_obs[i], batched=False)
            info["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
            out[i] = info
        return out

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> Any:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options and all(o == self._options[0] for o in self._options) else None
        obs, infos = self.env.reset(seed=seeds, options=dict(options) if options else None)
        self.reset_infos = unbatch_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return self._obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> Any:
        if self._joined_reset:
            obs, rewards, terminations, truncations, infos = self._step_and_reset_joined(self._actions)
        else:
            obs, rewards, terminations, truncations, infos = self.env.step(self._actions)
            done = np.logical_or(terminations, truncations)
            if self.autoreset_mode == AutoresetMode.DISABLED and done.any():
                infos = {**infos, "final_obs": _rows(self.env.single_observation_space, obs, self.num_envs), "_final_obs": done}
                obs, _ = self.env.reset(options={"reset_mask": done})
        dones = np.logical_or(terminations, truncations)
        return self._obs(obs), np.asarray(rewards, np.float32), dones, self._infos(infos, terminations, truncations)

    def _step_and_reset_joined(self, actions: np.ndarray) -> tuple:
        """DISABLED under the latent wrapper: step the raw env, reset the ended sub-envs, and
        let the wrapper encode both as one SAME_STEP step (one forward)."""
        wrapper: BtnkMAEVectorObservation = self.env  # type: ignore[assignment]
        raw = wrapper.env
        obs, rewards, terminations, truncations, infos = raw.step(actions)
        done = np.logical_or(terminations, truncations)
        if done.any():
            infos = {**infos, "final_obs": _rows(raw.single_observation_space, obs, raw.num_envs), "_final_obs": done}
            obs, _ = raw.reset(options={"reset_mask": done})
        return wrapper.encode_step(obs, rewards, terminations, truncations, infos, autoreset_mode=AutoresetMode.SAME_STEP)

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> List[Any]:
        values = self.env.unwrapped.get_attr(attr_name)
        return [values[i] for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        values = list(self.env.unwrapped.get_attr(attr_name))
        for i in self._get_indices(indices):
            values[i] = value
        self.env.unwrapped.set_attr(attr_name, values)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> List[Any]:
        return [getattr(e, method_name)(*method_args, **method_kwargs) for e in self._sub_envs(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> List[bool]:
        return [is_wrapped(e, wrapper_class) for e in self._sub_envs(indices)]

    def get_images(self) -> Sequence[Optional[np.ndarray]]:
        return [e.render() for e in self._sub_envs(None)]

    def _sub_envs(self, indices: Any) -> List[gym.Env]:
        envs = getattr(self.env.unwrapped, "envs", None)
        if envs is None:
            raise NotImplementedError(f"{type(self.env.unwrapped).__name__} does not expose its sub-environments (a SyncVectorEnv does)")
        return [envs[i] for i in self._get_indices(indices)]


def latent_vec_env(
    env_fns: Sequence[Callable[[], gym.Env]], model: BtnkMAE, *, flatten: bool = True, monitor: bool = True,
    **wrapper_kwargs: Any,
) -> VecEnv:
    """``env_fns`` -> SB3 ``VecEnv`` of latents: ``SyncVectorEnv`` (``SAME_STEP``) ->
    :class:`~btnk_env.BtnkMAEVectorObservation` (``wrapper_kwargs``: ``history``, ``size``,
    ``precision``, ...) -> :class:`SB3VecEnv` -> ``VecMonitor`` (episode returns for SB3's logs).

    Example:
        >>> from btnk_env.testing import RandomFrames
        >>> from models import BtnkMAE
        >>> venv = latent_vec_env([lambda: RandomFrames((32, 32, 3))] * 4, BtnkMAE("test", img_size=32))
        >>> venv.num_envs, venv.observation_space.shape
        (4, (64,))
    """
    vector = SyncVectorEnv(list(env_fns), autoreset_mode=AutoresetMode.SAME_STEP)
    venv: VecEnv = SB3VecEnv(BtnkMAEVectorObservation(vector, model, **wrapper_kwargs), flatten=flatten)
    return VecMonitor(venv) if monitor else venv


def unbatch_infos(infos: dict, n: int) -> List[dict]:
    """Gymnasium's batched ``infos`` (``{key: array, "_key": mask}``, nested dicts alike) -> one
    dict per sub-environment, holding the keys its mask marks."""
    out: List[dict] = [{} for _ in range(n)]
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = infos.get(f"_{key}", np.ones(n, bool))
        rows = unbatch_infos(value, n) if isinstance(value, dict) else value
        for i in np.flatnonzero(mask):
            out[i][key] = rows[i]
    return out


def _rows(space: spaces.Space, batch: Any, n: int) -> np.ndarray:
    """A batch of ``n`` observations -> an object array of the sub-environments' observations."""
    rows = np.empty(n, dtype=object)
    for i, obs in enumerate(iterate(space, batch)):
        rows[i] = obs
    return rows


def _flat(latent: np.ndarray, keep: int) -> np.ndarray:
    """``latent`` with its dimensions after the first ``keep - 1`` joined: ``(N, K, D)`` -> ``(N, K*D)``."""
    return latent.reshape(*latent.shape[: keep - 1], -1)


def _flat_space(space: spaces.Space, flatten: bool) -> spaces.Space:
    """The single observation space SB3 sees (the latent ``Box`` flattened if asked)."""
    if not flatten:
        return space
    if isinstance(space, spaces.Dict):
        return spaces.Dict({**space.spaces, LATENT_KEY: _flat_space(space[LATENT_KEY], True)})
    return spaces.Box(-np.inf, np.inf, (int(np.prod(space.shape)),), space.dtype)
