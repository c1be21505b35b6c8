"""``PanoramaRooms``: a built-in 3D indoor world that renders equirectangular panoramas anywhere.

Procedural apartments (:mod:`btnk_env.envs.layout`) are rasterised with moderngl on a headless
EGL context (:mod:`btnk_env.envs.renderer`): Mesa's software renderer on a CPU-only machine, the
GPU where there is one. No scene download, no GPU needed.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from btnk_env.envs.layout import WALL_THICKNESS, Layout, generate_layout
from btnk_env.envs.mesh import box_mesh, layout_mesh
from btnk_env.envs.renderer import PanoramaRenderer
from btnk_env.envs.task import PointGoalTask, pick_goal
from btnk_env.envs.textures import make_textures

__all__ = ["PanoramaRoomsEnv", "WORLDS", "panorama_observation_space"]

WORLDS: dict[str, dict[str, Any]] = {
    "apartment": dict(room_grid=(1, 3), room_size=(3.0, 5.0), max_furniture=3, goal_distance=(2.0, 30.0)),
    "single_room": dict(room_grid=(1, 1), room_size=(3.0, 4.0), max_furniture=2, goal_distance=(1.0, 2.5)),
}
"""Presets for ``world=``: apartments of 1 to 9 rooms, or one small room with a close goal."""

MAX_DEPTH = 100.0
"""Upper bound of the depth observation in metres (the renderer's far plane)."""
GOAL_SIZE = (0.3, 1.2, 0.3)
GOAL_COLOR = (1.0, 0.12, 0.12)


def panorama_observation_space(height: int, depth: bool) -> spaces.Space:
    """The observation space shared by the panorama environments.

    Returns:
        ``Box(0, 255, (H, 2H, 3), uint8)``, or with ``depth`` a ``Dict`` of that box as ``"rgb"``
        and ``"depth"``: ``Box(0, inf, (H, 2H, 1), float32)`` in metres.
    """
    rgb = spaces.Box(0, 255, (height, 2 * height, 3), np.uint8)
    if not depth:
        return rgb
    depth_box = spaces.Box(0.0, MAX_DEPTH, (height, 2 * height, 1), np.float32)
    return spaces.Dict({"rgb": rgb, "depth": depth_box})


class PanoramaRoomsEnv(PointGoalTask, gym.Env):
    """Point-goal navigation in procedural apartments, observed through 360-degree panoramas.

    Observation: ``(H, 2H, 3)`` uint8 equirectangular RGB panorama seen from the agent's eye
    (1.5 m above the floor, like Habitat's default sensor); column ``0 .. 2H-1`` spans heading
    ``-180 .. +180`` degrees relative to where the agent faces (the centre column looks ahead),
    row ``0 .. H-1`` spans elevation ``+90 .. -90``. With ``depth=True``, a dict of ``"rgb"`` and
    ``"depth"`` (``(H, 2H, 1)`` float32 distance along each ray, metres).

    Actions (``Discrete(3)``, Habitat's names): 0 ``move_forward`` by ``forward_step`` metres
    (blocked by walls and furniture; the agent slides along them, and ``info["collided"]`` is
    True), 1 ``turn_left`` and 2 ``turn_right`` by ``turn_degrees`` (default 30 rather than
    Habitat's 10, so that tasks take fewer steps).

    Task: reach the goal, a red column (``GOAL_COLOR``) visible in the panorama. Reward per step
    is the decrease of the straight-line distance to the goal minus 0.01; reaching it (distance
    below ``goal_radius``) gives +5 and ends the episode. Episodes of ``gymnasium.make`` are
    truncated after 500 steps.

    Layouts: ``layout_seed`` fixes the apartment; if None, ``reset(seed=s)`` uses layout ``s``
    and an unseeded reset draws a new layout from the environment's random generator.
    ``reset(options={"layout_seed": n, "pose": (position, heading), "goal": position})``
    overrides any of them. ``world="single_room"`` is a small, quickly learnable variant (one room
    of 3 to 4 m, the goal 1 to 2.5 m away).

    Coordinates: metres, y up, the floor at y = 0; heading in radians, 0 looks along -z,
    positive turns left. ``info`` holds ``position`` ((3,) float64 ``x, y, z`` of the agent's
    feet), ``heading``, ``scene``, ``layout_seed``, ``goal_position``, ``distance_to_goal``,
    ``collided`` and ``success``.

    Args:
        height: panorama height ``H`` (16 to 1024); the width is ``2H``.
        depth: also return the depth panorama.
        layout_seed: fixed apartment, or None (see above).
        world: a preset of :data:`WORLDS`; ``room_grid``, ``room_size``, ``max_furniture`` and
            ``goal_distance`` override its entries.
        turn_degrees, forward_step: action sizes.
        goal_radius: success distance in metres.
        agent_radius: the agent's collision disc in metres.
        render_mode: only ``"rgb_array"`` (``render()`` returns the last RGB panorama).
        scene_cache: keep the geometry and textures of this many recent layouts (about 0.6 MB
            each at the default texture size), so that returning to one costs only its upload
            (~3 ms instead of ~20 ms); 0 (default) keeps none. For training on many layouts.

    Example:
        >>> env = PanoramaRoomsEnv(height=16, world="single_room")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, obs.dtype, info["scene"]
        ((16, 32, 3), dtype('uint8'), 'single_room-seed-0')
        >>> obs, reward, terminated, truncated, info = env.step(0)
        >>> env.close()
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    ACTIONS = ("move_forward", "turn_left", "turn_right")
    EYE_HEIGHT = 1.5

    def __init__(
        self,
        height: int = 256,
        depth: bool = False,
        layout_seed: int | None = None,
        world: str = "apartment",
        room_grid: tuple[int, int] | None = None,
        room_size: tuple[float, float] | None = None,
        max_furniture: int | None = None,
        goal_distance: tuple[float, float] | None = None,
        turn_degrees: float = 30.0,
        forward_step: float = 0.25,
        goal_radius: float = 0.6,
        agent_radius: float = 0.2,
        render_mode: str | None = "rgb_array",
        face_size: int | None = None,
        scene_cache: int = 0,
    ):
        if world not in WORLDS:
            raise ValueError(f"world must be one of {sorted(WORLDS)}, got {world!r}")
        if not 16 <= int(height) <= 1024:
            raise ValueError(f"height must be in [16, 1024], got {height}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if forward_step <= 0 or turn_degrees <= 0 or goal_radius <= 0 or agent_radius <= 0:
            raise ValueError("forward_step, turn_degrees, goal_radius and agent_radius must be positive")
        preset = dict(WORLDS[world])
        for key, value in (("room_grid", room_grid), ("room_size", room_size),
                           ("max_furniture", max_furniture), ("goal_distance", goal_distance)):
            if value is not None:
                preset[key] = value
        self.world, self.height, self.depth = world, int(height), bool(depth)
        self._layout_kwargs = {k: preset[k] for k in ("room_grid", "room_size", "max_furniture")}
        self.goal_distance = tuple(float(v) for v in preset["goal_distance"])
        self.turn = math.radians(turn_degrees)
        self.forward_step, self.goal_radius, self.agent_radius = float(forward_step), float(goal_radius), float(agent_radius)
        self.render_mode = render_mode
        self._fixed_layout_seed = layout_seed
        self.observation_space = panorama_observation_space(self.height, self.depth)
        self.action_space = spaces.Discrete(3)
        self._renderer = PanoramaRenderer(self.height, face_size=face_size)
        if scene_cache < 0:
            raise ValueError(f"scene_cache must be >= 0, got {scene_cache}")
        self._scene_cache_size = int(scene_cache)
        self._scene_cache: OrderedDict[int, tuple] = OrderedDict()  # layout seed -> (layout, mesh, textures)
        self.layout: Layout | None = None
        self._pos = np.zeros(2)
        self._heading = 0.0
        self._goal = np.zeros(2)
        self._obs: Any = None
        self._collided = False

    # -- scene ----------------------------------------------------------------------------------
    @property
    def scene_id(self) -> str:
        """``"<world>-seed-<layout seed>"`` (``"rooms-seed-<n>"`` for the apartment world)."""
        if self.layout is None:
            raise RuntimeError("call reset() first")
        prefix = "rooms" if self.world == "apartment" else self.world
        return f"{prefix}-seed-{self.layout.seed}"

    def _load_layout(self, layout_seed: int) -> None:
        if self.layout is not None and self.layout.seed == layout_seed:
            return
        assets = self._scene_cache.pop(layout_seed, None)
        if assets is None:
            layout = generate_layout(layout_seed, **self._layout_kwargs)
            assets = (layout, layout_mesh(layout), make_textures(layout_seed))
        if self._scene_cache_size:
            self._scene_cache[layout_seed] = assets  # most recently used last
            while len(self._scene_cache) > self._scene_cache_size:
                self._scene_cache.popitem(last=False)
        self.layout, mesh, textures = assets
        self._renderer.set_scene(mesh, textures, self.layout, box_mesh(GOAL_SIZE, GOAL_COLOR))

    # -- poses (the same methods exist on HabitatPanoramaEnv) -------------------------------------
    def sample_navigable_pose(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
        """A random pose where the agent fits: ``(position (3,) float64, heading radians)``."""
        rng = self.np_random if rng is None else rng
        if self.layout is None:
            raise RuntimeError("call reset() first")
        rooms = self.layout.rooms
        weights = np.array([r.area for r in rooms])
        margin = WALL_THICKNESS / 2 + self.agent_radius
        for _ in range(1000):
            room = rooms[int(rng.choice(len(rooms), p=weights / weights.sum()))]
            x = rng.uniform(room.x0 + margin, room.x1 - margin)
            z = rng.uniform(room.z0 + margin, room.z1 - margin)
            heading = rng.uniform(-math.pi, math.pi)
            if self.layout.is_free(x, z, self.agent_radius):
                return np.array([x, 0.0, z]), float(heading)
        raise RuntimeError(f"found no free spot in layout {self.layout.seed}")

    def set_pose(self, position, heading: float) -> Any:
        """Teleport the agent (``position``: ``(x, z)`` or ``(x, y, z)``) and return the new observation."""
        p = np.asarray(position, dtype=np.float64).reshape(-1)
        if p.shape not in ((2,), (3,)):
            raise ValueError(f"position must have 2 (x, z) or 3 (x, y, z) values, got shape {p.shape}")
        self._pos = p[[0, -1]].copy()
        self._heading = _wrap(float(heading))
        self._collided = False
        self._obs = self._observe()
        return self._obs

    def get_pose(self) -> tuple[np.ndarray, float]:
        """``(position (3,) float64 x, y, z, heading radians)`` of the agent."""
        return np.array([self._pos[0], 0.0, self._pos[1]]), self._heading

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "layout_seed" in options:
            layout_seed = int(options["layout_seed"])
        elif self._fixed_layout_seed is not None:
            layout_seed = int(self._fixed_layout_seed)
        elif seed is not None:
            layout_seed = int(seed)
        else:
            layout_seed = int(self.np_random.integers(2**31 - 1))
        self._load_layout(layout_seed)
        position, heading = options.get("pose") or self.sample_navigable_pose()
        self._goal = self._sample_goal(np.asarray(position, float).reshape(-1)[[0, -1]]) if options.get("goal") is None \
            else np.asarray(options["goal"], float).reshape(-1)[[0, -1]]
        obs = self.set_pose(position, heading)
        return obs, self._info(success=False)

    def step(self, action):
        if self.layout is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0, 1 or 2, got {action!r}")
        before = self._distance()
        self._collided = False
        if int(action) == 0:
            self._collided = self._move(self.forward_step)
        else:
            self._heading = _wrap(self._heading + (self.turn if int(action) == 1 else -self.turn))
        self._obs = self._observe()
        reward, success = self._task_reward(before, self._distance())
        return self._obs, float(reward), success, False, self._info(success)

    def close(self):
        self._renderer.release()
        self.layout = None
        self._scene_cache.clear()
        super().close()

    # -- internals --------------------------------------------------------------------------------
    def _observe(self):
        eye = (self._pos[0], self.EYE_HEIGHT, self._pos[1])
        goal = (self._goal[0], 0.0, self._goal[1])
        rgb, dist = self._renderer.render(eye, self._heading, goal=goal, depth=self.depth)
        return {"rgb": rgb, "depth": dist} if self.depth else rgb

    def _distance(self) -> float:
        return float(np.linalg.norm(self._pos - self._goal))

    def _move(self, step: float) -> bool:
        """Move forward with sliding along obstacles; returns whether something was hit."""
        x, z = self._pos
        tx, tz = x - step * math.sin(self._heading), z - step * math.cos(self._heading)
        free = lambda a, b: self.layout.is_free(a, b, self.agent_radius)  # noqa: E731
        if free(tx, tz):
            self._pos = np.array([tx, tz])
            return False
        for cx, cz in ((tx, z), (x, tz)):
            if abs(cx - x) + abs(cz - z) > 0.05 * step and free(cx, cz):
                self._pos = np.array([cx, cz])
                break
        return True

    def _sample_goal(self, start: np.ndarray) -> np.ndarray:
        """A goal ``(x, z)`` at a straight-line distance within ``goal_distance`` of ``start`` ``(x, z)``."""
        p = pick_goal(lambda: self.sample_navigable_pose()[0],
                      lambda q: float(np.hypot(q[0] - start[0], q[2] - start[1])), self.goal_distance, tries=300)
        return np.array([p[0], p[2]])

    def _info(self, success: bool) -> dict[str, Any]:
        position, heading = self.get_pose()
        return {
            "position": position,
            "heading": heading,
            "scene": self.scene_id,
            "layout_seed": self.layout.seed,
            "goal_position": np.array([self._goal[0], 0.0, self._goal[1]]),
            "distance_to_goal": self._distance(),
            "collided": self._collided,
            "success": bool(success),
        }


def _wrap(angle: float) -> float:
    """Angle in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi
