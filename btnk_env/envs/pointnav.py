"""PointNav episodes without habitat-lab: habitat-lab's episode datasets played in ``HabitatPanoramaEnv``.

habitat-lab (the task layer over habitat-sim) cannot be installed next to the one pip build of
habitat-sim (0.2.2, Python 3.13, NumPy 2) nor next to Gymnasium 1.x. This module reads and writes
its PointNav datasets and scores episodes as it does:

- the file: ``{"episodes": [...]}`` as JSON (``.json``) or gzipped JSON (``.json.gz``), each
  episode ``{"episode_id", "scene_id", "start_position" [x, y, z], "start_rotation" [x, y, z, w],
  "goals": [{"position" [x, y, z], "radius"}], "info": {"geodesic_distance"}}``; positions are
  navmesh points (where habitat-sim's agent stands), as habitat-lab stores them;
- the actions: habitat-lab's ``STOP`` is added as action 3 to the environment's 0 move_forward,
  1 turn_left, 2 turn_right; an episode ends when the agent stops or after ``max_episode_steps``;
- the metrics (habitat-lab's ``DistanceToGoal``, ``Success``, ``SPL``): ``distance_to_goal`` is
  the geodesic distance to the nearest goal; ``success`` is 1 when the agent called STOP within
  ``success_distance`` (0.2 m) of a goal; ``spl = success * d0 / max(d0, path_length)`` with ``d0``
  the geodesic start-to-goal distance at reset and ``path_length`` the summed straight-line
  distances between the agent's successive positions.

Example:
    >>> episode = PointNavEpisode("0", "apt.glb", (1.0, 0.1, 2.0), (0.0, 0.0, 0.0, 1.0), ((3.0, 0.1, 2.0),), 2.0)
    >>> from_json(to_json([episode])) == [episode]
    True
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from btnk_env.envs.task import pick_goal
from btnk_env.models.files import atomic_write_bytes

__all__ = ["PointNavEpisode", "PointNavEnv", "ShortestPathPolicy", "load_pointnav", "write_pointnav",
           "sample_pointnav_episodes", "from_json", "to_json", "STOP", "SUCCESS_DISTANCE"]

STOP = 3
"""habitat-lab's STOP action, added after the environment's three moves."""
SUCCESS_DISTANCE = 0.2
"""habitat-lab's PointNav ``success_distance`` (metres)."""
MAX_EPISODE_STEPS = 500
"""habitat-lab's PointNav ``max_episode_steps``."""


@dataclass(frozen=True)
class PointNavEpisode:
    """One habitat-lab PointNav episode (positions are navmesh points, metres)."""

    episode_id: str
    scene_id: str
    start_position: tuple[float, float, float]
    start_rotation: tuple[float, float, float, float]
    """Quaternion ``(x, y, z, w)`` of a rotation about +y (habitat-lab's order)."""
    goals: tuple[tuple[float, float, float], ...]
    geodesic_distance: float
    """``info.geodesic_distance``: the shortest walk from the start to the nearest goal."""

    @property
    def heading(self) -> float:
        """The start heading in radians (0 looks along -z, positive turns left)."""
        x, y, z, w = self.start_rotation
        return (2.0 * math.atan2(y, w) + math.pi) % (2 * math.pi) - math.pi


