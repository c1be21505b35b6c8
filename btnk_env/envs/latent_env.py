"""The latent-observation environment a latent dataset was recorded from: a panorama world
wrapped by :class:`btnk_env.BtnkMAEObservation` with the encoder that made the latents.

:func:`make_latent_env` is the entry point of the ``env_spec`` that the Minari export stores, so
``minari.load_dataset(ID).recover_environment()`` gives back that environment. The encoder is
loaded by name or path and checked against the dataset's weight hash: other weights would give
other latents than the data, so they are refused.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import gymnasium as gym

from btnk_env.models.errors import BtnkEnvError

__all__ = ["ENTRY_POINT", "make_latent_env", "world_env_spec"]

ENTRY_POINT = "btnk_env.envs.latent_env:make_latent_env"
WORLDS = {"PanoramaRoomsEnv": "btnk_env.envs.panorama_rooms:PanoramaRoomsEnv",
          "HabitatPanoramaEnv": "btnk_env.envs.habitat:HabitatPanoramaEnv"}
"""The recorded environment classes (``collection.env`` of an episode dataset) and their entry points."""


def make_latent_env(
    world: str, world_kwargs: dict, model: str, model_sha256: Optional[str] = None,
    size: Optional[Sequence[int]] = None, precision: str = "fp32", **kwargs: Any,
) -> gym.Env:
    """``world`` (an entry point of :data:`WORLDS`) built with ``world_kwargs``, wrapped with the
    encoder ``model`` (``BtnkMAE.from_pretrained`` name or path) at input ``size`` ``(H, W)``.

    ``model_sha256`` (the dataset's ``model_sha256``): the loaded weights must hash to it.
    ``kwargs`` (``gym.make(spec, ...)`` overrides, e.g. ``render_mode``) go to the world.
    Observations: ``Box(-inf, inf, (D,), float32)`` latents, as in the dataset.
    """
    from btnk_env.wrappers import BtnkMAEObservation
    from btnk_env.models import BtnkMAE
    from btnk_env.models.identity import model_sha256 as sha256_of  # the hash the latent dataset stores

    env = gym.envs.registration.load_env_creator(world)(**{**world_kwargs, **kwargs})
    encoder = BtnkMAE.from_pretrained(model)
    if model_sha256 is not None and sha256_of(encoder) != model_sha256:
        raise BtnkEnvError(
            f"the encoder {model!r} now has other weights than the ones the dataset was encoded with "
            f"(sha256 {model_sha256[:12]}...): recover_environment needs that model; pass model=PATH to a copy of it"
        )
    return BtnkMAEObservation(env, encoder, size=tuple(size) if size else None, precision=precision)


def world_env_spec(collection: dict, scenes: Sequence[str], model: str, model_sha256: str, size: Sequence[int],
                   precision: str, spec_id: str) -> Optional[gym.envs.registration.EnvSpec]:
    """The ``EnvSpec`` of the latent environment episodes were recorded in, from the episode
    dataset's ``collection`` settings (``env``, ``world``, ``height``, ``max_steps``) and the
    episodes' ``scenes``; ``None`` when it cannot be rebuilt (an unknown environment class, or a
    model held in memory only: no name or path to load it by).

    For Habitat the spec names the scene file the episodes ran in (one scene only): recovering
    the environment needs habitat-sim and that file at the same path.
    """
    env = collection.get("env")
    if env not in WORLDS or model.startswith("BtnkMAE (in memory)"):
        return None
    world_kwargs: dict = {"height": int(collection["height"])}
    if env == "PanoramaRoomsEnv":
        world_kwargs["world"] = collection.get("world") or "apartment"
    else:
        if len(set(scenes)) != 1:
            return None
        world_kwargs["scene"] = str(scenes[0])
    return gym.envs.registration.EnvSpec(
        id=spec_id, entry_point=ENTRY_POINT, max_episode_steps=int(collection["max_steps"]),
        kwargs=dict(world=WORLDS[env], world_kwargs=world_kwargs, model=model, model_sha256=model_sha256,
                    size=[int(s) for s in size], precision=precision),
    )
