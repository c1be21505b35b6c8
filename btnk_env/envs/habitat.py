"""``HabitatPanoramaEnv``: the panorama environment contract on top of Habitat-Sim scenes.

habitat-sim is optional. On Linux it comes from conda, or from the one pip wheel there is
(habitat-sim 0.2.2 for Python 3.13, rendering on the CPU through Mesa; it needs the ``magnum``
Python bindings next to it, see ``docs/panorama_worlds.md``)::

    conda install habitat-sim -c conda-forge -c aihabitat            # with a display
    conda install habitat-sim headless -c conda-forge -c aihabitat   # servers without one (NVIDIA GPU)
    pip install habitat-sim-uv-wheels-experimental                   # Python 3.13, CPU (HSIM_DISABLE_CUDA_DEVICE=1)

It is imported only when the environment is created. The adapter keeps to habitat-sim's public
API of releases 0.2.2 to 0.3.3; ``tests/habitat_api.json`` lists every name it uses, read from
habitat-sim's source, and the tests hold both the adapter and their stand-in of habitat-sim to it.
"""

from __future__ import annotations

import functools
import gc
import glob
import logging
import math
import os
import re
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from btnk_env.envs.habitat_bindings import close_simulator, numpy_copy_into_available, set_vector, track_simulator
from btnk_env.envs.panorama_rooms import MAX_DEPTH, panorama_observation_space
from btnk_env.envs.task import PointGoalTask, pick_goal

__all__ = ["HabitatPanoramaEnv", "import_habitat_sim", "ray_depth_scale", "check_render_device", "INSTALL_HINT",
           "CUDA_EGL_HINT"]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "HabitatPanoramaEnv needs habitat-sim: `conda install habitat-sim -c conda-forge -c aihabitat` "
    "(on a server without a display: `conda install habitat-sim headless -c conda-forge -c aihabitat`), "
    "or on Python 3.13 `pip install habitat-sim-uv-wheels-experimental` with the magnum bindings "
    "(docs/panorama_worlds.md). "
    "The built-in btnk_env/PanoramaRooms-v0 needs no extra install."
)
CUDA_EGL_HINT = (
    "habitat-sim renders headless through an EGL device that belongs to a CUDA device; this machine "
    "shows none (no /dev/nvidia*, no DISPLAY), and habitat-sim would end the process with "
    "'unable to find EGL device for CUDA device 0'. On a CPU-only machine set HSIM_DISABLE_CUDA_DEVICE=1 "
    "(honoured by habitat-sim builds that render through Mesa's EGL, e.g. habitat-sim-uv-wheels-experimental; "
    "upstream conda 'headless' builds need an NVIDIA GPU), or run where there is an NVIDIA GPU or a display."
)
ACTIONS = ("move_forward", "turn_left", "turn_right")
ANCHOR_SAMPLES = 64
"""Navigable points sampled once per scene to find the walkable island."""
SAMPLE_TRIES = 100
"""Random navigable points tried per pose before falling back to the island's anchor point."""
PROBE = "floor_probe"
"""The depth sensor of agent 1, rendered once per scene to measure how far the navmesh lies above the floor."""
MAX_FLOOR_OFFSET = 0.5
"""A measured navmesh-to-floor offset outside ``[0, MAX_FLOOR_OFFSET]`` m is not trusted (taken as 0)."""


def import_habitat_sim():
    """Import habitat_sim, or raise ImportError saying how to install it."""
    try:
        import habitat_sim
        import habitat_sim.agent  # noqa: F401
        import habitat_sim.utils.common  # noqa: F401
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return habitat_sim


