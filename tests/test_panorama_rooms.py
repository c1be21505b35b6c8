"""The built-in panorama world: Gymnasium contract, determinism, collisions, panorama geometry."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import btnk_env  # noqa: F401  (registers the environments)
from btnk_env.envs.layout import WALL_THICKNESS, generate_layout
from btnk_env.envs.panorama_rooms import GOAL_COLOR, PanoramaRoomsEnv


@pytest.fixture
def room_env():
    """One empty room (no furniture), so that geometry checks see only walls and the goal."""
    env = PanoramaRoomsEnv(height=32, world="single_room", max_furniture=0, layout_seed=5)
    yield env
    env.close()


def _red_columns(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    mask = (r > 200) & (g < 80) & (b < 80)
    return np.nonzero(mask.any(axis=0))[0]


def test_check_env_passes_for_direct_and_registered_env():
    env = PanoramaRoomsEnv(height=32)
    check_env(env, skip_render_check=False)
    env.close()
    made = gym.make("btnk_env/PanoramaRooms-v0", height=32)
    check_env(made.unwrapped, skip_render_check=False)
    assert made.spec.max_episode_steps == 500
    made.close()


def test_depth_variant_passes_check_env_and_measures_walls(room_env):
    env = PanoramaRoomsEnv(height=32, world="single_room", max_furniture=0, layout_seed=5, depth=True)
    check_env(env, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (32, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (32, 64, 1) and obs["depth"].dtype == np.float32
    room = env.layout.rooms[0]
    x, z = room.center
    obs = env.set_pose((x, z), 0.0)  # facing -z: the wall at z0 straight ahead
    ahead = float(obs["depth"][15:17, 31:33].mean())  # centre of the image, near the horizon
    assert ahead == pytest.approx(z - room.z0 - WALL_THICKNESS / 2, abs=0.15)
    env.close()


def test_same_seed_and_actions_give_identical_frames():
    actions = np.random.default_rng(0).integers(0, 3, size=25)

    def run():
        env = PanoramaRoomsEnv(height=32)
        obs, info = env.reset(seed=11)
        frames, poses = [obs], [info["position"]]
        for a in actions:
            obs, _, term, trunc, info = env.step(int(a))
            frames.append(obs)
            poses.append(info["position"])
        env.close()
        return frames, poses

    (f1, p1), (f2, p2) = run(), run()
    assert all(np.array_equal(a, b) for a, b in zip(f1, f2))
    assert all(np.array_equal(a, b) for a, b in zip(p1, p2))
    assert not all(np.array_equal(f1[0], f) for f in f1[1:])  # the agent did move/turn


def test_different_seeds_give_different_layouts_and_frames():
    a, b = generate_layout(1), generate_layout(2)
    assert a.boxes != b.boxes
    env = PanoramaRoomsEnv(height=32)
    o1, i1 = env.reset(seed=1)
    o2, i2 = env.reset(seed=2)
    env.close()
    assert i1["scene"] == "rooms-seed-1" and i2["scene"] == "rooms-seed-2"
    assert not np.array_equal(o1, o2)


def test_walls_stop_the_agent(room_env):
    room_env.reset(seed=0)
    room = room_env.layout.rooms[0]
    x, z = room.center
    room_env.set_pose((x, z), 0.0)  # facing -z, towards the wall at z = room.z0
    limit = room.z0 + WALL_THICKNESS / 2 + room_env.agent_radius
    collided = []
    for _ in range(30):
        _, _, _, _, info = room_env.step(0)
        assert info["position"][2] >= limit - 1e-9
        collided.append(info["collided"])
    assert not collided[0] and collided[-1]
    assert info["position"][2] == pytest.approx(limit, abs=room_env.forward_step)
    assert info["position"][0] == pytest.approx(x)  # head-on: no sideways slide


def test_random_walk_never_enters_walls_or_furniture():
    env = PanoramaRoomsEnv(height=16, layout_seed=3)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    hits = 0
    for a in rng.choice(3, size=400, p=[0.7, 0.15, 0.15]):
        _, _, term, _, info = env.step(int(a))
        pos = info["position"]
        assert env.layout.is_free(pos[0], pos[2], env.agent_radius - 1e-9)
        hits += info["collided"]
        if term:
            env.reset()
    env.close()
    assert hits > 0  # the walk did meet obstacles


def test_panorama_convention_goal_ahead_is_centre_and_right_after_left_turn(room_env):
    room_env.reset(seed=0)
    x, z = room_env.layout.rooms[0].center
    room_env.reset(seed=0, options={"pose": ((x, z), 0.0), "goal": (x, z - 1.2)})
    cols = _red_columns(room_env.render())
    assert cols.size and abs(cols.mean() - 31.5) < 2  # dead ahead: the centre column
    obs, *_ = room_env.step(1)  # turn left 30 degrees: the goal moves right by 64 * 30/360
    assert _red_columns(obs).mean() == pytest.approx(31.5 + 64 * 30 / 360, abs=2)
    obs = room_env.set_pose((x, z), math.pi / 2)  # facing -x: the goal (at -z) is to the right
    assert _red_columns(obs).mean() == pytest.approx(48, abs=2)
    assert GOAL_COLOR[0] > 0.9


def test_turning_left_rolls_the_panorama(room_env):
    room_env.reset(seed=0)
    x, z = room_env.layout.rooms[0].center
    before = room_env.set_pose((x, z), 0.3).astype(int)
    after = room_env.set_pose((x, z), 0.3 + math.pi / 2).astype(int)
    right = np.abs(after - np.roll(before, 16, axis=1)).mean()  # 90 degrees = W / 4 columns
    wrong = np.abs(after - np.roll(before, -16, axis=1)).mean()
    assert right < 3.0 < wrong
    full = room_env.set_pose((x, z), 0.3 + 2 * math.pi)
    assert np.abs(full.astype(int) - before).mean() < 0.5


def test_reaching_the_goal_ends_the_episode(room_env):
    room_env.reset(seed=0)
    x, z = room_env.layout.rooms[0].center
    obs, info = room_env.reset(seed=0, options={"pose": ((x, z), 0.0), "goal": (x, z - 0.8)})
    assert not info["success"]
    obs, reward, terminated, truncated, info = room_env.step(0)
    assert terminated and info["success"] and not truncated
    assert reward == pytest.approx(0.25 - room_env.STEP_PENALTY + room_env.SUCCESS_REWARD)


def test_several_envs_in_one_process_render_independently():
    solo = PanoramaRoomsEnv(height=16)
    ref = [solo.reset(seed=4)[0]] + [solo.step(a)[0] for a in (0, 1, 0)]
    solo.close()
    vec = gym.vector.SyncVectorEnv([lambda: PanoramaRoomsEnv(height=16) for _ in range(2)])
    obs, _ = vec.reset(seed=[4, 9])
    frames = [obs[0]]
    for a in (0, 1, 0):
        obs, *_ = vec.step(np.array([a, 2]))
        frames.append(obs[0])
    vec.close()
    assert all(np.array_equal(a, b) for a, b in zip(ref, frames))
    assert not np.array_equal(obs[0], obs[1])


def test_close_then_reset_works_again():
    env = PanoramaRoomsEnv(height=16)
    first, _ = env.reset(seed=2)
    env.close()
    again, _ = env.reset(seed=2)
    env.close()
    assert np.array_equal(first, again)


@pytest.mark.parametrize("kwargs", [dict(height=8), dict(world="castle"), dict(turn_degrees=0), dict(render_mode="human")])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        PanoramaRoomsEnv(**kwargs)


def test_invalid_action_and_step_before_reset_raise():
    env = PanoramaRoomsEnv(height=16)
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(3)
    env.close()


def test_sample_navigable_pose_is_free_and_reproducible():
    env = PanoramaRoomsEnv(height=16)
    env.reset(seed=6)
    poses = [env.sample_navigable_pose(np.random.default_rng(i)) for i in range(20)]
    again = [env.sample_navigable_pose(np.random.default_rng(i)) for i in range(20)]
    for (p, h), (q, g) in zip(poses, again):
        assert np.array_equal(p, q) and h == g
        assert env.layout.is_free(p[0], p[2], env.agent_radius) and -math.pi <= h <= math.pi
    env.set_pose(poses[3][0], poses[3][1])
    got_p, got_h = env.get_pose()
    assert np.allclose(got_p, poses[3][0]) and got_h == pytest.approx(poses[3][1])
    env.close()
