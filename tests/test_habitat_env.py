"""HabitatPanoramaEnv against a stand-in of the habitat_sim calls it makes.

habitat-sim cannot be installed here (no wheel for this Python, no magnum bindings), so these
tests inject a fake ``habitat_sim`` module into ``sys.modules``. The fake mirrors the real API the
adapter uses (names, argument and return types, shapes and dtypes: RGBA uint8 ``(H, W, 4)`` colour,
``(H, W)`` float32 depth, ``np.quaternion``-like rotations, the ``collided`` flag of ``step``) and
records every call, so the tests check both the configuration the adapter builds and the
observation contract it returns.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from btnk_env.collection import collect_panoramas, load_manifest


class _Quat:
    """Stand-in for ``np.quaternion`` (w, x, y, z)."""

    def __init__(self, w=1.0, x=0.0, y=0.0, z=0.0):
        self.w, self.x, self.y, self.z = w, x, y, z


def _fake_habitat_sim():
    hs = types.ModuleType("habitat_sim")
    agent_mod = types.ModuleType("habitat_sim.agent")
    utils_mod = types.ModuleType("habitat_sim.utils")
    common = types.ModuleType("habitat_sim.utils.common")
    hs.calls = []

    class SensorType:
        COLOR, DEPTH, SEMANTIC = "COLOR", "DEPTH", "SEMANTIC"

    class SimulatorConfiguration:
        def __init__(self):
            self.scene_id, self.scene_dataset_config_file, self.gpu_device_id = "", "default", 0

    class EquirectangularSensorSpec:
        def __init__(self):
            self.uuid, self.sensor_type = "equirectangular", SensorType.COLOR
            self.resolution, self.position = [128, 128], [0.0, 1.5, 0.0]

    class ActuationSpec:
        def __init__(self, amount, constraint=None):
            self.amount = amount

    class ActionSpec:
        def __init__(self, name, actuation=None):
            self.name, self.actuation = name, actuation

    class AgentConfiguration:
        def __init__(self):
            self.height, self.radius, self.sensor_specifications, self.action_space = 1.5, 0.1, [], {}

    class AgentState:
        def __init__(self, position=None, rotation=None):
            self.position = np.zeros(3, np.float32) if position is None else position
            self.rotation = _Quat() if rotation is None else rotation

    class Configuration:
        def __init__(self, sim_cfg, agents):
            self.sim_cfg, self.agents = sim_cfg, agents

    class Agent:
        def __init__(self, cfg):
            self.agent_config, self._state = cfg, AgentState()

        def get_state(self):
            s = self._state
            return AgentState(np.array(s.position, np.float32), _Quat(s.rotation.w, s.rotation.x, s.rotation.y, s.rotation.z))

        def set_state(self, state, reset_sensors=True):
            assert isinstance(state.rotation, _Quat) and np.asarray(state.position).shape == (3,)
            hs.calls.append(("set_state", np.array(state.position), state.rotation.y))
            self._state = AgentState(np.array(state.position, np.float32), state.rotation)

    class PathFinder:
        def __init__(self):
            self._rng = np.random.default_rng(0)

        def seed(self, value):
            assert isinstance(value, int)
            self._rng = np.random.default_rng(value)

        def get_random_navigable_point(self):
            x, z = self._rng.uniform(-4, 4, size=2)
            return np.array([x, 0.1, z], np.float32)  # a floor 0.1 m above 0

    class Simulator:
        def __init__(self, config):
            assert isinstance(config, Configuration)
            hs.calls.append(("Simulator", config))
            self.config, self.pathfinder, self._agent = config, PathFinder(), None

        def initialize_agent(self, agent_id):
            assert agent_id == 0
            self._agent = Agent(self.config.agents[0])
            return self._agent

        def seed(self, value):
            hs.calls.append(("seed", value))

        def reconfigure(self, config):
            hs.calls.append(("reconfigure", config))
            self.config = config

        def geodesic_distance(self, a, b):
            return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))

        def step(self, action):
            spec = self._agent.agent_config.action_space[action]  # KeyError for unknown names
            s = self._agent._state
            heading = 2 * math.atan2(s.rotation.y, s.rotation.w)
            collided = False
            if spec.name == "move_forward":
                p = np.array(s.position, float) + spec.actuation.amount * np.array([-math.sin(heading), 0, -math.cos(heading)])
                collided = bool(np.any(np.abs(p[[0, 2]]) > 5))
                p[[0, 2]] = np.clip(p[[0, 2]], -5, 5)
                s.position = p.astype(np.float32)
            else:
                heading += math.radians(spec.actuation.amount) * (1 if spec.name == "turn_left" else -1)
                s.rotation = _Quat(math.cos(heading / 2), 0.0, math.sin(heading / 2), 0.0)
            obs = self.get_sensor_observations()
            obs["collided"] = collided
            return obs

        def get_sensor_observations(self):
            s = self._agent._state
            heading = 2 * math.atan2(s.rotation.y, s.rotation.w)
            out = {}
            for spec in self._agent.agent_config.sensor_specifications:
                h, w = spec.resolution
                if spec.sensor_type == SensorType.COLOR:
                    img = np.empty((h, w, 4), np.uint8)
                    img[..., 0] = (np.arange(w) + int(round(math.degrees(heading)))) % 256
                    img[..., 1] = int(abs(s.position[0]) * 20) % 256
                    img[..., 2] = int(abs(s.position[2]) * 20) % 256
                    img[..., 3] = 255
                    out[spec.uuid] = img
                else:
                    out[spec.uuid] = np.full((h, w), 1.0 + abs(float(s.position[0])), np.float32)
            return out

        def close(self):
            hs.calls.append(("close",))

    def quat_from_angle_axis(theta, axis):
        axis = np.asarray(axis, float) / np.linalg.norm(axis)
        sin = math.sin(theta / 2)
        return _Quat(math.cos(theta / 2), *(axis * sin))

    def quat_to_coeffs(q):
        return np.array([q.x, q.y, q.z, q.w])

    hs.SensorType, hs.SimulatorConfiguration = SensorType, SimulatorConfiguration
    hs.EquirectangularSensorSpec, hs.Configuration, hs.Simulator = EquirectangularSensorSpec, Configuration, Simulator
    hs.AgentState = agent_mod.AgentState = AgentState
    agent_mod.AgentConfiguration, agent_mod.ActionSpec, agent_mod.ActuationSpec = AgentConfiguration, ActionSpec, ActuationSpec
    common.quat_from_angle_axis, common.quat_to_coeffs = quat_from_angle_axis, quat_to_coeffs
    hs.agent, hs.utils, utils_mod.common = agent_mod, utils_mod, common
    return {"habitat_sim": hs, "habitat_sim.agent": agent_mod, "habitat_sim.utils": utils_mod,
            "habitat_sim.utils.common": common}


@pytest.fixture
def fake_hs(monkeypatch):
    modules = _fake_habitat_sim()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return modules["habitat_sim"]


def _env(**kwargs):
    from btnk_env.envs.habitat import HabitatPanoramaEnv

    return HabitatPanoramaEnv("data/scene_datasets/apt_0/apt_0.glb", height=kwargs.pop("height", 16), **kwargs)


def test_missing_habitat_sim_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # makes `import habitat_sim` fail
    from btnk_env.envs.habitat import HabitatPanoramaEnv

    with pytest.raises(ImportError, match=r"conda install habitat-sim -c conda-forge -c aihabitat") as err:
        HabitatPanoramaEnv("scene.glb")
    assert "headless" in str(err.value)


def test_configuration_uses_an_equirectangular_sensor_and_habitat_actions(fake_hs):
    env = _env(height=32, depth=True, turn_degrees=10.0, scene_dataset_config="hssd.scene_dataset_config.json")
    config = next(c[1] for c in fake_hs.calls if c[0] == "Simulator")
    assert config.sim_cfg.scene_id == "data/scene_datasets/apt_0/apt_0.glb"
    assert config.sim_cfg.scene_dataset_config_file == "hssd.scene_dataset_config.json"
    (agent_cfg,) = config.agents
    rgb, depth = agent_cfg.sensor_specifications
    assert isinstance(rgb, fake_hs.EquirectangularSensorSpec)
    assert (rgb.uuid, rgb.sensor_type, rgb.resolution) == ("rgb", "COLOR", [32, 64])
    assert (depth.uuid, depth.sensor_type, depth.resolution) == ("depth", "DEPTH", [32, 64])
    assert rgb.position == [0.0, 1.5, 0.0]
    amounts = {k: (v.name, v.actuation.amount) for k, v in agent_cfg.action_space.items()}
    assert amounts == {"move_forward": ("move_forward", 0.25), "turn_left": ("turn_left", 10.0),
                       "turn_right": ("turn_right", 10.0)}
    assert env.scene_id == "apt_0"
    env.close()
    assert fake_hs.calls[-1] == ("close",)


@pytest.mark.parametrize("depth", [False, True])
def test_check_env_and_observation_contract(fake_hs, depth):
    env = _env(depth=depth)
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=0)
    rgb = obs["rgb"] if depth else obs
    assert rgb.shape == (16, 32, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous  # alpha dropped
    assert env.observation_space.contains(obs)
    if depth:
        assert obs["depth"].shape == (16, 32, 1) and obs["depth"].dtype == np.float32
    assert set(info) >= {"position", "heading", "scene", "goal_position", "distance_to_goal", "collided", "success"}
    env.close()


def test_actions_move_and_turn_the_habitat_agent(fake_hs):
    env = _env()
    env.reset(seed=1, options={"pose": ((0.0, 0.1, 0.0), 0.0), "goal": (0.0, 0.1, -3.0)})
    _, reward, *_ , info = env.step(0)
    assert np.allclose(info["position"], [0.0, 0.1, -0.25], atol=1e-6)
    assert reward == pytest.approx(0.25 - env.STEP_PENALTY)
    _, _, _, _, info = env.step(1)
    assert info["heading"] == pytest.approx(math.radians(30))
    _, _, _, _, info = env.step(2)
    assert info["heading"] == pytest.approx(0.0, abs=1e-9)
    env.set_pose((0.0, 0.1, -4.9), 0.0)
    _, _, _, _, info = env.step(0)
    assert info["collided"]
    env.close()


def test_reaching_the_goal_terminates(fake_hs):
    env = _env(goal_radius=0.5)
    env.reset(seed=1, options={"pose": ((1.0, 0.1, 1.0), 0.0), "goal": (1.0, 0.1, 0.4)})
    _, reward, terminated, _, info = env.step(0)
    assert terminated and info["success"] and reward > env.SUCCESS_REWARD
    env.close()


def test_pose_methods_round_trip_and_sampling_is_seeded(fake_hs):
    env = _env()
    env.reset(seed=0)
    a = env.sample_navigable_pose(np.random.default_rng(5))
    b = env.sample_navigable_pose(np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[0].shape == (3,)
    env.set_pose(a[0], a[1])
    position, heading = env.get_pose()
    assert np.allclose(position, a[0], atol=1e-6) and heading == pytest.approx(a[1])
    env.set_pose((2.0, -1.0), 3.0)  # (x, z) keeps the current floor height
    position, heading = env.get_pose()
    assert np.allclose(position, [2.0, a[0][1], -1.0], atol=1e-6) and heading == pytest.approx(3.0)
    env.close()


def test_reset_can_switch_scenes(fake_hs):
    env = _env()
    _, info = env.reset(seed=0, options={"scene": "other/house_7.glb"})
    reconfig = [c[1] for c in fake_hs.calls if c[0] == "reconfigure"]
    assert len(reconfig) == 1 and reconfig[0].sim_cfg.scene_id == "other/house_7.glb"
    assert info["scene"] == "house_7"
    env.close()


def test_collector_drives_the_habitat_env(fake_hs, tmp_path):
    env = _env()
    root = collect_panoramas(env, tmp_path / "hab", 12, mode="walk", seeds=[0, 1], frames_per_scene=4, progress=False)
    records = load_manifest(root)
    assert len(records) == 12 and {r["scene"] for r in records} == {"apt_0"}
    assert all(len(r["position"]) == 3 and r["position"][1] == pytest.approx(0.1) for r in records)
    env.close()
