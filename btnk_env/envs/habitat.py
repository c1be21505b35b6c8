"""``HabitatPanoramaEnv``: the panorama environment contract on top of Habitat-Sim scenes.

habitat-sim is optional and installed with conda (there is no pip wheel for most Pythons)::

    conda install habitat-sim -c conda-forge -c aihabitat            # with a display
    conda install habitat-sim headless -c conda-forge -c aihabitat   # servers without one

It is imported only when the environment is created.
"""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from btnk_env.envs.panorama_rooms import panorama_observation_space
from btnk_env.envs.task import PointGoalTask, pick_goal

__all__ = ["HabitatPanoramaEnv", "import_habitat_sim", "INSTALL_HINT"]

INSTALL_HINT = (
    "HabitatPanoramaEnv needs habitat-sim, which is installed with conda: "
    "`conda install habitat-sim -c conda-forge -c aihabitat` "
    "(on a server without a display: `conda install habitat-sim headless -c conda-forge -c aihabitat`). "
    "The built-in btnk_env/PanoramaRooms-v0 needs no extra install."
)
ACTIONS = ("move_forward", "turn_left", "turn_right")


def import_habitat_sim():
    """Import habitat_sim, or raise ImportError saying how to install it."""
    try:
        import habitat_sim
        import habitat_sim.agent  # noqa: F401
        import habitat_sim.utils.common  # noqa: F401
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return habitat_sim


