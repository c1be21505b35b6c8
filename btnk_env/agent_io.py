"""Loading a saved stable-baselines3 agent without running anything from the file.

``PPO.load`` unpickles (cloudpickle) every ``":serialized:"`` entry of the zip's ``data``, so an
agent file from someone else can run any code. :func:`load_agent` reads the zip itself:

- ``data`` is parsed as JSON and **no** ``":serialized:"`` entry is ever decoded; the few settings a
  policy needs are read from the plain JSON beside them: the policy class (by name, from the
  known list :data:`POLICIES`), the observation space (``Box``: dtype and shape), the action
  space (``Discrete``: ``n``, ``start``), and ``policy_kwargs`` if it is plain JSON (``net_arch``,
  ``ortho_init``, ``share_features_extractor``);
- ``policy.pth`` is read with ``torch.load(weights_only=True)`` and loaded strictly into a policy
  rebuilt from those settings (the optimizer state and the rollout leftovers are not needed to act);
- anything else (another policy class, a custom ``activation_fn`` or features extractor, image or
  dict observations, continuous actions, a pickle in ``policy.pth``) is refused with
  :class:`AgentFileError`, naming what was found.

Example:
    >>> from btnk_env.policies import SHIPPED_AGENT
    >>> agent = load_agent(SHIPPED_AGENT)
    >>> agent.observation_space.shape, int(agent.action_space.n)
    ((192,), 3)
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

from btnk_env.models.errors import BtnkEnvError

__all__ = ["AgentFileError", "LoadedAgent", "load_agent", "POLICIES"]

#: Policy classes that can be rebuilt: ``(module, class name)`` -> import path.
POLICIES = {("stable_baselines3.common.policies", "ActorCriticPolicy"): "stable_baselines3.common.policies.ActorCriticPolicy"}
#: ``policy_kwargs`` read from the file (plain JSON values only).
POLICY_KWARGS = ("net_arch", "ortho_init", "share_features_extractor")
MAX_MEMBER_BYTES = 256 << 20
"""Largest ``data`` / ``policy.pth`` member read (a zip bomb is refused, not inflated)."""

PathLike = Union[str, "os.PathLike[str]"]


class AgentFileError(BtnkEnvError):
    """An agent file cannot be loaded safely; the message says what was found and what to do."""


class LoadedAgent:
    """A policy rebuilt from an agent file; acts like ``PPO.predict``.

    Attributes:
        policy: the stable-baselines3 policy (``ActorCriticPolicy``) in eval mode, on the CPU.
        observation_space, action_space: the spaces read from the file.
    """

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.observation_space = policy.observation_space
        self.action_space = policy.action_space

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> Tuple[np.ndarray, None]:
        """``(D,)`` or ``(n, D)`` observations -> actions (as ``PPO.predict``)."""
        return self.policy.predict(observation, deterministic=deterministic)


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise AgentFileError(f"{path} has no '{name}': not a stable-baselines3 agent saved with model.save()") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise AgentFileError(f"{path}: '{name}' unpacks to {info.file_size} bytes, more than a policy needs; refused")
    return archive.read(name)


def _plain(value: Any, what: str, path: Path) -> Any:
    """``value`` if it holds no serialized (pickled) object anywhere, else refuse."""
    if isinstance(value, dict):
        if ":serialized:" in value:
            raise AgentFileError(
                f"{path}: {what} is a pickled object ({value.get(':type:', '?')}), which is never unpickled here; "
                f"only agents with plain-JSON {what} load (policy_kwargs: {', '.join(POLICY_KWARGS)})"
            )
        return {k: _plain(v, what, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, what, path) for v in value]
    return value


def _policy_class(entry: Any, path: Path) -> Any:
    if not isinstance(entry, dict):
        raise AgentFileError(f"{path}: 'policy_class' is missing from data; not a stable-baselines3 agent")
    module = str(entry.get("__module__"))
    init = str(entry.get("__init__", ""))
    match = re.match(r"<function (\w+)\.__init__ at", init)
    name = match.group(1) if match else None
    if (module, name) not in POLICIES:
        raise AgentFileError(
            f"{path}: the policy class is {module}.{name}; only {sorted(v for v in POLICIES.values())} "
            f"(PPO/A2C 'MlpPolicy') can be rebuilt without unpickling"
        )
    import importlib

    mod, _, cls = POLICIES[(module, name)].rpartition(".")
    return getattr(importlib.import_module(mod), cls)


def _spaces(data: Dict[str, Any], path: Path) -> Tuple[Any, Any]:
    from gymnasium import spaces

    obs, act = data.get("observation_space"), data.get("action_space")
    if not isinstance(obs, dict) or "gymnasium.spaces.box.Box" not in str(obs.get(":type:")):
        raise AgentFileError(f"{path}: the observation space is {obs.get(':type:') if isinstance(obs, dict) else obs!r}; "
                             f"only Box (latent vector) agents load")
    try:
        shape = tuple(int(s) for s in obs["_shape"])
        dtype = np.dtype(str(obs["dtype"]))
    except (KeyError, TypeError, ValueError) as err:
        raise AgentFileError(f"{path}: cannot read the observation space's shape/dtype ({err})") from None
    if dtype.kind != "f" or not shape or any(s < 1 for s in shape) or len(shape) > 3:
        raise AgentFileError(f"{path}: the observation space is Box{shape} {dtype}; only float Box spaces load")
    if not isinstance(act, dict) or "gymnasium.spaces.discrete.Discrete" not in str(act.get(":type:")):
        raise AgentFileError(f"{path}: the action space is {act.get(':type:') if isinstance(act, dict) else act!r}; "
                             f"only Discrete actions load")
    try:
        n, start = int(str(act["n"])), int(str(act.get("start", "0")))
    except (KeyError, TypeError, ValueError) as err:
        raise AgentFileError(f"{path}: cannot read the action space's size ({err})") from None
    if n < 1:
        raise AgentFileError(f"{path}: the action space has n={n} actions")
    return spaces.Box(-np.inf, np.inf, shape, dtype), spaces.Discrete(n, start=start)


def load_agent(path: PathLike, device: str = "cpu") -> LoadedAgent:
    """Rebuild the policy of a stable-baselines3 agent ``.zip`` (``model.save``) without unpickling.

    Raises:
        FileNotFoundError: no such file.
        AgentFileError: not a zip / no ``data`` or ``policy.pth`` / settings that cannot be read
            as plain JSON / a policy, space or ``policy.pth`` content that is not allowed.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no agent at {path}: train one with examples/train_ppo_latents.py --save DIR "
                                f"(it writes DIR/ppo_latents.zip)")
    try:
        with zipfile.ZipFile(path) as archive:
            data_bytes = _read_member(archive, "data", path)
            weights = _read_member(archive, "policy.pth", path)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        if isinstance(err, (PermissionError, IsADirectoryError)):
            raise
        raise AgentFileError(f"{path} is not a readable agent zip ({type(err).__name__}: {err}); save it again") from None
    try:
        data = json.loads(data_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AgentFileError(f"{path}: 'data' is not JSON ({err}); not a stable-baselines3 >= 1.0 agent") from None
    if not isinstance(data, dict):
        raise AgentFileError(f"{path}: 'data' is not a JSON object")
    policy_cls = _policy_class(data.get("policy_class"), path)
    observation_space, action_space = _spaces(data, path)
    if data.get("use_sde"):
        raise AgentFileError(f"{path}: agents trained with use_sde=True are not supported")
    raw_kwargs = _plain(data.get("policy_kwargs") or {}, "policy_kwargs", path)
    if not isinstance(raw_kwargs, dict):
        raise AgentFileError(f"{path}: policy_kwargs is {type(raw_kwargs).__name__}, not an object")
    unknown = sorted(set(raw_kwargs) - set(POLICY_KWARGS))
    if unknown:
        raise AgentFileError(f"{path}: policy_kwargs {unknown} cannot be rebuilt; readable: {list(POLICY_KWARGS)}")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise AgentFileError(f"refusing {path}: its policy.pth holds objects other than tensors, which could run code "
                             f"({str(err).splitlines()[0][:160]})") from None
    except Exception as err:  # noqa: BLE001 - a damaged file fails anywhere in the unpickler
        raise AgentFileError(f"{path}: policy.pth is corrupt ({str(err)[:160]}); save the agent again") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AgentFileError(f"{path}: policy.pth is not a state dict of tensors")
    try:
        policy = policy_cls(observation_space, action_space, lambda _: 0.0, **raw_kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise AgentFileError(f"{path}: the policy settings {raw_kwargs} do not build a policy ({err})") from None
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise AgentFileError(f"{path}: policy.pth does not fit the policy its settings describe: "
                             f"{' '.join(str(err).split())[:300]}") from None
    policy.set_training_mode(False)
    return LoadedAgent(policy.to(device))
