"""HabitatPanoramaEnv against a stand-in of habitat-sim that cannot invent API.

habitat-sim cannot be installed here, so these tests inject a stand-in ``habitat_sim`` module into
``sys.modules``. The stand-in is held to ``tests/habitat_api.json``, the list of public
habitat-sim names the adapter uses, each read from habitat-sim's source with the release it first
appears in: every stand-in module and object refuses any public name not on that list for the
habitat-sim version it plays (0.2.2 or 0.3.3), and a static scan of the adapter's source checks
the names it touches. The stand-in behaves like the real simulator where the adapter once went
wrong on it:

1. there is no ``Simulator.geodesic_distance`` (distances come from ``ShortestPath`` and
   ``pathfinder.find_path``, infinite between islands);
2. the navmesh of its closed 8 x 8 m room has a second, larger island on the roof, and
   ``get_random_navigable_point`` samples both;
3. its equirectangular depth is the planar depth of each cube face;
4. a simulator whose scene failed to load and that is still alive when another one is created or
   collected counts as the process abort ``GL::Context::current(): no current context``.
5. resolutions are Eigen vectors up to 0.3.0 (a Python list crashes pybind11 2.9 with NumPy 2)
   and Magnum vectors from 0.3.1; a headless machine without a CUDA EGL device cannot render.
"""

from __future__ import annotations

import ast
import functools
import gc
import importlib.util
import json
import math
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from btnk_env.collection import collect_panoramas, load_manifest

pytestmark = pytest.mark.habitat

API = json.loads((Path(__file__).with_name("habitat_api.json")).read_text(encoding="utf-8"))
VERSIONS = ("0.2.2", "0.3.3")
ADAPTER = Path(__file__).resolve().parents[1] / "btnk_env" / "envs" / "habitat.py"

FLOOR_Y, ROOF_Y, HALF = 0.1, 3.3, 4.0  # the stand-in's floor and roof navmesh heights, room half-width
CEILING_Y = 3.0
ABORT = "GL::Context::current(): no current context"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("."))


def _allowed(owner: str, version: str) -> frozenset:
    return frozenset(n for n, m in API["owners"].get(owner, {}).items() if _version(m["since"]) <= _version(version))


class _Strict:
    """A stand-in object whose public attributes are limited to the API list's members of its owner."""

    _allowed: frozenset = frozenset()
    _owner = ""

    def __getattribute__(self, name):
        if not name.startswith("_") and name not in type(self)._allowed:
            raise AttributeError(f"{type(self)._owner} has no attribute {name!r} (not in tests/habitat_api.json)")
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_") and name not in type(self)._allowed:
            raise AttributeError(f"{type(self)._owner} has no attribute {name!r} (not in tests/habitat_api.json)")
        object.__setattr__(self, name, value)


class _StrictModule(types.ModuleType):
    """A stand-in module whose public names are limited to the API list's members of the module."""

    def __getattribute__(self, name):
        allowed = types.ModuleType.__getattribute__(self, "_allowed_names")
        if not name.startswith("_") and name not in allowed:
            raise AttributeError(f"module {types.ModuleType.__getattribute__(self, '__name__')!r} "
                                 f"has no attribute {name!r} (not in tests/habitat_api.json)")
        return types.ModuleType.__getattribute__(self, name)


def _module(name: str, version: str, **members) -> _StrictModule:
    mod = _StrictModule(name)
    mod._allowed_names = _allowed(name, version)
    for key, value in members.items():
        setattr(mod, key, value)
    return mod


def _restrict(owner: str, version: str):
    """Class decorator: limit a stand-in class to the listed members of ``owner`` at ``version``."""

    def decorate(cls):
        cls._owner, cls._allowed = owner, _allowed(owner, version)
        return cls

    return decorate


