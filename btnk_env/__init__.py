"""btnk-env: the bottleneck MAE as a perception component for Gymnasium environments.

Public names are imported lazily, so ``import btnk_env`` stays fast and an optional
dependency of one part (habitat-sim, moderngl, stable-baselines3) never breaks another.

Importing ``btnk_env`` registers the built-in environments with Gymnasium
(``gymnasium.make("btnk_env/PanoramaRooms-v0")``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "BtnkMAE": "btnk_env.models",
    "frames_to_tensor": "btnk_env.models",
    "LatentDynamics": "btnk_env.models.dynamics",
    "BtnkMAEObservation": "btnk_env.wrappers",
    "BtnkMAEVectorObservation": "btnk_env.wrappers",
    "BtnkMAEFeaturesExtractor": "btnk_env.sb3",
    "ResizeForModel": "btnk_env.wrappers",
    "btnk_policy_kwargs": "btnk_env.sb3",
    "PanoramaRoomsEnv": "btnk_env.envs.panorama_rooms",
    "HabitatPanoramaEnv": "btnk_env.envs.habitat",
    "collect_panoramas": "btnk_env.collection",
    "decode_rollout": "btnk_env.video",
    "load_latents": "btnk_env.video",
    "interpolate_latents": "btnk_env.video",
    "write_video": "btnk_env.video.io",
    "comparison_frames": "btnk_env.video.layout",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'btnk_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def _register_envs() -> None:
    from gymnasium.envs.registration import register, registry

    if "btnk_env/PanoramaRooms-v0" not in registry:
        register(
            id="btnk_env/PanoramaRooms-v0",
            entry_point="btnk_env.envs.panorama_rooms:PanoramaRoomsEnv",
            max_episode_steps=500,
        )


_register_envs()