def from_json(data: dict) -> list[PointNavEpisode]:
    """The episodes of a parsed habitat-lab dataset ``{"episodes": [...]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise ValueError('a PointNav dataset is a JSON object {"episodes": [...]} (habitat-lab pointnav_v1)')
    episodes = []
    for i, ep in enumerate(data["episodes"]):
        try:
            goals = tuple(tuple(float(v) for v in g["position"]) for g in ep["goals"])
            episodes.append(PointNavEpisode(
                str(ep.get("episode_id", i)), str(ep["scene_id"]), tuple(float(v) for v in ep["start_position"]),
                tuple(float(v) for v in ep["start_rotation"]), goals,
                float((ep.get("info") or {}).get("geodesic_distance", math.nan))))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"PointNav episode {i} lacks or garbles {err}: each needs scene_id, start_position, "
                             "start_rotation and goals [{position}]") from None
        if not goals or any(len(g) != 3 for g in goals) or len(episodes[-1].start_position) != 3 \
                or len(episodes[-1].start_rotation) != 4:
            raise ValueError(f"PointNav episode {i}: positions have 3 values, start_rotation 4, and there is a goal")
    return episodes


def to_json(episodes: Sequence[PointNavEpisode]) -> dict:
    """The habitat-lab dataset ``{"episodes": [...]}`` of ``episodes``."""
    return {"episodes": [{
        "episode_id": ep.episode_id, "scene_id": ep.scene_id, "start_position": list(ep.start_position),
        "start_rotation": list(ep.start_rotation), "info": {"geodesic_distance": ep.geodesic_distance},
        "goals": [{"position": list(g), "radius": None} for g in ep.goals],
        "shortest_paths": None, "start_room": None} for ep in episodes]}


def load_pointnav(path: str | os.PathLike) -> list[PointNavEpisode]:
    """Read a habitat-lab PointNav dataset (``.json.gz`` or ``.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no PointNav dataset at {path}")
    raw = path.read_bytes()
    try:
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        return from_json(json.loads(text))
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a PointNav dataset (gzipped) JSON file: {err}") from None


def write_pointnav(path: str | os.PathLike, episodes: Sequence[PointNavEpisode], overwrite: bool = False) -> Path:
    """Write ``episodes`` as a habitat-lab dataset: gzipped JSON when ``path`` ends in ``.gz``
    (atomically; an existing file is replaced only with ``overwrite``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    data = json.dumps(to_json(episodes)).encode("utf-8")
    return atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def sample_pointnav_episodes(env: Any, num_episodes: int, seed: int = 0, scene_id: str | None = None
                             ) -> list[PointNavEpisode]:
    """``num_episodes`` PointNav episodes in ``env``'s scene (a :class:`HabitatPanoramaEnv`):
    start and goal on the walkable island, the goal at a geodesic distance within the env's
    ``goal_distance``, as habitat-lab's generator draws them. Episode ``i`` depends on ``(seed, i)``."""
    base = env.unwrapped
    up = np.array([0.0, base.floor_offset, 0.0])  # floor level -> navmesh point
    episodes = []
    for i in range(num_episodes):
        rng = np.random.default_rng([seed, i])
        start, heading = base.sample_navigable_pose(rng)
        goal = pick_goal(lambda: base.sample_navigable_pose(rng)[0], lambda p: base.geodesic_distance(start, p),
                         base.goal_distance, tries=100)
        distance = base.geodesic_distance(start, goal)
        if not math.isfinite(distance):
            raise RuntimeError(f"scene {base.scene!r}: no reachable goal from {start.tolist()} after 100 tries")
        episodes.append(PointNavEpisode(
            str(i), scene_id or base.scene, tuple((start + up).tolist()),
            (0.0, math.sin(heading / 2), 0.0, math.cos(heading / 2)), (tuple((goal + up).tolist()),), float(distance)))
    return episodes


class PointNavEnv(gym.Wrapper):
    """A :class:`HabitatPanoramaEnv` playing the episodes of a habitat-lab PointNav dataset.

    ``reset(seed=i)`` (or ``options={"episode": i}``) plays episode ``i``; without either the next
    one. Observations are the environment's; actions ``Discrete(4)`` (3 is STOP); the reward is the
    decrease of the geodesic distance to the nearest goal minus the step penalty, plus the success
    reward on a successful STOP. ``info`` adds ``episode_id``, ``distance_to_goal``, ``success``
    (1.0 or 0.0), ``spl`` and ``path_length``; ``position`` and ``goal_position`` are floor-level,
    like the environment's (a dataset position minus ``floor_offset`` in y).

    Args:
        env: the HabitatPanoramaEnv (its scene is used for episodes whose scene file has its name).
        episodes: the episodes, or the path of a dataset file.
        scenes_dir: the folder ``scene_id`` is relative to (default: the dataset file's folder).
        success_distance, max_episode_steps: habitat-lab's PointNav settings.
    """

    stop_action = STOP

    def __init__(self, env: gym.Env, episodes: Sequence[PointNavEpisode] | str | os.PathLike,
                 scenes_dir: str | os.PathLike | None = None, success_distance: float = SUCCESS_DISTANCE,
                 max_episode_steps: int = MAX_EPISODE_STEPS):
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Discrete) or env.action_space.n != 3:
            raise TypeError(f"PointNavEnv wraps the 3-action HabitatPanoramaEnv, got action space {env.action_space}")
        if isinstance(episodes, (str, os.PathLike)):
            scenes_dir = Path(episodes).parent if scenes_dir is None else scenes_dir
            episodes = load_pointnav(episodes)
        if not episodes:
            raise ValueError("the PointNav dataset has no episodes")
        self.episodes = list(episodes)
        self.scenes_dir = None if scenes_dir is None else Path(scenes_dir)
        self.success_distance, self.max_episode_steps = float(success_distance), int(max_episode_steps)
        self.action_space = spaces.Discrete(4)
        self._next, self._episode = 0, None

    def _scene(self, scene_id: str) -> str:
        """The scene file of ``scene_id``: as given, under ``scenes_dir``, or the env's own scene of that name."""
        for candidate in (Path(scene_id), (self.scenes_dir or Path()) / scene_id):
            if candidate.is_file():
                return str(candidate)
        current = self.env.unwrapped.scene
        return current if Path(current).name == Path(scene_id).name else scene_id

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        index = options.pop("episode", seed if seed is not None else self._next)
        if not 0 <= int(index) < len(self.episodes):
            raise ValueError(f"episode {index}: the PointNav dataset has {len(self.episodes)} episodes (0..{len(self.episodes) - 1})")
        self._next = int(index) + 1
        ep = self._episode = self.episodes[int(index)]
        base = self.env.unwrapped
        scene = self._scene(ep.scene_id)
        if scene != base.scene:  # load the episode's scene first: the floor offset is the new scene's
            base.reset(seed=seed, options={"scene": scene})
        down = np.array([0.0, base.floor_offset, 0.0])
        self._goals = [np.asarray(g, np.float64) - down for g in ep.goals]
        start = np.asarray(ep.start_position, np.float64) - down
        obs, info = self.env.reset(seed=seed, options={**options, "pose": (start, ep.heading),
                                                       "goal": self._nearest_goal(start)})
        self._steps, self._path_length, self._last = 0, 0.0, info["position"]
        self._start_distance = self._distance(info["position"])
        self._before = self._start_distance
        return obs, self._metrics(info, success=False)

    def step(self, action):
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0, 1, 2 or 3 (STOP), got {action!r}")
        self._steps += 1
        base = self.env.unwrapped
        if int(action) == STOP:
            obs, info = base.observe()
        else:
            obs, _, _, _, info = self.env.step(action)  # the environment's own goal test is not the task's
        position = info["position"]
        self._path_length += float(np.linalg.norm(position - self._last))
        self._last = position
        after = self._distance(position)
        stopped = int(action) == STOP
        success = stopped and after < self.success_distance
        reward = (self._before - after) - base.STEP_PENALTY + (base.SUCCESS_REWARD if success else 0.0)
        self._before = after
        truncated = not stopped and self._steps >= self.max_episode_steps
        return obs, float(reward), stopped, truncated, self._metrics(info, success)

    def _distance(self, position) -> float:
        base = self.env.unwrapped
        return min(base.geodesic_distance(position, g) for g in self._goals)

    def _nearest_goal(self, position) -> np.ndarray:
        base = self.env.unwrapped
        return min(self._goals, key=lambda g: base.geodesic_distance(position, g))

    def _metrics(self, info: dict, success: bool) -> dict:
        d0 = self._start_distance
        spl = float(success) * d0 / max(d0, self._path_length) if d0 > 0 else float(success)
        return {**info, "episode_id": self._episode.episode_id, "distance_to_goal": self._before,
                "goal_position": self._nearest_goal(info["position"]), "success": float(success), "spl": spl,
                "path_length": self._path_length}


