"""Panorama environments: the built-in procedural apartments and the Habitat-Sim adapter.

- :class:`btnk_env.envs.panorama_rooms.PanoramaRoomsEnv` (``gymnasium.make("btnk_env/PanoramaRooms-v0")``)
- :class:`btnk_env.envs.habitat.HabitatPanoramaEnv` (needs habitat-sim, installed with conda)

Both return ``(H, 2H, 3)`` uint8 equirectangular panoramas and share the pose methods
``sample_navigable_pose``, ``set_pose`` and ``get_pose`` used by :mod:`btnk_env.collection`.
Submodules are imported on use, so that importing this package needs neither moderngl nor
habitat-sim.
"""
