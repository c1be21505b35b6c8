"""A third-party image environment from PyPI, wrapped: MiniWorld (Farama), rendered headless
through EGL (Mesa's software renderer on a CPU-only machine)."""

from __future__ import annotations

# Load torch.compile's triton (and its LLVM) before MiniWorld's Mesa EGL context exists: the other
# order segfaults at the first torch.optim constructor, which imports it. (The built-in world's
# renderer does this itself; MiniWorld is third-party, so its users must.)
import torch._dynamo  # noqa: F401,E402

import numpy as np
import pytest
import torch

pyglet = pytest.importorskip("pyglet")
pyglet.options["headless"] = True  # must precede miniworld's import of pyglet.gl (no X display here)
miniworld = pytest.importorskip("miniworld")

import gymnasium as gym  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from btnk_env import BtnkMAEObservation, BtnkMAEVectorObservation  # noqa: E402
from btnk_env.models import BtnkMAE, frames_to_tensor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ENV_ID = "MiniWorld-OneRoom-v0"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BtnkMAE("test", img_size=32)


def test_miniworld_wrapped_single_env(model):
    env = gym.make(ENV_ID, max_episode_steps=40)
    assert env.observation_space == gym.spaces.Box(0, 255, (60, 80, 3), np.uint8)
    wrapped = BtnkMAEObservation(env, model, keep_image=True, device="cpu")
    assert wrapped.input_size == (32, 48)  # 4:3 frames keep their aspect on the patch-16 grid
    check_env(wrapped, skip_render_check=True)
    obs, _ = wrapped.reset(seed=0)
    frames = []
    for _ in range(45):
        assert obs in wrapped.observation_space
        frames.append(obs["image"])
        with torch.no_grad():
            expected = model.encode(frames_to_tensor(obs["image"], size=(32, 48)))[0].numpy()
        np.testing.assert_allclose(obs["latent"], expected, atol=1e-5)
        obs, _, term, trunc, _ = wrapped.step(wrapped.action_space.sample())
        if term or trunc:
            obs, _ = wrapped.reset()
    assert len({f.tobytes() for f in frames}) > 5, "the agent moved and saw different frames"
    wrapped.close()


def test_miniworld_vector_env(model):
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", max_episode_steps=10)
    envs = BtnkMAEVectorObservation(envs, model, history=2, device="cpu")
    obs, _ = envs.reset(seed=0)
    done_any = False
    for _ in range(14):
        assert obs in envs.observation_space and obs.shape == (2, 2, 64)
        obs, _, term, trunc, _ = envs.step(envs.action_space.sample())
        done_any |= bool((term | trunc).any())
    assert done_any, "the rollout crossed an autoreset"
    envs.close()