class ShortestPathPolicy:
    """Walks the geodesic path to the goal and calls STOP within ``success_distance`` of it
    (habitat-lab's ``ShortestPathFollower`` with the environment's turns): a PointNav oracle.

    ``act(frame, info)`` reads ``position``, ``heading``, ``goal_position`` and
    ``distance_to_goal`` from ``info``; the path comes from the environment's pathfinder.
    """

    name = "shortest-path"

    def __init__(self, env: Any, success_distance: float = SUCCESS_DISTANCE) -> None:
        self.base, self.success_distance = env.unwrapped, float(success_distance)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, frame: np.ndarray, info: dict) -> int:
        position, goal = np.asarray(info["position"], np.float64), np.asarray(info["goal_position"], np.float64)
        if info["distance_to_goal"] < self.success_distance:
            return STOP
        corners = self.base.shortest_path(position, goal)[1:] or [goal]
        target = next((c for c in corners if np.hypot(*(c - position)[[0, 2]]) > 0.05), goal)
        dx, dz = (target - position)[[0, 2]]
        turn = (math.atan2(-dx, -dz) - info["heading"] + math.pi) % (2 * math.pi) - math.pi  # 0 looks along -z
        if abs(turn) <= math.radians(self.base.turn_degrees) / 2:
            return 0
        return 1 if turn > 0 else 2


# -- command line: ``btnk-env pointnav`` ------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env pointnav``."""
    parser.add_argument("--scene", required=True, help="the scene (.glb), e.g. from btnk-env export-scene")
    parser.add_argument("--out", required=True, help="the dataset to write, e.g. apartment.pointnav.json.gz")
    parser.add_argument("--num-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="episode i is drawn from (seed, i)")
    parser.add_argument("--goal-distance", type=float, nargs=2, default=(1.0, 10.0), metavar=("MIN", "MAX"),
                        help="geodesic start-to-goal distance in metres")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    """Write a PointNav dataset for ``--scene`` (``btnk-env pointnav``)."""
    from btnk_env.envs.habitat import HabitatPanoramaEnv

    if args.num_episodes < 1:
        raise ValueError(f"--num-episodes must be >= 1, got {args.num_episodes}")
    out = Path(args.out)
    env = HabitatPanoramaEnv(args.scene, height=16, goal_distance=tuple(args.goal_distance))
    try:
        episodes = sample_pointnav_episodes(env, args.num_episodes, args.seed,
                                            scene_id=os.path.relpath(Path(args.scene).resolve(), out.resolve().parent))
    finally:
        env.close()
    write_pointnav(out, episodes, overwrite=args.overwrite)
    mean = sum(ep.geodesic_distance for ep in episodes) / len(episodes)
    print(f"wrote {out}: {len(episodes)} PointNav episodes in {args.scene} (mean geodesic distance {mean:.2f} m)")
    return 0
