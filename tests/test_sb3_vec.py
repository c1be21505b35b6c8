"""SB3VecEnv: stable-baselines3 on the batched vector wrapper -- PPO learns through it with one
encoder forward per vector step; SAME_STEP and DISABLED give SB3 the same (encoded) terminal
observations; NEXT_STEP is refused with the fix; the history can be flattened."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

pytest.importorskip("stable_baselines3")
from stable_baselines3 import A2C, PPO  # noqa: E402

from btnk_env import BtnkMAEVectorObservation  # noqa: E402
from btnk_env.sb3_vec import SB3VecEnv, latent_vec_env  # noqa: E402
from tests.test_vector import LENGTHS, ForwardCounter, make_vec  # noqa: E402
from tests.test_wrappers import FrameEnv, encode_ref  # noqa: E402


def sb3_vec(model, mode, history=2, obs_kind="box", **kwargs):
    return SB3VecEnv(BtnkMAEVectorObservation(make_vec(mode, obs_kind), model, history=history, device="cpu"), **kwargs)


def test_ppo_learns_through_the_bridge_with_one_forward_per_vector_step(tiny_model):
    # FrameEnv pays 1 for action 1: a policy that learned picks it on (unseen) frames
    venv = latent_vec_env([lambda: FrameEnv(length=8)] * 4, tiny_model, history=2, device="cpu")
    assert venv.observation_space == spaces.Box(-np.inf, np.inf, (128,), np.float32)  # flat: no SB3 shape warning
    agent = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=4, learning_rate=3e-3, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[32]))
    obs = venv.reset()
    before = agent.predict(obs, deterministic=True)[0]
    counter = ForwardCounter(tiny_model)
    agent.learn(1024)
    batches = counter.take()
    counter.handle.remove()
    steps = agent.num_timesteps // 4
    assert agent.num_timesteps == 1024
    # one reset forward at learn() start, then exactly one per vector step (final frames in the same batch)
    assert len(batches) == steps + 1, (len(batches), steps)
    assert all(b in (4, 8) for b in batches[1:]), "4 step frames, plus the final frames of the envs that ended"
    assert sum(b - 4 for b in batches[1:]) == agent.num_timesteps // 8, "every episode's final frame was encoded once"
    eval_env = latent_vec_env([lambda: FrameEnv(length=8)] * 16, tiny_model, history=2, device="cpu")
    obs = eval_env.reset()
    after = agent.predict(obs, deterministic=True)[0]
    assert after.mean() >= 0.9, (before, after)  # random: 0.5
    rewards = agent.ep_info_buffer
    assert rewards and np.mean([e["r"] for e in list(rewards)[-4:]]) > 6, "VecMonitor saw the returns rise"


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_terminal_observations_are_encoded_histories_and_resets_start_fresh(tiny_model, mode):
    venv = sb3_vec(tiny_model, mode)
    counter = ForwardCounter(tiny_model)
    venv.seed(0)
    obs = venv.reset()
    assert obs.shape == (3, 128) and counter.take() == [3]
    prev = obs
    for t in range(1, 8):
        obs, rewards, dones, infos = venv.step(np.ones(3, np.int64))
        ended = [i for i, n in enumerate(LENGTHS) if t % n == 0]
        assert list(np.flatnonzero(dones)) == ended
        assert counter.take() == [3 + len(ended)], "step, final and reset frames in one forward"
        np.testing.assert_array_equal(rewards, np.ones(3, np.float32))
        for i in ended:
            final = infos[i]["terminal_observation"]
            assert final.shape == (128,) and infos[i]["TimeLimit.truncated"] is False
            np.testing.assert_allclose(final[:64], prev[i, 64:], atol=1e-6)  # the ending episode's history
            np.testing.assert_allclose(final[64:], encode_ref(tiny_model, infos[i]["frame"]), atol=1e-5)  # its final frame
            np.testing.assert_array_equal(obs[i, :64], 0.0)  # the new episode's history starts afresh
        for i in set(range(3)) - set(ended):
            assert "terminal_observation" not in infos[i]
            np.testing.assert_allclose(obs[i, 64:], encode_ref(tiny_model, infos[i]["frame"]), atol=1e-5)
        prev = obs
        counter.take()  # the references' own forwards


def test_same_step_and_disabled_give_sb3_the_same_data(tiny_model):
    a, b = (sb3_vec(tiny_model, m) for m in (AutoresetMode.SAME_STEP, AutoresetMode.DISABLED))
    for v in (a, b):
        v.seed(5)
    np.testing.assert_array_equal(a.reset(), b.reset())
    for _ in range(7):
        ra, rb = a.step(np.zeros(3, np.int64)), b.step(np.zeros(3, np.int64))
        for xa, xb in zip(ra[:3], rb[:3]):
            np.testing.assert_array_equal(xa, xb)
        for ia, ib in zip(ra[3], rb[3]):
            assert ("terminal_observation" in ia) == ("terminal_observation" in ib)
            if "terminal_observation" in ia:
                np.testing.assert_array_equal(ia["terminal_observation"], ib["terminal_observation"])


def test_next_step_mode_is_refused_with_the_fix(tiny_model):
    with pytest.raises(ValueError, match="SAME_STEP"):
        sb3_vec(tiny_model, AutoresetMode.NEXT_STEP)


def test_flatten_option_and_dict_observations(tiny_model):
    kept = sb3_vec(tiny_model, AutoresetMode.SAME_STEP, flatten=False)
    assert kept.observation_space.shape == (2, 64) and kept.reset().shape == (3, 2, 64)
    venv = sb3_vec(tiny_model, AutoresetMode.SAME_STEP, obs_kind="dict")
    assert venv.observation_space["latent"].shape == (128,) and venv.observation_space["state"].shape == (2,)
    obs = venv.reset()
    assert obs["latent"].shape == (3, 128) and obs["state"].shape == (3, 2)
    for _ in range(3):
        obs, _, dones, infos = venv.step(np.zeros(3, np.int64))
    assert infos[0]["terminal_observation"]["latent"].shape == (128,)
    agent = A2C("MultiInputPolicy", venv, n_steps=5, seed=0, device="cpu", policy_kwargs=dict(net_arch=[16]))
    agent.learn(30)  # A2C runs on it as well
    assert agent.num_timesteps >= 30