def _release(hs) -> tuple[int, int, int]:
    """``habitat_sim.__version__`` as ``(major, minor, patch)``."""
    numbers = [int(v) for v in re.findall(r"\d+", str(hs.__version__))[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


@functools.lru_cache(maxsize=16)
def ray_depth_scale(height: int) -> np.ndarray:
    """Habitat's equirectangular depth times this is the distance along each pixel's ray.

    habitat-sim renders its equirectangular sensors from a cube map, whose depth is the planar
    depth of each face: the distance along the face's axis, ``t * max(|dx|, |dy|, |dz|)`` for a
    ray of unit direction ``d`` that meets a surface at distance ``t``. The built-in world (and
    this environment's contract) gives ``t``, so the depth is divided by the largest absolute
    component of the pixel's unit ray (the cube faces are aligned with the sensor's axes).

    Args:
        height: panorama height ``H`` (width ``2H``); pixel centres at elevation
            ``90 - (i + 0.5) * 180 / H`` and azimuth ``(j + 0.5) * 360 / (2H) - 180`` degrees.

    Returns:
        ``(H, 2H, 1)`` float32 in ``[1, sqrt(3)]``, read-only (cached per size).
    """
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi  # (H,)
    lon = (np.arange(2 * height) + 0.5) / (2 * height) * 2.0 * np.pi - np.pi  # (2H,)
    lat, lon = np.meshgrid(lat, lon, indexing="ij")  # (H, 2H) each
    rays = np.stack([np.sin(lon) * np.cos(lat), np.sin(lat), -np.cos(lon) * np.cos(lat)], -1)  # (H, 2H, 3)
    scale = (1.0 / np.abs(rays).max(-1, keepdims=True)).astype(np.float32)
    scale.setflags(write=False)
    return scale


def _nvidia_device_visible() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/proc/driver/nvidia/gpus")


def check_render_device() -> None:
    """Raise where habitat-sim would end the process for want of a CUDA EGL device.

    habitat-sim's windowless context is not an exception but ``Magnum::Fatal`` (the process
    exits) when it finds no EGL device for the CUDA device (0.2.2 to 0.3.3). On Linux without a
    display, without an NVIDIA device and without ``HSIM_DISABLE_CUDA_DEVICE`` in the
    environment this raises :class:`RuntimeError` with :data:`CUDA_EGL_HINT` instead.
    """
    if not sys.platform.startswith("linux") or "HSIM_DISABLE_CUDA_DEVICE" in os.environ:
        return
    if os.environ.get("DISPLAY") or _nvidia_device_visible():
        return
    raise RuntimeError(CUDA_EGL_HINT)


def _forget(err: BaseException) -> None:
    """Drop the tracebacks of ``err`` and its causes, then collect garbage.

    A simulator whose construction raised lives on in the frames of the traceback; collected
    later, after another simulator made its GL context current, it aborts the process
    (``GL::Context::current(): no current context``). Collected now, it is the only one.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        err.__traceback__ = None
        err = err.__cause__ or err.__context__
    gc.collect()


class HabitatPanoramaEnv(PointGoalTask, gym.Env):
    """Point-goal navigation in a Habitat-Sim scene, observed through equirectangular panoramas.

    Same contract as :class:`~btnk_env.envs.panorama_rooms.PanoramaRoomsEnv`: observation
    ``(H, 2H, 3)`` uint8 RGB (Habitat's RGBA with alpha dropped) from an
    ``EquirectangularSensorSpec`` ``sensor_height`` metres above the floor, or with ``depth`` a
    dict with ``"depth"`` ``(H, 2H, 1)`` float32 metres; actions ``Discrete(3)``: 0
    ``move_forward``, 1 ``turn_left``, 2 ``turn_right`` (Habitat's own action names, with
    ``forward_step`` metres and ``turn_degrees`` degrees); the same pose methods
    (``sample_navigable_pose``, ``set_pose``, ``get_pose``) and ``info`` keys (all but
    ``layout_seed``; ``scene`` is the scene file's stem). ``reset(options={"scene": path})``
    switches scenes; if the new scene fails to load, the simulator is closed and the error raised
    (create a new environment). Depth is the distance along each ray, like the built-in world's
    (habitat-sim's planar cube-face depth converted with :func:`ray_depth_scale`). Start points
    and goals lie on one walkable navmesh island: the lowest island whose ``island_radius`` is at
    least ``min_island_radius`` (a closed scene's navmesh also has an island on its roof). The
    reward uses the geodesic distance to the goal (``habitat_sim.ShortestPath`` and the
    pathfinder). Unlike the built-in world the goal is not drawn in the scene: give it to the
    agent from ``info["goal_position"]``.

    Eye height. Habitat's navmesh lies one Recast cell (0.1 to 0.2 m) above the floor it covers
    and the agent stands on it. Once per scene a depth probe (agent 1's sensor) measures that
    offset straight down from a point of the walkable island (:attr:`floor_offset`), and the
    sensors are placed ``sensor_height - floor_offset`` above the agent: the eye is
    ``sensor_height`` above the floor, as in the built-in world. Positions in ``info``, the pose
    methods and goals are floor-level (navmesh point minus ``floor_offset`` in y).

    Many environments per process: habitat-sim's simulators of one process share the GL context
    of the first, so closing is ordered for them (:mod:`btnk_env.envs.habitat_bindings`): any
    number of environments can be created, used and closed in any order (``SyncVectorEnv``
    too); a closed environment's simulator is freed once the ones created after it are closed.

    Args:
        scene: a scene file (``.glb``, ``.ply``) or a scene id of ``scene_dataset_config``.
        height: panorama height ``H``; the width is ``2H`` (1024x512 is the original setting).
        depth, turn_degrees, forward_step, goal_radius, goal_distance: as in PanoramaRoomsEnv.
        scene_dataset_config: optional ``*.scene_dataset_config.json`` (HM3D, HSSD, ...).
        sensor_height: camera height above the floor in metres.
        gpu_device_id: the GPU Habitat renders on.
        min_island_radius: navmesh islands smaller than this (``island_radius``, metres) are
            never start or goal islands (habitat-lab's point-goal datasets use 1.5).

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
        min_island_radius: float = 1.5,
        render_mode: str | None = "rgb_array",
    ):
        self._hs = import_habitat_sim()
        self._magnum_specs = _release(self._hs) >= (0, 3, 1)  # spec and path vectors: Eigen before 0.3.1
        # an Eigen argument (island_radius) goes through NumPy's PyArray_CopyInto, absent on NumPy 2
        self._eigen_arguments = self._magnum_specs or numpy_copy_into_available()
        if not 16 <= int(height) <= 2048:
            raise ValueError(f"height must be in [16, 2048], got {height}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.height, self.depth = int(height), bool(depth)
        self.turn_degrees, self.forward_step = float(turn_degrees), float(forward_step)
        self.goal_radius, self.goal_distance = float(goal_radius), tuple(float(v) for v in goal_distance)
        self.sensor_height, self.gpu_device_id = float(sensor_height), int(gpu_device_id)
        self.scene_dataset_config = scene_dataset_config
        self.min_island_radius = float(min_island_radius)
        self.render_mode = render_mode
        self.observation_space = panorama_observation_space(self.height, self.depth)
        self.action_space = spaces.Discrete(3)
        self.scene = str(scene)
        self.sim = None
        check_render_device()
        self._specs: list = []  # the agent's sensor specs (moved once the floor offset is known)
        self._probe_spec = None
        self.sim, self.agent = self._open_simulator(self._configuration(self.scene))
        self._anchor: np.ndarray | None = None  # a navmesh point of the walkable island, found per scene
        self._offset: float | None = None  # navmesh height above the floor, measured per scene
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
        kinds = [("rgb", hs.SensorType.COLOR)] + ([("depth", hs.SensorType.DEPTH)] if self.depth else [])
        vector2, vector3 = self._vector_types()
        self._specs = []
        for uuid, sensor_type in kinds:
            spec = hs.EquirectangularSensorSpec()
            spec.uuid = uuid
            spec.sensor_type = sensor_type
            set_vector(spec, "resolution", (self.height, 2 * self.height), vector2)
            set_vector(spec, "position", (0.0, self.sensor_height, 0.0), vector3)
            self._specs.append(spec)
        agent_cfg = hs.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = list(self._specs)
        amounts = (self.forward_step, self.turn_degrees, self.turn_degrees)
        agent_cfg.action_space = {
            name: hs.agent.ActionSpec(name, hs.agent.ActuationSpec(amount=amount))
            for name, amount in zip(ACTIONS, amounts)
        }
        probe = hs.EquirectangularSensorSpec()  # default resolution and position (1.5 m up)
        probe.uuid = PROBE
        probe.sensor_type = hs.SensorType.DEPTH
        probe_cfg = hs.agent.AgentConfiguration()
        probe_cfg.sensor_specifications = [probe]
        self._probe_spec = probe
        return hs.Configuration(sim_cfg, [agent_cfg, probe_cfg])

    def _vector_types(self):
        """``(Vector2i, Vector3)`` of the bindings' spec and path vectors: Magnum's from habitat-sim
        0.3.1, ``(None, None)`` (Eigen, written in place by :func:`set_vector`) before."""
        if self._magnum_specs:
            import magnum as mn

            return mn.Vector2i, mn.Vector3
        return None, None

    def _open_simulator(self, config):
        """``(simulator, agent)`` for ``config``; a failure leaves no simulator alive."""
        sim = failure = None
        try:
            sim = self._hs.Simulator(config)
            track_simulator(sim)
            return sim, sim.initialize_agent(0)
        except Exception as err:
            failure = err
        if sim is not None:
            close_simulator(sim)
        sim = None
        _forget(failure)
        if "EGL device" in str(failure):
            raise RuntimeError(f"{failure}\n{CUDA_EGL_HINT}") from failure
        raise failure

    def _switch_scene(self, scene: str) -> None:
        """Load ``scene`` into the simulator; if it fails, close the simulator and raise."""
        failure = None
        try:
            self.sim.reconfigure(self._configuration(scene))
            self.agent = self.sim.initialize_agent(0)
        except Exception as err:
            failure = err
        if failure is None:
            self.scene, self._anchor, self._offset = scene, None, None
            return
        close_simulator(self.sim)  # now, where no simulator created after it is open
        self.sim = self.agent = None
        _forget(failure)
        raise RuntimeError(f"could not load scene {scene!r} ({type(failure).__name__}: {failure}); "
                           "the environment is closed, create a new one") from failure

    @property
    def scene_id(self) -> str:
        """The scene file's name without its folder and extension."""
        name = os.path.basename(self.scene)
        return name.split(".")[0] or self.scene

    # -- poses ------------------------------------------------------------------------------------
    @property
    def floor_offset(self) -> float:
        """How far (metres) the navmesh lies above the floor in this scene, measured once per
        scene by the depth probe straight down from a point of the walkable island."""
        if self._offset is None:
            self._offset = self._measure_floor_offset(self._walkable_anchor())
            y = self.sensor_height - self._offset
            for spec in self._specs:  # the sensors follow their specs at the next set_state
                set_vector(spec, "position", (0.0, y, 0.0), self._vector_types()[1])
        return self._offset

    def _measure_floor_offset(self, point: np.ndarray) -> float:
        probe = self.sim.initialize_agent(1)
        state = self._hs.AgentState()
        state.position = point.astype(np.float32)
        probe.set_state(state)
        depth = np.asarray(self.sim.get_sensor_observations(1)[PROBE], dtype=np.float32)  # planar cube-face depth
        offset = float(np.median(depth.reshape(depth.shape[0], -1)[-1])) - float(np.asarray(self._probe_spec.position)[1])
        if not 0.0 <= offset <= MAX_FLOOR_OFFSET:  # the bottom face sees the floor at that depth
            logger.warning("scene %s: the floor under the navmesh measured %.3f m away; taking 0", self.scene, offset)
            return 0.0
        return offset

    def _to_floor(self, navmesh_point) -> np.ndarray:
        return np.asarray(navmesh_point, dtype=np.float64).reshape(3) - (0.0, self.floor_offset, 0.0)

    def _to_navmesh(self, floor_point) -> np.ndarray:
        return np.asarray(floor_point, dtype=np.float64).reshape(3) + (0.0, self.floor_offset, 0.0)

    def sample_navigable_pose(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
        """A random floor-level point of the walkable island and a heading: ``(position (3,) float64, radians)``."""
        rng = self.np_random if rng is None else rng
        anchor = self._walkable_anchor()
        self.sim.pathfinder.seed(int(rng.integers(2**31 - 1)))
        position = anchor.copy()
        for _ in range(SAMPLE_TRIES):
            p = self._random_navigable_point()
            if p is not None and math.isfinite(self._navmesh_distance(anchor, p)):
                position = p
                break
        return self._to_floor(position), float(rng.uniform(-math.pi, math.pi))

    def geodesic_distance(self, a, b) -> float:
        """Shortest walking distance in metres between two floor-level ``(3,)`` points; ``inf`` without a path."""
        return self._navmesh_distance(self._to_navmesh(a), self._to_navmesh(b))

    def shortest_path(self, a, b) -> list[np.ndarray]:
        """The corners of the shortest walk from floor-level ``a`` to ``b`` (floor-level ``(3,)``
        points, ``a`` first); empty without a path."""
        path = self._find_path(self._to_navmesh(a), self._to_navmesh(b))
        return [] if path is None else [self._to_floor(p) for p in path.points]

    def _find_path(self, a: np.ndarray, b: np.ndarray):
        """``habitat_sim.ShortestPath`` between navmesh points, or None without a path."""
        path = self._hs.ShortestPath()
        vector3 = self._vector_types()[1]
        set_vector(path, "requested_start", np.asarray(a, dtype=np.float32).reshape(3), vector3)
        set_vector(path, "requested_end", np.asarray(b, dtype=np.float32).reshape(3), vector3)
        return path if self.sim.pathfinder.find_path(path) else None

    def _navmesh_distance(self, a, b) -> float:
        path = self._find_path(a, b)
        return math.inf if path is None else float(path.geodesic_distance)

    def _random_navigable_point(self) -> np.ndarray | None:
        """A point of any navmesh island (``(3,)`` float64), or None where the pathfinder found none."""
        p = np.asarray(self.sim.pathfinder.get_random_navigable_point(), dtype=np.float64).reshape(3)
        return p if np.all(np.isfinite(p)) else None

    def _walkable_anchor(self) -> np.ndarray:
        """A navmesh point of the walkable island: the lowest of the islands with ``island_radius``
        at least ``min_island_radius`` (all islands if none is), found once per scene from fixed samples.

        habitat-sim 0.2.2 has no island indices (``num_islands`` and ``island_index`` came in
        0.2.3), so points are kept to the island by a path to this anchor. Lowest, not largest:
        the roof of a closed scene is an island as large as its floor. ``island_radius`` takes an
        Eigen argument before habitat-sim 0.3.1, which NumPy 2 cannot hand over without
        ``PyArray_CopyInto``: there the lowest island is taken whatever its size.
        """
        if self._anchor is None:
            pf = self.sim.pathfinder
            pf.seed(0)
            points = [p for p in (self._random_navigable_point() for _ in range(ANCHOR_SAMPLES)) if p is not None]
            if not points:
                raise RuntimeError(f"scene {self.scene!r} has no navigable point: habitat-sim found or computed "
                                   "no navmesh for it (put a .navmesh beside the scene, or check that it loaded)")
            large = [p for p in points if self._eigen_arguments
                     and pf.island_radius(p.astype(np.float32)) >= self.min_island_radius]
            self._anchor = min(large or points, key=lambda p: p[1])
        return self._anchor

    def set_pose(self, position, heading: float) -> Any:
        """Teleport the agent (floor-level ``position`` ``(x, y, z)``, or ``(x, z)`` keeping the current floor)."""
        p = np.asarray(position, dtype=np.float64).reshape(-1)
        if p.shape == (2,):
            p = np.array([p[0], self.get_pose()[0][1], p[1]])
        elif p.shape != (3,):
            raise ValueError(f"position must have 2 (x, z) or 3 (x, y, z) values, got shape {p.shape}")
        state = self._hs.AgentState()
        state.position = self._to_navmesh(p).astype(np.float32)
        state.rotation = self._hs.utils.common.quat_from_angle_axis(float(heading), np.array([0.0, 1.0, 0.0]))
        self.agent.set_state(state)
        self._collided = False
        self._obs = self._convert(self.sim.get_sensor_observations())
        return self._obs

    def get_pose(self) -> tuple[np.ndarray, float]:
        """``(floor-level position (3,) float64, heading radians in [-pi, pi))`` of the agent."""
        state = self.agent.get_state()
        x, y, _, w = (float(v) for v in self._hs.utils.common.quat_to_coeffs(state.rotation))
        heading = 2.0 * math.atan2(y, w)  # a rotation about +y only
        return self._to_floor(state.position), (heading + math.pi) % (2 * math.pi) - math.pi

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._require_open()
        options = dict(options or {})
        if options.get("scene") is not None and str(options["scene"]) != self.scene:
            self._switch_scene(str(options["scene"]))
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
        self._require_open()
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

    def observe(self) -> tuple[Any, dict[str, Any]]:
        """``(observation, info)`` of the current pose, without acting (``info["success"]`` False)."""
        self._require_open()
        if self._obs is None:
            raise RuntimeError("call reset() before observe()")
        return self._obs, self._info(False)

    def close(self):
        if getattr(self, "sim", None) is not None:
            close_simulator(self.sim)  # at once, or when the simulators created after it are closed
            self.sim = self.agent = None
        super().close()

    # -- internals --------------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self.sim is None:
            raise RuntimeError("this HabitatPanoramaEnv is closed (close() was called or a scene failed to load); "
                               "create a new one")

    def _convert(self, raw: dict) -> Any:
        rgb = np.ascontiguousarray(np.asarray(raw["rgb"])[..., :3], dtype=np.uint8)  # RGBA -> RGB
        if not self.depth:
            return rgb
        planar = np.asarray(raw["depth"], dtype=np.float32).reshape(self.height, 2 * self.height, 1)
        depth = np.minimum(planar * ray_depth_scale(self.height), MAX_DEPTH)  # (H, 2H, 1) along each ray
        return {"rgb": rgb, "depth": depth}

    def _distance(self) -> float:
        position = self.get_pose()[0]
        d = self.geodesic_distance(position, self._goal)
        return d if math.isfinite(d) else float(np.linalg.norm(position - self._goal))

    def _sample_goal(self, start: np.ndarray) -> np.ndarray:
        """A goal on the walkable island at a geodesic distance within ``goal_distance`` of ``start``."""
        return pick_goal(lambda: self.sample_navigable_pose()[0],
                         lambda p: self.geodesic_distance(start, p), self.goal_distance, tries=100, default=start)

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
