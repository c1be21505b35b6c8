"""BtnkMAEVectorObservation: same latents as the single-env wrapper, one forward per step, and
every autoreset mode (NEXT_STEP, SAME_STEP, DISABLED)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from btnk_env import BtnkMAEObservation, BtnkMAEVectorObservation
from tests.test_wrappers import FrameEnv, encode_ref

LENGTHS = (3, 4, 6)  # episode lengths of the sub-environments, so that they end at different steps


def make_vec(mode=AutoresetMode.NEXT_STEP, obs_kind="box", lengths=LENGTHS):
    return SyncVectorEnv([lambda n=n: FrameEnv(length=n, obs_kind=obs_kind) for n in lengths], autoreset_mode=mode)


class ForwardCounter:
    """Counts encoder forward passes (and their batch sizes) through a hook on the patch embedding."""

    def __init__(self, model):
        self.batches: list[int] = []
        self.handle = model.encoder.patch_embed.register_forward_hook(lambda m, args, out: self.batches.append(args[0].shape[0]))

    def take(self) -> list[int]:
        out, self.batches = self.batches, []
        return out


def test_same_latents_as_single_env_wrappers_and_one_forward_per_step(tiny_model):
    n = len(LENGTHS)
    envs = BtnkMAEVectorObservation(make_vec(), tiny_model, history=2, device="cpu")
    singles = [BtnkMAEObservation(FrameEnv(length=k), tiny_model, history=2, device="cpu") for k in LENGTHS]
    assert envs.single_observation_space == singles[0].observation_space
    assert envs.observation_space.shape == (n, 2, 64)
    counter = ForwardCounter(tiny_model)

    obs, _ = envs.reset(seed=10)
    assert counter.take() == [n]
    single_obs = [s.reset(seed=10 + i)[0] for i, s in enumerate(singles)]
    counter.take()
    done = np.zeros(n, bool)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(14):
        np.testing.assert_allclose(obs, np.stack(single_obs), rtol=0, atol=1e-5)
        assert obs in envs.observation_space
        actions = rng.integers(0, 2, n)
        obs, rewards, term, trunc, infos = envs.step(actions)
        assert counter.take() == [n], "one batched forward per step"
        for i, s in enumerate(singles):  # NEXT_STEP autoreset, by hand
            single_obs[i] = s.reset()[0] if done[i] else s.step(actions[i])[0]
        counter.take()
        ended += int(done.sum())
        done = term | trunc
    assert ended >= 4, "the rollout must cross several autoresets"
    counter.handle.remove()


def test_same_step_autoreset_encodes_final_obs_in_the_same_forward(tiny_model):
    envs = BtnkMAEVectorObservation(make_vec(AutoresetMode.SAME_STEP), tiny_model, history=2, device="cpu")
    counter = ForwardCounter(tiny_model)
    obs, infos = envs.reset(seed=0)
    history = [[encode_ref(tiny_model, f)] for f in infos["frame"]]
    finals = 0
    for _ in range(8):
        counter.take()
        obs, _, term, trunc, infos = envs.step(np.ones(3, int))
        ended = np.flatnonzero(term | trunc)
        assert counter.take() == [3 + len(ended)], "final observations go into the same forward"
        assert obs in envs.observation_space
        for i in range(3):
            if i in ended:
                final_frame = infos["final_info"]["frame"][i]
                final = infos["final_obs"][i]
                assert final in envs.single_observation_space
                expected_final = np.stack([history[i][-1], encode_ref(tiny_model, final_frame)])
                np.testing.assert_allclose(final, expected_final, atol=1e-5)
                history[i] = [encode_ref(tiny_model, infos["frame"][i])]
                assert np.all(obs[i, 0] == 0), "the new episode's history starts empty"
                finals += 1
            else:
                assert infos["final_obs"][i] is None if "final_obs" in infos else True
                history[i].append(encode_ref(tiny_model, infos["frame"][i]))
            np.testing.assert_allclose(obs[i, -1], history[i][-1], atol=1e-5)
    assert finals >= 4


def test_disabled_autoreset_reencodes_only_the_masked_envs(tiny_model):
    envs = BtnkMAEVectorObservation(make_vec(AutoresetMode.DISABLED), tiny_model, history=2, device="cpu")
    counter = ForwardCounter(tiny_model)
    envs.reset(seed=0)
    for _ in range(3):
        obs, _, term, trunc, infos = envs.step(np.zeros(3, int))
    done = term | trunc
    assert done.tolist() == [True, False, False]
    counter.take()
    mask = done.copy()
    new_obs, infos = envs.reset(options={"reset_mask": mask})
    assert counter.take() == [1], "only the reset sub-environment is encoded"
    np.testing.assert_array_equal(new_obs[1:], obs[1:])
    assert np.all(new_obs[0, 0] == 0)
    np.testing.assert_allclose(new_obs[0, 1], encode_ref(tiny_model, infos["frame"][0]), atol=1e-5)
    obs, *_ = envs.step(np.zeros(3, int))
    np.testing.assert_array_equal(obs[1:, 0], new_obs[1:, 1])  # the others' histories carried on


def test_dict_observations_and_keep_image(tiny_model):
    envs = BtnkMAEVectorObservation(make_vec(AutoresetMode.SAME_STEP, obs_kind="dict"), tiny_model, keep_image=True, device="cpu")
    assert set(envs.single_observation_space.spaces) == {"rgb", "state", "latent"}
    obs, infos = envs.reset(seed=1)
    for _ in range(5):
        assert obs in envs.observation_space
        assert obs["latent"].shape == (3, 64) and obs["rgb"].shape == (3, 32, 64, 3)
        np.testing.assert_allclose(obs["latent"][2], encode_ref(tiny_model, infos["frame"][2]), atol=1e-5)
        obs, _, term, trunc, infos = envs.step(np.zeros(3, int))
        for i in np.flatnonzero(term | trunc):
            final = infos["final_obs"][i]
            assert set(final) == {"rgb", "state", "latent"} and final in envs.single_observation_space
            np.testing.assert_allclose(final["latent"], encode_ref(tiny_model, final["rgb"]), atol=1e-5)


def test_wrong_observation_fails_and_model_is_shared(tiny_model):
    bad = SyncVectorEnv([lambda: FrameEnv(channels=4)] * 2)
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*found shape \(32, 64, 4\)"):
        BtnkMAEVectorObservation(bad, tiny_model, device="cpu")
    with pytest.raises(TypeError, match="VectorEnv"):
        BtnkMAEVectorObservation(FrameEnv(), tiny_model, device="cpu")
    envs = BtnkMAEVectorObservation(make_vec(), tiny_model, device="cpu")
    assert envs.model is tiny_model


def test_panorama_rooms_vector_rollout():
    pytest.importorskip("moderngl")
    from btnk_env.models import BtnkMAE

    model = BtnkMAE("test", img_size=32)
    envs = gym.make_vec("btnk_env/PanoramaRooms-v0", num_envs=2, vectorization_mode="sync", world="single_room", height=32)
    envs = BtnkMAEVectorObservation(envs, model, device="cpu")
    obs, _ = envs.reset(seed=0)
    for _ in range(15):
        assert obs in envs.observation_space and obs.shape == (2, 64)
        obs, *_ = envs.step(envs.action_space.sample())
    envs.close()