class HabitatPanoramaEnv(PointGoalTask, gym.Env):
    """Point-goal navigation in a Habitat-Sim scene, observed through equirectangular panoramas.

    Same contract as :class:`~btnk_env.envs.panorama_rooms.PanoramaRoomsEnv`: observation
    ``(H, 2H, 3)`` uint8 RGB (Habitat's RGBA with alpha dropped) from an
    ``EquirectangularSensorSpec`` ``sensor_height`` metres above the agent, or with ``depth`` a
    dict with ``"depth"`` ``(H, 2H, 1)`` float32 metres; actions ``Discrete(3)``: 0
    ``move_forward``, 1 ``turn_left``, 2 ``turn_right`` (Habitat's own action names, with
    ``forward_step`` metres and ``turn_degrees`` degrees); the same pose methods
    (``sample_navigable_pose``, ``set_pose``, ``get_pose``) and ``info`` keys (all but
    ``layout_seed``; ``scene`` is the scene file's stem). ``reset(options={"scene": path})``
    switches scenes. The reward uses
    the geodesic distance to the goal (Habitat's pathfinder). Unlike the built-in world the goal is
    not drawn in the scene: give it to the agent from ``info["goal_position"]``.

    Args:
        scene: a scene file (``.glb``, ``.ply``) or a scene id of ``scene_dataset_config``.
        height: panorama height ``H``; the width is ``2H`` (1024x512 is the original setting).
        depth, turn_degrees, forward_step, goal_radius, goal_distance: as in PanoramaRoomsEnv.
        scene_dataset_config: optional ``*.scene_dataset_config.json`` (HM3D, HSSD, ...).
        sensor_height: camera height above the agent's feet in metres.
        gpu_device_id: the GPU Habitat renders on.

    Example:
        >>> try:
        ...     HabitatPanoramaEnv("missing.glb")
        ... except ImportError as err:  # where habitat-sim is not installed
        ...     assert "conda install habitat-sim" in str(err)
        ... except Exception:  # where it is: the scene file does not exist
        ...     pass
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        scene: str | os.PathLike,
        height: int = 256,
        depth: bool = False,
        turn_degrees: float = 30.0,
        forward_step: float = 0.25,
        goal_radius: float = 0.6,
        goal_distance: tuple[float, float] = (1.0, 10.0),
        scene_dataset_config: str | None = None,
        sensor_height: float = 1.5,
        gpu_device_id: int = 0,
        render_mode: str | None = "rgb_array",
    ):
        self._hs = import_habitat_sim()
        if not 16 <= int(height) <= 2048:
            raise ValueError(f"height must be in [16, 2048], got {height}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.height, self.depth = int(height), bool(depth)
        self.turn_degrees, self.forward_step = float(turn_degrees), float(forward_step)
        self.goal_radius, self.goal_distance = float(goal_radius), tuple(float(v) for v in goal_distance)
        self.sensor_height, self.gpu_device_id = float(sensor_height), int(gpu_device_id)
        self.scene_dataset_config = scene_dataset_config
        self.render_mode = render_mode
        self.observation_space = panorama_observation_space(self.height, self.depth)
        self.action_space = spaces.Discrete(3)
        self.scene = str(scene)
        self.sim = self._hs.Simulator(self._configuration(self.scene))
        self.agent = self.sim.initialize_agent(0)
        self._goal = np.zeros(3)
        self._obs: Any = None
        self._collided = False

    # -- configuration ----------------------------------------------------------------------------
    def _configuration(self, scene: str):
        hs = self._hs
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_id = scene
        if self.scene_dataset_config:
            sim_cfg.scene_dataset_config_file = str(self.scene_dataset_config)
        sim_cfg.gpu_device_id = self.gpu_device_id
        sensors = []
        kinds = [("rgb", hs.SensorType.COLOR)] + ([("depth", hs.SensorType.DEPTH)] if self.depth else [])
        for uuid, sensor_type in kinds:
            spec = hs.EquirectangularSensorSpec()
            spec.uuid = uuid
            spec.sensor_type = sensor_type
            spec.resolution = [self.height, 2 * self.height]
            spec.position = [0.0, self.sensor_height, 0.0]
            sensors.append(spec)
        agent_cfg = hs.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = sensors
        amounts = (self.forward_step, self.turn_degrees, self.turn_degrees)
        agent_cfg.action_space = {
            name: hs.agent.ActionSpec(name, hs.agent.ActuationSpec(amount=amount))
            for name, amount in zip(ACTIONS, amounts)
        }
        return hs.Configuration(sim_cfg, [agent_cfg])

    @property
    def scene_id(self) -> str:
        """The scene file's name without its folder and extension."""
        name = os.path.basename(self.scene)
        return name.split(".")[0] or self.scene

    # -- poses ------------------------------------------------------------------------------------
    def sample_navigable_pose(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
        """A random navigable point of the scene and a heading: ``(position (3,) float64, radians)``."""
        rng = self.np_random if rng is None else rng
        self.sim.pathfinder.seed(int(rng.integers(2**31 - 1)))
        position = np.asarray(self.sim.pathfinder.get_random_navigable_point(), dtype=np.float64)
        return position, float(rng.uniform(-math.pi, math.pi))

    def set_pose(self, position, heading: float) -> Any:
        """Teleport the agent (``position`` ``(x, y, z)``, or ``(x, z)`` keeping the current floor)."""
        p = np.asarray(position, dtype=np.float64).reshape(-1)
        if p.shape == (2,):
            p = np.array([p[0], self.get_pose()[0][1], p[1]])
        elif p.shape != (3,):
            raise ValueError(f"position must have 2 (x, z) or 3 (x, y, z) values, got shape {p.shape}")
        state = self._hs.AgentState()
        state.position = p.astype(np.float32)
        state.rotation = self._hs.utils.common.quat_from_angle_axis(float(heading), np.array([0.0, 1.0, 0.0]))
        self.agent.set_state(state)
        self._collided = False
        self._obs = self._convert(self.sim.get_sensor_observations())
        return self._obs

    def get_pose(self) -> tuple[np.ndarray, float]:
        """``(position (3,) float64, heading radians in [-pi, pi))`` of the agent."""
        state = self.agent.get_state()
        x, y, _, w = (float(v) for v in self._hs.utils.common.quat_to_coeffs(state.rotation))
        heading = 2.0 * math.atan2(y, w)  # a rotation about +y only
        return np.asarray(state.position, dtype=np.float64).copy(), (heading + math.pi) % (2 * math.pi) - math.pi

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if options.get("scene") is not None and str(options["scene"]) != self.scene:
            self.scene = str(options["scene"])
            self.sim.reconfigure(self._configuration(self.scene))
            self.agent = self.sim.initialize_agent(0)
        if seed is not None:
            self.sim.seed(int(seed))
        position, heading = options.get("pose") or self.sample_navigable_pose()
        if options.get("goal") is not None:
            self._goal = np.asarray(options["goal"], dtype=np.float64).reshape(3)
        else:
            self._goal = self._sample_goal(np.asarray(position, dtype=np.float64))
        obs = self.set_pose(position, heading)
        return obs, self._info(False)

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0, 1 or 2, got {action!r}")
        before = self._distance()
        raw = self.sim.step(ACTIONS[int(action)])
        self._collided = bool(raw.get("collided", False))
        self._obs = self._convert(raw)
        reward, success = self._task_reward(before, self._distance())
        return self._obs, float(reward), success, False, self._info(success)

    def close(self):
        if getattr(self, "sim", None) is not None:
            self.sim.close()
            self.sim = None
        super().close()

    # -- internals --------------------------------------------------------------------------------
    def _convert(self, raw: dict) -> Any:
        rgb = np.ascontiguousarray(np.asarray(raw["rgb"])[..., :3], dtype=np.uint8)  # RGBA -> RGB
        if not self.depth:
            return rgb
        depth = np.asarray(raw["depth"], dtype=np.float32).reshape(self.height, 2 * self.height, 1)
        return {"rgb": rgb, "depth": depth}

    def _distance(self) -> float:
        position = self.get_pose()[0]
        d = float(self.sim.geodesic_distance(position, self._goal))
        return d if math.isfinite(d) else float(np.linalg.norm(position - self._goal))

    def _sample_goal(self, start: np.ndarray) -> np.ndarray:
        """A navigable goal at a geodesic distance within ``goal_distance`` of ``start``."""
        return pick_goal(lambda: self.sample_navigable_pose()[0],
                         lambda p: float(self.sim.geodesic_distance(start, p)), self.goal_distance, tries=100, default=start)

    def _info(self, success: bool) -> dict[str, Any]:
        position, heading = self.get_pose()
        return {
            "position": position,
            "heading": heading,
            "scene": self.scene_id,
            "goal_position": self._goal.copy(),
            "distance_to_goal": self._distance(),
            "collided": self._collided,
            "success": bool(success),
        }