def pixel_directions(height: int, width: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` unit rays of the panorama pixel centres in the camera frame (x right, y up, -z ahead);
    ``W`` defaults to ``2H``."""
    width = 2 * height if width is None else width
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
    lon = (np.arange(width) + 0.5) / width * 2 * np.pi - np.pi
    lat, lon = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.sin(lon) * np.cos(lat), np.sin(lat), -np.cos(lon) * np.cos(lat)], -1)


def room_ray_distance(eye: np.ndarray, heading: float, height: int, width: int | None = None) -> np.ndarray:
    """``(H, W)`` distance along each pixel's ray from ``eye`` to the closed box room (walls at +-4 m,
    floor at 0, ceiling at 3 m)."""
    d = pixel_directions(height, width)
    c, s = math.cos(heading), math.sin(heading)
    world = np.stack([c * d[..., 0] + s * d[..., 2], d[..., 1], -s * d[..., 0] + c * d[..., 2]], -1)
    lo, hi = np.array([-HALF, 0.0, -HALF]), np.array([HALF, CEILING_Y, HALF])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(world > 0, (hi - eye) / world, np.where(world < 0, (lo - eye) / world, np.inf))
    return t.min(-1)


def room_edge_pixels(eye: np.ndarray, heading: float, height: int) -> np.ndarray:
    """``(H, 2H)`` bool: pixels next to one whose ray ends on another face of the room (their footprint
    straddles an edge, where a rasterizer and a ray through the pixel centre may see different faces)."""
    d = pixel_directions(height)
    c, s = math.cos(heading), math.sin(heading)
    world = np.stack([c * d[..., 0] + s * d[..., 2], d[..., 1], -s * d[..., 0] + c * d[..., 2]], -1)
    lo, hi = np.array([-HALF, 0.0, -HALF]), np.array([HALF, CEILING_Y, HALF])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(world > 0, (hi - eye) / world, np.where(world < 0, (lo - eye) / world, np.inf))
    face = t.argmin(-1) * 2 + (world[np.arange(height)[:, None], np.arange(2 * height), t.argmin(-1)] > 0)
    padded = np.pad(face, 1, mode="edge")
    padded[:, 0], padded[:, -1] = padded[:, -2], padded[:, 1]  # the panorama wraps around in azimuth
    return np.any([padded[1 + i:1 + i + height, 1 + j:1 + j + 2 * height] != face
                   for i in (-1, 0, 1) for j in (-1, 0, 1)], axis=0)


class _Quat:
    """Stand-in for ``np.quaternion`` (w, x, y, z)."""

    def __init__(self, w=1.0, x=0.0, y=0.0, z=0.0):
        self.w, self.x, self.y, self.z = w, x, y, z


def _copy_into_missing() -> bool:
    """Whether NumPy's ``PyArray_CopyInto`` slot is NULL in this process (NumPy 2 without a shim)."""
    try:
        from btnk_env.envs.habitat_bindings import numpy_copy_into_available
    except ImportError:  # an adapter without the detector: NumPy 2 has no slot 82 of its own
        return int(np.__version__.split(".")[0]) >= 2
    return not numpy_copy_into_available()


def _fake_habitat_sim(version: str):
    """The stand-in modules for habitat-sim ``version``: ``{module name: module}``."""
    magnum_specs = _version(version) >= (0, 3, 1)
    state = types.SimpleNamespace(calls=[], live=[], aborts=[], egl_without_cuda=False, version=version, current=None)

    def _segfault(what: str):
        """pybind11 2.9 (habitat-sim <= 0.3.0) converting into an Eigen vector calls NumPy's PyArray_CopyInto,
        which NumPy 2 left NULL: the real process ends with SIGSEGV (unless a shim filled the slot)."""
        if _copy_into_missing():
            state.aborts.append(f"segfault: {what} through PyArray_CopyInto under NumPy 2")
            raise RuntimeError(f"stand-in for the segfault of {what} (PyArray_CopyInto is NULL in NumPy 2)")

    class _MagnumVector:
        size, cast = 3, float

        def __init__(self, *values):
            assert len(values) == self.size
            self._v = tuple(self.cast(v) for v in values)

        def __getitem__(self, i):
            return self._v[i]

        def __array__(self, dtype=None, copy=None):
            return np.array(self._v, dtype=dtype)

    class Vector2i(_MagnumVector):
        size, cast = 2, int

    class Vector3(_MagnumVector):
        pass

    class _Vector:
        """A spec or path vector member: an Eigen ``def_readwrite`` member up to 0.3.0 (the getter is a
        read-only NumPy view of the C++ storage; assigning converts through PyArray_CopyInto), a Magnum
        vector from 0.3.1 (assigning anything else is a TypeError; ``arrays``: a typed NumPy array too,
        as the path vectors were always given)."""

        def __init__(self, default, dtype, arrays=False):
            self.default, self.dtype, self.arrays = default, dtype, arrays

        def __set_name__(self, owner, name):
            self.name = name

        def _storage(self, obj):
            return obj.__dict__.setdefault("_" + self.name, np.array(self.default, self.dtype))

        def __get__(self, obj, objtype=None):
            if obj is None:
                return self
            if magnum_specs:
                return (Vector3 if len(self.default) == 3 else Vector2i)(*self._storage(obj).tolist())
            view = self._storage(obj).view()
            view.flags.writeable = False
            return view

        def __set__(self, obj, value):
            if magnum_specs:
                expected = Vector2i if len(self.default) == 2 else Vector3
                typed = isinstance(value, np.ndarray) and value.shape == (len(self.default),) and value.dtype == self.dtype
                if not isinstance(value, expected) and not (self.arrays and typed):
                    raise TypeError(f"incompatible function arguments: expected magnum.{expected.__name__}")
            else:
                _segfault(f"setting {self.name}")
                arr = np.asarray(value)
                if arr.shape != (len(self.default),) or arr.dtype.kind != np.dtype(self.dtype).kind:
                    raise TypeError(f"expected a ({len(self.default)},) {self.dtype} array, got {arr.dtype} {arr.shape}")
            self._storage(obj)[...] = np.asarray(value)

    def _point(value, argument: bool = False) -> np.ndarray:
        if argument and not magnum_specs:
            _segfault("an Eigen argument")
        arr = np.asarray(value)
        if arr.shape != (3,) or (not magnum_specs and arr.dtype != np.float32):
            raise TypeError(f"expected a (3,) float32 point, got {arr.dtype} {arr.shape}")
        return arr.astype(np.float64)

    @_restrict(owner="habitat_sim.SensorType", version=version)
    class SensorType(_Strict):
        COLOR, DEPTH = "COLOR", "DEPTH"

    @_restrict(owner="habitat_sim.SimulatorConfiguration", version=version)
    class SimulatorConfiguration(_Strict):
        def __init__(self):
            self.scene_id, self.scene_dataset_config_file, self.gpu_device_id = "", "default", 0

    @_restrict(owner="habitat_sim.EquirectangularSensorSpec", version=version)
    class EquirectangularSensorSpec(_Strict):
        resolution = _Vector((128, 128), np.int32)
        position = _Vector((0.0, 1.5, 0.0), np.float32)

        def __init__(self):
            self.uuid, self.sensor_type = "equirectangular", "COLOR"

    @_restrict(owner="habitat_sim.agent.ActuationSpec", version=version)
    class ActuationSpec(_Strict):
        def __init__(self, amount, constraint=None):
            self.amount = amount

    @_restrict(owner="habitat_sim.agent.ActionSpec", version=version)
    class ActionSpec(_Strict):
        def __init__(self, name, actuation=None):
            self.name, self.actuation = name, actuation

    @_restrict(owner="habitat_sim.agent.AgentConfiguration", version=version)
    class AgentConfiguration(_Strict):
        def __init__(self):
            self.sensor_specifications, self.action_space = [], {}

    @_restrict(owner="habitat_sim.AgentState", version=version)
    class AgentState(_Strict):
        def __init__(self, position=None, rotation=None):
            self.position = np.zeros(3, np.float32) if position is None else position
            self.rotation = _Quat() if rotation is None else rotation

    class Configuration:
        def __init__(self, sim_cfg, agents):
            self._sim_cfg, self._agents = sim_cfg, agents

    @_restrict(owner="habitat_sim.agent.Agent", version=version)
    class Agent(_Strict):
        def __init__(self, cfg):
            self._cfg, self._state = cfg, AgentState()

        def get_state(self):
            s = self._state
            q = s.rotation
            return AgentState(np.array(s.position, np.float32), _Quat(q.w, q.x, q.y, q.z))

        def set_state(self, new_state, reset_sensors=True):
            assert isinstance(new_state.rotation, _Quat) and np.asarray(new_state.position).shape == (3,)
            state.calls.append(("set_state", np.array(new_state.position), new_state.rotation.y))
            self._state = AgentState(np.array(new_state.position, np.float32), new_state.rotation)

    @_restrict(owner="habitat_sim.ShortestPath", version=version)
    class ShortestPath(_Strict):
        requested_start = _Vector((0.0, 0.0, 0.0), np.float32, arrays=True)
        requested_end = _Vector((0.0, 0.0, 0.0), np.float32, arrays=True)

        def __init__(self):
            self.geodesic_distance, self.points = math.inf, []

    def _island(p: np.ndarray) -> str:
        return "floor" if abs(p[1] - FLOOR_Y) < 0.5 else "roof"

    @_restrict(owner="habitat_sim.nav.PathFinder", version=version)
    class PathFinder(_Strict):
        """Two islands: the floor inside the walls (7.8 x 7.8 m) and the roof on top (8.1 x 8.1 m)."""

        def __init__(self):
            self._rng = np.random.default_rng(0)

        def seed(self, value):
            assert isinstance(value, int)
            self._rng = np.random.default_rng(value)

        def get_random_navigable_point(self, max_tries=10):
            floor, roof = (2 * (HALF - 0.1)) ** 2, (2 * (HALF + 0.05)) ** 2
            if self._rng.random() < floor / (floor + roof):
                x, z = self._rng.uniform(-(HALF - 0.1), HALF - 0.1, size=2)
                p = (x, FLOOR_Y, z)
            else:
                x, z = self._rng.uniform(-(HALF + 0.05), HALF + 0.05, size=2)
                p = (x, ROOF_Y, z)
            return Vector3(*p) if magnum_specs else np.array(p, np.float32)

        def island_radius(self, pt):
            half = HALF - 0.1 if _island(_point(pt, argument=True)) == "floor" else HALF + 0.05
            return half * math.sqrt(2.0)

        def find_path(self, path):
            a, b = (np.asarray(p, np.float64) for p in (path.requested_start, path.requested_end))
            found = _island(a) == _island(b)
            path.geodesic_distance = float(np.linalg.norm(a - b)) if found else math.inf
            path.points = [a.astype(np.float32), b.astype(np.float32)] if found else []
            return found

    @_restrict(owner="habitat_sim.Simulator", version=version)
    class Simulator(_Strict):
        """One GL context current per process: a simulator created while a context is current draws
        in that one (``Simulator::reconfigure`` makes its own only when none is); closing the
        simulator that made it destroys it, and any use of a simulator drawing in a destroyed
        context is the abort ``GL::Context::current(): no current context``."""

        def __init__(self, config):
            assert isinstance(config, Configuration)
            if any(token.broken for token in state.live):
                state.aborts.append("a simulator was created while a failed one was still alive")
                raise RuntimeError(ABORT)
            if state.egl_without_cuda:
                raise RuntimeError("Platform::WindowlessEglApplication::tryCreateContext(): "
                                   "unable to find EGL device for CUDA device 0")
            self._token = types.SimpleNamespace(broken=False)  # in state.live while this simulator lives
            state.live.append(self._token)  # the GL context exists before the scene loads
            self._owns_context = state.current is None
            if self._owns_context:
                state.current = types.SimpleNamespace(alive=True)
            self._context = state.current
            state.calls.append(("Simulator", config))
            self._config, self._agents = config, {}
            self.pathfinder = PathFinder()
            self._load(config)

        def _gl(self, what: str) -> None:
            if not self._context.alive:
                state.aborts.append(f"{what} of a simulator whose GL context (another simulator's) was destroyed")
                raise RuntimeError(ABORT)

        def _load(self, config):
            if "missing" in config._sim_cfg.scene_id:
                self._token.broken = True
                raise RuntimeError(f"cannot load {config._sim_cfg.scene_id}")

        def __del__(self):
            token = self.__dict__.get("_token")
            if token is not None and any(t is token for t in state.live):
                if token.broken and len(state.live) > 1:
                    state.aborts.append("a failed simulator was collected under another one's GL context")
                state.live.remove(token)

        def initialize_agent(self, agent_id):
            assert agent_id in (0, 1) and agent_id < len(self._config._agents)
            self._agents[agent_id] = Agent(self._config._agents[agent_id])
            return self._agents[agent_id]

        def seed(self, value):
            state.calls.append(("seed", value))

        def reconfigure(self, config):
            self._gl("reconfigure")
            state.calls.append(("reconfigure", config))
            self._load(config)
            self._config, self._agents = config, {}

        def step(self, action):
            agent = self._agents[0]
            spec = agent._cfg.action_space[action]  # KeyError for unknown names
            s = agent._state
            heading = 2 * math.atan2(s.rotation.y, s.rotation.w)
            collided = False
            if spec.name == "move_forward":
                p = np.array(s.position, float) + spec.actuation.amount * np.array([-math.sin(heading), 0, -math.cos(heading)])
                collided = bool(np.any(np.abs(p[[0, 2]]) > HALF - 0.1))
                p[[0, 2]] = np.clip(p[[0, 2]], -(HALF - 0.1), HALF - 0.1)
                s.position = p.astype(np.float32)
            else:
                heading += math.radians(spec.actuation.amount) * (1 if spec.name == "turn_left" else -1)
                s.rotation = _Quat(math.cos(heading / 2), 0.0, math.sin(heading / 2), 0.0)
            obs = self.get_sensor_observations()
            obs["collided"] = collided
            return obs

        def get_sensor_observations(self, agent_ids=0):
            self._gl("drawing")
            agent = self._agents[agent_ids]
            s = agent._state
            heading = 2 * math.atan2(s.rotation.y, s.rotation.w)
            out = {}
            for spec in agent._cfg.sensor_specifications:
                h, w = (int(v) for v in np.asarray(spec.resolution))
                if spec.sensor_type == "COLOR":
                    img = np.empty((h, w, 4), np.uint8)
                    img[..., 0] = (np.arange(w) + int(round(math.degrees(heading)))) % 256
                    img[..., 1] = int(abs(s.position[0]) * 20) % 256
                    img[..., 2] = int(abs(s.position[2]) * 20) % 256
                    img[..., 3] = 255
                    out[spec.uuid] = img
                else:  # planar depth of each cube face, as habitat-sim's cube-map sensors give it
                    eye = np.array(s.position, float) + np.asarray(spec.position, float)
                    planar = room_ray_distance(eye, heading, h, w) * np.abs(pixel_directions(h, w)).max(-1)
                    out[spec.uuid] = planar.astype(np.float32)
            return out

        def close(self, destroy=True):
            self._gl("close")
            state.calls.append(("close",))
            if any(t is self._token for t in state.live):
                state.live.remove(self._token)
            if self._owns_context:
                self._context.alive = False
                state.current = None

    def quat_from_angle_axis(theta, axis):
        axis = np.asarray(axis, float) / np.linalg.norm(axis)
        sin = math.sin(theta / 2)
        return _Quat(math.cos(theta / 2), *(axis * sin))

    def quat_to_coeffs(q):
        return np.array([q.x, q.y, q.z, q.w])

    common = _module("habitat_sim.utils.common", version, quat_from_angle_axis=quat_from_angle_axis,
                     quat_to_coeffs=quat_to_coeffs)
    utils = _module("habitat_sim.utils", version, common=common)
    agent = _module("habitat_sim.agent", version, AgentConfiguration=AgentConfiguration, ActionSpec=ActionSpec,
                    ActuationSpec=ActuationSpec)
    hs = _module("habitat_sim", version, __version__=version, Simulator=Simulator, Configuration=Configuration,
                 SimulatorConfiguration=SimulatorConfiguration, SensorType=SensorType,
                 EquirectangularSensorSpec=EquirectangularSensorSpec, ShortestPath=ShortestPath,
                 AgentState=AgentState, agent=agent, utils=utils)
    hs._state = state
    modules = {"habitat_sim": hs, "habitat_sim.agent": agent, "habitat_sim.utils": utils,
               "habitat_sim.utils.common": common, "magnum": None}
    if magnum_specs:
        modules["magnum"] = _module("magnum", version, Vector2i=Vector2i, Vector3=Vector3)
    return modules


def install_stand_in(version: str, monkeypatch=None):
    """Put the stand-in of habitat-sim ``version`` in ``sys.modules`` (through ``monkeypatch`` when
    given); returns the stand-in ``habitat_sim`` module."""
    modules = _fake_habitat_sim(version)
    for name, module in modules.items():
        if monkeypatch is None:
            sys.modules[name] = module
        else:
            monkeypatch.setitem(sys.modules, name, module)
    if monkeypatch is None:
        os.environ["HSIM_DISABLE_CUDA_DEVICE"] = "1"
    else:
        monkeypatch.setenv("HSIM_DISABLE_CUDA_DEVICE", "1")  # this machine has no CUDA EGL device
    return modules["habitat_sim"]


def _simulate_exit(hs) -> None:
    """What interpreter exit does to the simulators still open, then the stand-in's abort check."""
    from btnk_env.envs.habitat_bindings import close_all_simulators

    close_all_simulators()
    gc.collect()
    if hs is not None:
        assert not hs._state.aborts, hs._state.aborts


@pytest.fixture(params=VERSIONS)
def fake_hs(request, monkeypatch):
    """The stand-in of habitat-sim ``0.2.2`` or ``0.3.3``; fails the test on a simulated abort or segfault."""
    hs = install_stand_in(request.param, monkeypatch)
    yield hs
    _simulate_exit(hs)


REAL = "real"
"""The backend name of the real habitat-sim, tested where ``import habitat_sim`` finds it."""
BACKENDS = VERSIONS + ((REAL,) if importlib.util.find_spec("habitat_sim") is not None else ())


def box_room_glb(path: Path) -> Path:
    """Write the stand-in's room for the real simulator: 8 x 8 m inside (walls' inner faces at
    +-4 m), floor at y = 0, ceiling at 3 m, 0.1 m thick slabs, as a Z-up ``.glb`` stage."""
    import trimesh

    t, r, top = 0.1, HALF, CEILING_Y
    slabs = [([2 * r + 2 * t, t, 2 * r + 2 * t], [0, -t / 2, 0]), ([2 * r + 2 * t, t, 2 * r + 2 * t], [0, top + t / 2, 0]),
             ([t, top, 2 * r], [-r - t / 2, top / 2, 0]), ([t, top, 2 * r], [r + t / 2, top / 2, 0]),
             ([2 * r, top, t], [0, top / 2, -r - t / 2]), ([2 * r, top, t], [0, top / 2, r + t / 2])]
    meshes = []
    for i, (extents, centre) in enumerate(slabs):
        mesh = trimesh.creation.box(extents=extents)
        mesh.apply_translation(centre)
        colour = np.array([60 + 30 * i, 200 - 25 * i, 90 + 20 * i, 255], np.uint8)
        mesh.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(
            baseColorFactor=colour, metallicFactor=0.0, roughnessFactor=1.0))
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # Y-up -> Z-up file
        meshes.append(mesh)
    trimesh.Scene(meshes).export(path)
    return path


class Backend:
    """A habitat-sim to test against: the stand-in at a version, or the real simulator.

    ``scene`` is the 8 x 8 m box room in both; ``stand_in`` the stand-in ``habitat_sim`` module (None
    on the real simulator); ``atol`` the tolerance of positions and distances (metres): rendering and
    the navmesh of the real simulator are exact to millimetres, the stand-in to rounding.
    """

    def __init__(self, name: str, scene: str, stand_in=None):
        self.name, self.scene, self.stand_in = name, scene, stand_in
        self.atol = 1e-5 if stand_in is not None else 0.01

    @property
    def real(self) -> bool:
        return self.stand_in is None

    def env(self, **kwargs):
        return _env(scene=self.scene, **kwargs)

    def factory(self, **kwargs):
        """A picklable factory of ``self.env(**kwargs)`` for spawned processes (which install the stand-in)."""
        return functools.partial(make_env_in_process, None if self.real else self.name, self.scene, kwargs)


def make_env_in_process(version: str | None, scene: str, kwargs: dict):
    """A HabitatPanoramaEnv in this (spawned) process: on the stand-in ``version``, or the real simulator."""
    if version is not None:
        install_stand_in(version)
    return _env(scene=scene, **kwargs)


@pytest.fixture(scope="session")
def real_room(tmp_path_factory) -> str:
    return str(box_room_glb(tmp_path_factory.mktemp("habitat") / "box_room.glb"))


@pytest.fixture(params=BACKENDS)
def hab(request, monkeypatch):
    """Each stand-in version and, where it is importable, the real habitat-sim, in the box room."""
    if request.param == REAL:
        monkeypatch.setenv("HABITAT_SIM_LOG", "quiet")
        monkeypatch.setenv("MAGNUM_LOG", "quiet")
        yield Backend(REAL, request.getfixturevalue("real_room"))
        _simulate_exit(None)
        return
    hs = install_stand_in(request.param, monkeypatch)
    yield Backend(request.param, "data/scene_datasets/apt_0/apt_0.glb", hs)
    _simulate_exit(hs)


def _env(scene="data/scene_datasets/apt_0/apt_0.glb", **kwargs):
    from btnk_env.envs.habitat import HabitatPanoramaEnv

    return HabitatPanoramaEnv(scene, height=kwargs.pop("height", 16), **kwargs)


# -- the API list ---------------------------------------------------------------------------------
def _stand_in_public_names(modules) -> set[str]:
    """``owner.name`` of every public name the stand-in offers."""
    names = set()
    for mod_name, mod in modules.items():
        if mod is None:
            continue
        for key in types.ModuleType.__getattribute__(mod, "__dict__"):
            if key.startswith("_"):
                continue
            names.add(f"{mod_name}.{key}")
            value = types.ModuleType.__getattribute__(mod, key)
            if isinstance(value, type) and issubclass(value, _Strict):
                for attr in vars(value):
                    if not attr.startswith("_"):
                        names.add(f"{value._owner}.{attr}")
    return names


@pytest.mark.parametrize("version", VERSIONS)
def test_stand_in_offers_only_listed_names(version):
    modules = _fake_habitat_sim(version)
    listed = {f"{owner}.{name}" for owner in API["owners"] for name in _allowed(owner, version)}
    assert _stand_in_public_names(modules) <= listed
    hs = modules["habitat_sim"]
    with pytest.raises(AttributeError, match="not in tests/habitat_api.json"):
        hs.Simulator.__getattribute__(object.__new__(hs.Simulator), "geodesic_distance")
    with pytest.raises(AttributeError, match="not in tests/habitat_api.json"):
        hs.Simulator.__getattribute__(object.__new__(hs.Simulator), "close_all")
    with pytest.raises(AttributeError, match="not in tests/habitat_api.json"):
        hs.NavMeshSettings  # noqa: B018  (real, but unused by the adapter: not on the list)


# variables of the adapter that hold habitat-sim objects, and the API owner of each
_ROOTS = {
    "hs": "habitat_sim", "habitat_sim": "habitat_sim", "magnum": "magnum", "mn": "magnum",
    "sim": "habitat_sim.Simulator", "pathfinder": "habitat_sim.nav.PathFinder", "pf": "habitat_sim.nav.PathFinder",
    "agent": "habitat_sim.agent.Agent", "path": "habitat_sim.ShortestPath",
    "spec": "habitat_sim.EquirectangularSensorSpec", "sim_cfg": "habitat_sim.SimulatorConfiguration",
    "agent_cfg": "habitat_sim.agent.AgentConfiguration", "state": "habitat_sim.AgentState",
}


def _attribute_uses(source: str) -> set[str]:
    """``owner.name`` for each attribute the adapter reads or writes on a habitat-sim object.

    Chains start at a variable of ``_ROOTS`` (also as ``self.<root>`` or ``self._<root>``) and walk
    through modules and the ``pathfinder`` attribute, e.g. ``self.sim.pathfinder.find_path`` ->
    ``habitat_sim.nav.PathFinder.find_path`` and ``hs.agent.ActionSpec`` -> ``habitat_sim.agent.ActionSpec``.
    """
    uses = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        chain.reverse()
        if isinstance(base, ast.Name) and base.id == "self" and chain:
            root, chain = chain[0].lstrip("_"), chain[1:]
        elif isinstance(base, ast.Name):
            root = base.id
        else:
            continue
        if root not in _ROOTS or not chain:
            continue
        owner = _ROOTS[root]
        for name in chain[:-1]:
            if owner == "habitat_sim.Simulator" and name == "pathfinder":
                owner = "habitat_sim.nav.PathFinder"
            elif f"{owner}.{name}" in API["owners"]:  # a module or class of the list
                owner = f"{owner}.{name}"
            else:
                break
        else:
            uses.add(f"{owner}.{chain[-1]}")
            continue
        uses.add(f"{owner}.{name}")
    return uses


def test_adapter_uses_only_listed_names():
    listed = {f"{owner}.{name}" for owner, members in API["owners"].items() for name in members}
    uses = _attribute_uses(ADAPTER.read_text(encoding="utf-8"))
    assert "habitat_sim.nav.PathFinder.find_path" in uses and "habitat_sim.ShortestPath.geodesic_distance" in uses
    assert uses - listed == set()


def test_static_scan_catches_an_invented_name():
    listed = {f"{owner}.{name}" for owner, members in API["owners"].items() for name in members}
    source = "def f(self, hs):\n    return self.sim.geodesic_distance(a, b), self.sim.pathfinder.num_islands, hs.PathFinder\n"
    assert _attribute_uses(source) - listed == {"habitat_sim.Simulator.geodesic_distance",
                                                "habitat_sim.nav.PathFinder.num_islands", "habitat_sim.PathFinder"}


# -- behaviour ------------------------------------------------------------------------------------
def test_missing_habitat_sim_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # makes `import habitat_sim` fail
    from btnk_env.envs.habitat import HabitatPanoramaEnv

    with pytest.raises(ImportError, match=r"conda install habitat-sim -c conda-forge -c aihabitat") as err:
        HabitatPanoramaEnv("scene.glb")
    assert "headless" in str(err.value) and "pip install habitat-sim-uv-wheels-experimental" in str(err.value)


def _vec(value) -> tuple:
    return tuple(np.asarray(value).tolist())


def test_configuration_uses_an_equirectangular_sensor_and_habitat_actions(fake_hs):
    env = _env(height=32, depth=True, turn_degrees=10.0, scene_dataset_config="hssd.scene_dataset_config.json")
    config = next(c[1] for c in fake_hs._state.calls if c[0] == "Simulator")
    assert config._sim_cfg.scene_id == "data/scene_datasets/apt_0/apt_0.glb"
    assert config._sim_cfg.scene_dataset_config_file == "hssd.scene_dataset_config.json"
    agent_cfg, probe_cfg = config._agents
    rgb, depth = agent_cfg.sensor_specifications
    assert isinstance(rgb, fake_hs.EquirectangularSensorSpec)
    assert (rgb.uuid, rgb.sensor_type, _vec(rgb.resolution)) == ("rgb", "COLOR", (32, 64))
    assert (depth.uuid, depth.sensor_type, _vec(depth.resolution)) == ("depth", "DEPTH", (32, 64))
    assert _vec(rgb.position) == (0.0, 1.5, 0.0)
    (probe,) = probe_cfg.sensor_specifications  # agent 1: the depth probe of the floor offset
    assert probe.sensor_type == "DEPTH"
    amounts = {k: (v.name, v.actuation.amount) for k, v in agent_cfg.action_space.items()}
    assert amounts == {"move_forward": ("move_forward", 0.25), "turn_left": ("turn_left", 10.0),
                       "turn_right": ("turn_right", 10.0)}
    assert env.scene_id == "apt_0"
    env.reset(seed=0)  # the sensors go down by the navmesh's height above the floor
    assert env.floor_offset == pytest.approx(FLOOR_Y, abs=1e-5)
    assert _vec(rgb.position) == pytest.approx((0.0, 1.5 - FLOOR_Y, 0.0), abs=1e-6)
    env.close()
    assert fake_hs._state.calls[-1] == ("close",)


@pytest.mark.parametrize("depth", [False, True])
def test_check_env_and_observation_contract(hab, depth):
    env = hab.env(depth=depth)
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=0)
    rgb = obs["rgb"] if depth else obs
    assert rgb.shape == (16, 32, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous  # alpha dropped
    assert env.observation_space.contains(obs)
    if depth:
        assert obs["depth"].shape == (16, 32, 1) and obs["depth"].dtype == np.float32
    assert set(info) >= {"position", "heading", "scene", "goal_position", "distance_to_goal", "collided", "success"}
    env.close()


def test_actions_move_and_turn_the_habitat_agent(hab):
    env = hab.env()
    env.reset(seed=1, options={"pose": ((0.0, 0.0, 0.0), 0.0), "goal": (0.0, 0.0, -3.0)})
    _, reward, *_, info = env.step(0)
    assert np.allclose(info["position"], [0.0, 0.0, -0.25], atol=hab.atol)  # floor level: y = 0
    assert reward == pytest.approx(0.25 - env.STEP_PENALTY, abs=hab.atol)
    _, _, _, _, info = env.step(1)
    assert info["heading"] == pytest.approx(math.radians(30), abs=1e-4)
    _, _, _, _, info = env.step(2)
    assert info["heading"] == pytest.approx(0.0, abs=1e-4)
    env.set_pose((0.0, 0.0, -3.85), 0.0)
    _, _, _, _, info = env.step(0)
    assert info["collided"]
    env.close()


def test_reaching_the_goal_terminates(hab):
    env = hab.env(goal_radius=0.5)
    env.reset(seed=1, options={"pose": ((1.0, 0.0, 1.0), 0.0), "goal": (1.0, 0.0, 0.4)})
    _, reward, terminated, _, info = env.step(0)
    assert terminated and info["success"] and reward > env.SUCCESS_REWARD
    env.close()


def test_pose_methods_round_trip_and_sampling_is_seeded(hab):
    env = hab.env()
    env.reset(seed=0)
    a = env.sample_navigable_pose(np.random.default_rng(5))
    b = env.sample_navigable_pose(np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[0].shape == (3,)
    env.set_pose(a[0], a[1])
    position, heading = env.get_pose()
    assert np.allclose(position, a[0], atol=1e-5) and heading == pytest.approx(a[1], abs=1e-5)
    env.set_pose((2.0, -1.0), 3.0)  # (x, z) keeps the current floor height
    position, heading = env.get_pose()
    assert np.allclose(position, [2.0, a[0][1], -1.0], atol=hab.atol) and heading == pytest.approx(3.0, abs=1e-5)
    env.close()


def test_reset_can_switch_scenes(fake_hs):
    env = _env()
    _, info = env.reset(seed=0, options={"scene": "other/house_7.glb"})
    reconfig = [c[1] for c in fake_hs._state.calls if c[0] == "reconfigure"]
    assert len(reconfig) == 1 and reconfig[0]._sim_cfg.scene_id == "other/house_7.glb"
    assert info["scene"] == "house_7"
    env.close()


def test_collector_drives_the_habitat_env(hab, tmp_path):
    env = hab.env()
    root = collect_panoramas(env, tmp_path / "hab", 12, mode="walk", seeds=[0, 1], frames_per_scene=4, progress=False)
    records = load_manifest(root)
    assert len(records) == 12 and {r["scene"] for r in records} == {Path(hab.scene).stem}
    assert all(len(r["position"]) == 3 and r["position"][1] == pytest.approx(0.0, abs=hab.atol) for r in records)
    env.close()


# -- case 1: distances come from ShortestPath, not from a Simulator.geodesic_distance ---------------
def test_1_reset_and_reward_use_the_pathfinder(hab):
    env = hab.env(goal_distance=(1.0, 3.0))
    _, info = env.reset(seed=3)
    d = np.linalg.norm(info["position"] - info["goal_position"])
    assert 1.0 <= info["distance_to_goal"] <= 3.0 and info["distance_to_goal"] == pytest.approx(d, abs=hab.atol)
    roof = ROOF_Y - FLOOR_Y  # a floor-level point on the roof
    assert env.geodesic_distance((0.0, 0.0, 0.0), (0.0, roof, 0.0)) == math.inf  # no path between islands
    env.close()


# -- case 2: start and goal on the walkable floor, never on the roof --------------------------------
def test_2_poses_and_goals_stay_on_the_floor_island(hab):
    env = hab.env()
    heights = [env.sample_navigable_pose(np.random.default_rng(s))[0][1] for s in range(40)]
    assert heights == pytest.approx([0.0] * 40, abs=hab.atol)
    for seed in range(10):
        _, info = env.reset(seed=seed)
        assert info["position"][1] == pytest.approx(0.0, abs=hab.atol)
        assert info["goal_position"][1] == pytest.approx(0.0, abs=hab.atol)
    env.close()


# -- case 3: depth is distance along each ray, like the built-in world ------------------------------
def test_3_depth_is_distance_along_the_ray(hab):
    h = 32
    env = hab.env(height=h, depth=True)
    obs, _ = env.reset(seed=0, options={"pose": ((0.0, 0.0, 0.0), 0.0), "goal": (1.0, 0.0, 1.0)})
    eye = np.array([0.0, 1.5, 0.0])  # the eye 1.5 m above the floor
    truth = room_ray_distance(eye, 0.0, h)
    if hab.real:  # sampled from a cube map: exact where the depth varies slowly, off by up to a texel's
        error = np.abs(obs["depth"][..., 0] - truth)  # worth where it varies fast (floor and ceiling near the walls)
        inside = ~room_edge_pixels(eye, 0.0, h)
        assert np.median(error) < 0.001, np.median(error)  # 1.4e-5 m on habitat-sim 0.2.2 at H = 32
        assert (error[inside] / truth[inside]).max() < 0.05, (error[inside] / truth[inside]).max()  # 0.043 there
    else:
        assert np.allclose(obs["depth"][..., 0], truth, rtol=1e-5)
    # on the horizon 45 degrees to the side the ray meets the wall at 4 * sqrt(2) m
    row, col = h // 2 - 1, 3 * h // 4  # just above the horizon, 45 + 2.8 degrees to the right
    lat, lon = math.radians(90 - (row + 0.5) / h * 180), math.radians((col + 0.5) / (2 * h) * 360 - 180)
    expected = HALF / (math.cos(lat) * max(abs(math.sin(lon)), abs(math.cos(lon))))
    assert obs["depth"][row, col, 0] == pytest.approx(expected, rel=0.01 if hab.real else 1e-4)
    assert obs["depth"][row, col, 0] > 1.25 * HALF  # planar depth would be HALF / cos(lat), about 4.0
    env.close()


def test_3_nadir_depth_is_the_sensor_height_above_the_floor(hab):
    """The eye is sensor_height above the floor, not above the navmesh (which lies a cell higher)."""
    h = 32
    for sensor_height in (1.5, 1.25):
        env = hab.env(height=h, depth=True, sensor_height=sensor_height)
        obs, info = env.reset(seed=0, options={"pose": ((0.5, 0.0, -0.5), 0.3), "goal": (1.0, 0.0, 1.0)})
        nadir = float(np.median(obs["depth"][-1, :, 0]))  # the bottom row looks (almost) straight down
        assert abs(nadir - sensor_height) < 0.03, (sensor_height, nadir, env.floor_offset)
        assert 0.05 <= env.floor_offset <= 0.25 and info["position"][1] == pytest.approx(0.0, abs=hab.atol)
        obs, *_, info = env.step(0)
        assert abs(float(np.median(obs["depth"][-1, :, 0])) - sensor_height) < 0.03
        assert info["position"][1] == pytest.approx(0.0, abs=hab.atol)
        env.close()


def test_3_ray_depth_scale_is_the_inverse_largest_ray_component():
    from btnk_env.envs.habitat import ray_depth_scale

    for h in (16, 33):
        scale = ray_depth_scale(h)
        assert scale.shape == (h, 2 * h, 1) and scale.dtype == np.float32 and not scale.flags.writeable
        assert scale.min() >= 1.0 and scale.max() <= math.sqrt(3.0) + 1e-6
        assert np.allclose(scale[..., 0], 1.0 / np.abs(pixel_directions(h)).max(-1), rtol=1e-6)
    # straight ahead and straight up the ray is a cube face's axis: no change
    assert ray_depth_scale(64)[31:33, 63:65].min() == pytest.approx(1.0, abs=2e-3)
    assert ray_depth_scale(64)[0, :].max() == pytest.approx(1.0, abs=2e-3)


# -- case 4: a scene that fails to load leaves no live simulator behind -----------------------------
def test_4_failed_scene_switch_closes_the_simulator(fake_hs):
    env = _env()
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="missing.glb"):
        env.reset(options={"scene": "scenes/missing.glb"})
    assert fake_hs._state.live == []
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(seed=0)
    other = _env()  # the stand-in aborts here if the failed simulator were still alive
    other.reset(seed=0)
    other.close()


def test_4_failed_construction_leaves_no_live_simulator(fake_hs):
    with pytest.raises(RuntimeError, match="missing"):
        _env(scene="scenes/missing.glb")
    env = _env()  # the stand-in aborts here if the half-built simulator were still alive
    env.reset(seed=0)
    env.close()
    assert fake_hs._state.live == []


# -- case 5: headless machines without a CUDA EGL device, spec vector types ------------------------
def test_5_headless_machine_without_cuda_says_hsim_disable_cuda_device(fake_hs, monkeypatch):
    import btnk_env.envs.habitat as habitat

    monkeypatch.delenv("HSIM_DISABLE_CUDA_DEVICE")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(habitat, "_nvidia_device_visible", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(RuntimeError, match="HSIM_DISABLE_CUDA_DEVICE=1"):
        _env()
    assert fake_hs._state.live == []
    # where a build raises the EGL error instead of ending the process, the error says the same
    monkeypatch.setattr(habitat, "_nvidia_device_visible", lambda: True)
    fake_hs._state.egl_without_cuda = True
    with pytest.raises(RuntimeError, match="HSIM_DISABLE_CUDA_DEVICE=1"):
        _env()


def test_5_resolution_is_set_with_the_bindings_vector_type(fake_hs):
    env = _env(height=24)  # the stand-in segfaults on any Eigen assignment on 0.2.x (NumPy 2), refuses non-Magnum on 0.3.x
    spec = next(c[1] for c in fake_hs._state.calls if c[0] == "Simulator")._agents[0].sensor_specifications[0]
    assert _vec(spec.resolution) == (24, 48)
    env.close()


# -- case 6: NumPy 2 without any workaround ----------------------------------------------------------
NO_SHIM_SCRIPT = """
import os, sys
sys.path.extend(os.environ["NO_SHIM_SITE"].split(os.pathsep))  # site-packages without its .pth files (npshim.pth)
from btnk_env.envs.habitat import HabitatPanoramaEnv
from btnk_env.envs.habitat_bindings import numpy_copy_into_available
import numpy as np
assert "npshim" not in sys.modules and not numpy_copy_into_available(), "a NumPy workaround is loaded"
env = HabitatPanoramaEnv(sys.argv[1], height=16, depth=True)
obs, info = env.reset(seed=0)
for action in (0, 1, 0, 2):
    obs, reward, terminated, truncated, info = env.step(action)
print("NO-SHIM OK", np.__version__, f"nadir {float(np.median(obs['depth'][-1])):.3f}", f"d {info['distance_to_goal']:.3f}")
env.close()
"""


def test_6_numpy_2_without_a_workaround_does_not_crash(hab):
    """habitat-sim 0.2.x under NumPy 2 with no shim filling PyArray_CopyInto: no value reaches an Eigen
    conversion (the real simulator runs in a fresh interpreter without the kit's npshim.pth)."""
    import subprocess

    if hab.name == "0.3.3":
        pytest.skip("habitat-sim 0.3.1+ holds Magnum vectors: no NumPy conversion to avoid")
    if hab.real:
        import site

        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
                   NO_SHIM_SITE=os.pathsep.join(site.getsitepackages()))
        run = subprocess.run([sys.executable, "-S", "-c", NO_SHIM_SCRIPT, hab.scene], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0 and "NO-SHIM OK" in run.stdout, (run.returncode, run.stdout, run.stderr[-2000:])
        return
    env = hab.env(depth=True)  # the stand-in records a segfault for any Eigen assignment or argument
    env.reset(seed=0)
    env.step(0)
    assert math.isfinite(env.geodesic_distance((0.0, 0.0, 0.0), (1.0, 0.0, 1.0)))
    env.close()


def test_6_the_copy_into_detector_reads_numpys_table():
    from btnk_env.envs.habitat_bindings import numpy_copy_into_available

    shim = "npshim" in sys.modules  # the habitat kit's shim, loaded at interpreter start in its venv
    assert numpy_copy_into_available() == (int(np.__version__.split(".")[0]) < 2 or shim)


# -- case 7: many environments in one process ------------------------------------------------------
@pytest.mark.parametrize("order", ["creation", "reverse"])
def test_7_two_envs_close_in_either_order(hab, order):
    first, second = hab.env(), hab.env()
    a, _ = first.reset(seed=0, options={"pose": ((1.0, 0.0, 1.0), 0.5), "goal": (0.0, 0.0, 0.0)})
    b, _ = second.reset(seed=0, options={"pose": ((1.0, 0.0, 1.0), 0.5), "goal": (0.0, 0.0, 0.0)})
    assert np.array_equal(a, b)  # same pose, same frame
    first.step(0)
    second.step(1)
    closing = (first, second) if order == "creation" else (second, first)
    closing[0].close()
    obs, *_ = closing[1].step(0)  # the other one still draws
    assert obs.shape == (16, 32, 3)
    closing[1].close()
    third = hab.env()  # and a new one after both
    third.reset(seed=1)
    third.close()


def test_7_envs_left_open_are_closed_at_exit(hab):
    import subprocess

    if not hab.real:
        envs = [hab.env() for _ in range(3)]
        for env in envs:
            env.reset(seed=0)
        envs[0].close()
        return  # the fixture closes the rest as interpreter exit does, and fails on an abort
    script = ("import sys; from btnk_env.envs.habitat import HabitatPanoramaEnv\n"
              "envs = [HabitatPanoramaEnv(sys.argv[1], height=16) for _ in range(3)]\n"
              "[env.reset(seed=0) for env in envs]; envs[0].close(); print('LEFT OPEN')\n")
    run = subprocess.run([sys.executable, "-c", script, hab.scene], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "LEFT OPEN" in run.stdout, (run.returncode, run.stderr[-2000:])


def test_7_sync_vector_env_of_habitat_envs(hab):
    import gymnasium as gym

    vec = gym.vector.SyncVectorEnv([functools.partial(hab.env, depth=True) for _ in range(2)])
    obs, _ = vec.reset(seed=[0, 1])
    assert obs["rgb"].shape == (2, 16, 32, 3)
    for action in ([0, 1], [2, 0], [0, 0]):
        obs, reward, *_ = vec.step(np.array(action))
    assert np.all(np.abs(np.median(obs["depth"][:, -1, :, 0], axis=1) - 1.5) < 0.03)
    vec.close()  # closes env 0 first: creation order


def test_7_async_vector_env_spawn_of_habitat_envs(hab):
    import gymnasium as gym

    vec = gym.vector.AsyncVectorEnv([hab.factory(depth=True) for _ in range(2)], context="spawn")
    try:
        obs, _ = vec.reset(seed=[0, 1])
        for action in ([0, 1], [2, 0], [0, 0]):
            obs, reward, *_ = vec.step(np.array(action))
        assert obs["rgb"].shape == (2, 16, 32, 3)
        assert np.all(np.abs(np.median(obs["depth"][:, -1, :, 0], axis=1) - 1.5) < 0.03)
    finally:
        vec.close()


def test_7_parallel_collection_is_byte_identical_to_one_worker(hab, tmp_path):
    roots = []
    for workers in (1, 2):  # 72 frames: two units of work (64 frames each at most), one per worker
        roots.append(collect_panoramas(hab.factory(), tmp_path / f"w{workers}", 72, mode="walk", seeds=[0, 1],
                                       frames_per_scene=8, height=16, workers=workers, progress=False))
    one, two = (sorted(p.relative_to(r) for p in r.rglob("*.png")) for r in roots)
    assert one == two and len(one) == 72
    assert all((roots[0] / p).read_bytes() == (roots[1] / p).read_bytes() for p in one)
    assert (roots[0] / "manifest.jsonl").read_bytes() == (roots[1] / "manifest.jsonl").read_bytes()


def test_api_list_names_the_versions_read():
    assert re.fullmatch(r"\d+\.\d+\.\d+", API["versions"]["oldest"])
    for owner, members in API["owners"].items():
        for name, meta in members.items():
            assert _version(API["versions"]["oldest"]) <= _version(meta["since"]) <= _version(API["versions"]["newest"])
            assert meta["where"], f"{owner}.{name} says where it was read"
