"""stable-baselines3: PPO on latents (frozen wrapper) and with the encoder inside the policy
(trainable extractor, scaled learning rate); the extractor's features equal model.encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.utils import update_learning_rate  # noqa: E402

from btnk_env import BtnkMAEFeaturesExtractor, BtnkMAEObservation  # noqa: E402
from btnk_env.sb3 import LRScaledAdam, btnk_policy_kwargs, lr_scaled  # noqa: E402
from btnk_env.wrappers import ResizeForModel  # noqa: E402
from btnk_env.models import BtnkMAE, frames_to_tensor  # noqa: E402
from tests.test_wrappers import FrameEnv  # noqa: E402

PPO_ARGS = dict(n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_ppo_on_frozen_latent_wrapper(tiny_model):
    env = BtnkMAEObservation(FrameEnv(length=16), tiny_model, history=2, device="cpu")
    encoder_before = snapshot(tiny_model)
    agent = PPO("MlpPolicy", env, policy_kwargs=dict(net_arch=[32]), **PPO_ARGS)
    policy_before = snapshot(agent.policy)
    agent.learn(256)
    assert agent.num_timesteps >= 256
    assert changed(policy_before, agent.policy), "PPO updated the policy"
    assert not changed(encoder_before, tiny_model), "the wrapper's encoder stays frozen"
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


def test_extractor_features_equal_model_encode():
    model = BtnkMAE("test", img_size=32).eval()
    env = ResizeForModel(FrameEnv(shape=(60, 80)), model)
    agent = PPO("CnnPolicy", env, policy_kwargs=btnk_policy_kwargs(model, net_arch=[16]), **PPO_ARGS)
    extractor = agent.policy.features_extractor
    assert isinstance(extractor, BtnkMAEFeaturesExtractor) and extractor.features_dim == 64
    assert extractor.encoder is model.encoder and model.img_size == (32, 32)  # the model is not changed
    frames = np.stack([env.reset(seed=s)[0] for s in range(3)])  # (3, 32, 48, 3) uint8
    obs_tensor, _ = agent.policy.obs_to_tensor(frames)  # SB3: transpose to (3, 3, 32, 48)
    with torch.no_grad():
        features = agent.policy.extract_features(obs_tensor, extractor)  # SB3 divides by 255
        expected = model.encode(frames_to_tensor(frames))
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=0)


def test_ppo_trains_encoder_inside_the_policy_at_a_scaled_lr(tmp_path):
    torch.manual_seed(0)
    model = BtnkMAE("test", img_size=32)
    env = ResizeForModel(FrameEnv(shape=(32, 64), length=16), model)
    kwargs = btnk_policy_kwargs(model, trainable=True, lr_scale=0.1, projection_dim=32, net_arch=[32])
    agent = PPO("CnnPolicy", env, learning_rate=3e-4, **PPO_ARGS, policy_kwargs=kwargs)
    assert isinstance(agent.policy.optimizer, LRScaledAdam)
    groups = {g["lr_scale"]: g for g in agent.policy.optimizer.param_groups}
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in groups[0.1]["params"]} == encoder_ids
    assert not encoder_ids & {id(p) for p in groups[1.0]["params"]}
    before = snapshot(model.encoder)
    agent.learn(256)
    assert changed(before, model.encoder), "the trainable encoder was updated (in the caller's model)"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # save/load round trip: the loaded policy (its own copy of the encoder) acts the same
    agent.save(tmp_path / "agent.zip")
    loaded = PPO.load(tmp_path / "agent.zip", device="cpu")
    frames = np.stack([env.reset(seed=s)[0] for s in range(4)])
    obs_tensor, _ = agent.policy.obs_to_tensor(frames)
    with torch.no_grad():
        dist_a = agent.policy.get_distribution(obs_tensor).distribution.probs
        dist_b = loaded.policy.get_distribution(loaded.policy.obs_to_tensor(frames)[0]).distribution.probs
    torch.testing.assert_close(dist_a, dist_b)
    assert isinstance(loaded.policy.optimizer, LRScaledAdam)


def test_frozen_extractor_keeps_encoder_and_trains_head():
    model = BtnkMAE("test", img_size=32)
    env = ResizeForModel(FrameEnv(shape=(32, 32), length=16), model)
    agent = PPO("CnnPolicy", env, policy_kwargs=btnk_policy_kwargs(model, trainable=False, net_arch=[16]), **PPO_ARGS)
    before, head = snapshot(model.encoder), snapshot(agent.policy.action_net)
    agent.learn(128)
    assert not changed(before, model.encoder) and changed(head, agent.policy.action_net)
    assert not agent.policy.features_extractor.encoder.training  # a frozen encoder stays in eval mode


def test_lr_scale_survives_sb3_learning_rate_updates():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    setattr(b, "_btnk_lr_scale", 0.1)
    opt = lr_scaled(torch.optim.SGD)([a, b], lr=1.0)
    update_learning_rate(opt, 0.5)  # SB3 writes the schedule's lr into every group before an update
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((3,), -0.5))
    torch.testing.assert_close(b.detach(), torch.full((3,), -0.05))
    assert all(g["lr"] == 0.5 for g in opt.param_groups), "the scale is applied per step, not stored"
    assert lr_scaled(torch.optim.SGD) is lr_scaled(torch.optim.SGD)


def test_extractor_errors_name_the_fix():
    model = BtnkMAE("test", img_size=32)
    with pytest.raises(ValueError, match="ResizeForModel"):
        BtnkMAEFeaturesExtractor(spaces.Box(0, 255, (3, 60, 80), np.uint8), model)
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        BtnkMAEFeaturesExtractor(spaces.Box(0, 255, (4, 32, 32), np.uint8), model)
    with pytest.raises(TypeError, match="MultiInputPolicy"):
        BtnkMAEFeaturesExtractor(spaces.Box(0, 1, (64,), np.float32), model)
    with pytest.raises(ValueError, match="lr_scale"):
        BtnkMAEFeaturesExtractor(spaces.Box(0, 255, (3, 32, 32), np.uint8), model, lr_scale=0)
