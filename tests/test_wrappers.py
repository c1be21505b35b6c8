"""BtnkMAEObservation and ResizeForModel on synthetic, real-image and PanoramaRooms environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from btnk_env import BtnkMAEObservation
from btnk_env.wrappers import ResizeForModel
from btnk_env.models import BtnkMAE, frames_to_tensor

try:
    from tests.conftest import IMAGES
except ImportError:  # pragma: no cover
    from pathlib import Path

    IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"

# check_env warns about wrappers and about the latent's infinite bounds (by design)
pytestmark = pytest.mark.filterwarnings("ignore:.*(unwrapped version|infinity).*:UserWarning")


class FrameEnv(gym.Env):
    """Random uint8 frames (seeded), episodes of ``length`` steps; reward 1 for action 1.

    ``obs_kind``: ``"box"`` -> ``(H, W, 3)`` frames; ``"dict"`` -> ``{"rgb": frame, "state": (2,) float32}``.
    ``info["frame"]`` is the frame just returned (to check latents against).
    """

    metadata = {"render_modes": []}

    def __init__(self, shape=(32, 64), length: int = 5, obs_kind: str = "box", dtype=np.uint8, channels: int = 3):
        self.shape, self.length, self.obs_kind = tuple(shape), length, obs_kind
        high = 255 if dtype == np.uint8 else 1.0
        image = spaces.Box(0, high, (*self.shape, channels), dtype)
        if obs_kind == "dict":
            self.observation_space = spaces.Dict({"rgb": image, "state": spaces.Box(-1, 1, (2,), np.float32)})
        else:
            self.observation_space = image
        self.action_space = spaces.Discrete(2)
        self._t = 0

    def _obs(self):
        frame = self.np_random.integers(0, 256, (*self.shape, 3), dtype=np.uint8)
        if self.obs_kind == "dict":
            return {"rgb": frame, "state": np.full(2, self._t / self.length, np.float32)}, {"frame": frame}
        return frame, {"frame": frame}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs()

    def step(self, action):
        self._t += 1
        obs, info = self._obs()
        return obs, float(action), self._t >= self.length, False, info


def encode_ref(model: BtnkMAE, frame: np.ndarray, size=None) -> np.ndarray:
    """The model's own encode of one uint8 frame: ``(H, W, 3)`` -> ``(D,)`` float32."""
    with torch.no_grad():
        return model.encode(frames_to_tensor(frame, size=size or model.img_size))[0].numpy()


def test_check_env_and_latents_equal_model_encode(tiny_model):
    env = BtnkMAEObservation(FrameEnv(), tiny_model, device="cpu")
    check_env(env, skip_render_check=True)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (64,), np.float32)
    obs, info = env.reset(seed=3)
    for _ in range(12):
        assert obs in env.observation_space
        np.testing.assert_allclose(obs, encode_ref(tiny_model, info["frame"]), rtol=0, atol=1e-5)
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            obs, info = env.reset()


def test_model_is_shared_not_copied(tiny_model):
    env = BtnkMAEObservation(FrameEnv(), tiny_model, device="cpu")
    other = BtnkMAEObservation(FrameEnv(), tiny_model, device="cpu")
    assert env.model is tiny_model and other.model is tiny_model
    assert env._saved_kwargs["model"] is tiny_model  # constructor-args recording did not deepcopy
    env.reset(seed=0)
    with torch.no_grad():
        tiny_model.encoder.cls_token.add_(1.0)  # a change to the model shows in the wrapper's output
    obs, info = env.step(0)[0], env.step(0)[4]
    np.testing.assert_allclose(env.observation(info["frame"]), encode_ref(tiny_model, info["frame"]), atol=1e-5)


def _pano_env():
    """One real 1024x512 Habitat panorama as the observation of every step."""
    from PIL import Image

    frame = np.array(Image.open(IMAGES / "habitat_pano" / "img_0.png").convert("RGB"))

    class Pano(FrameEnv):
        def __init__(self):
            super().__init__(shape=frame.shape[:2])

        def _obs(self):
            return frame, {"frame": frame}

    return Pano(), frame


def test_panorama_keeps_aspect_by_default_or_squashes():
    env, frame = _pano_env()
    assert frame.shape == (512, 1024, 3)
    model = BtnkMAE("test", img_size=32)
    wrapped = BtnkMAEObservation(env, model, device="cpu")
    assert wrapped.input_size == (32, 64) and model.img_size == (32, 32)  # native 2x4 grid; the model is not changed
    obs, _ = wrapped.reset(seed=0)
    np.testing.assert_allclose(obs, encode_ref(model, frame, (32, 64)), atol=1e-5)

    squashed = BtnkMAEObservation(env, model, keep_aspect=False, device="cpu")
    assert squashed.input_size == (32, 32)  # the model's trained size
    assert BtnkMAEObservation(env, model, size=(64, 128), device="cpu").input_size == (64, 128)
    obs_sq, _ = squashed.reset(seed=0)
    np.testing.assert_allclose(obs_sq, encode_ref(model, frame, (32, 32)), atol=1e-5)
    obs_again, _ = wrapped.reset(seed=0)
    np.testing.assert_allclose(obs_again, obs, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        BtnkMAEObservation(env, model, size=(30, 60), device="cpu")


def test_dict_observation_passes_other_keys(tiny_model):
    env = BtnkMAEObservation(FrameEnv(obs_kind="dict"), tiny_model, device="cpu")
    assert env.image_key == "rgb"  # found automatically
    assert set(env.observation_space.spaces) == {"state", "latent"}
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs in env.observation_space and obs["state"].shape == (2,)
    np.testing.assert_allclose(obs["latent"], encode_ref(tiny_model, info["frame"]), atol=1e-5)

    kept = BtnkMAEObservation(FrameEnv(obs_kind="dict"), tiny_model, image_key="rgb", keep_image=True, device="cpu")
    obs, info = kept.reset(seed=1)
    assert set(obs) == {"rgb", "state", "latent"} and obs in kept.observation_space
    np.testing.assert_array_equal(obs["rgb"], info["frame"])

    boxed = BtnkMAEObservation(FrameEnv(), tiny_model, keep_image=True, device="cpu")
    check_env(boxed, skip_render_check=True)
    obs, info = boxed.reset(seed=2)
    np.testing.assert_array_equal(obs["image"], info["frame"])


def test_history_stacks_and_resets(tiny_model):
    env = BtnkMAEObservation(FrameEnv(length=4), tiny_model, history=3, device="cpu")
    assert env.observation_space.shape == (3, 64)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    latents = [encode_ref(tiny_model, info["frame"])]
    assert np.all(obs[:2] == 0) and np.allclose(obs[2], latents[0], atol=1e-5)
    for t in range(3):
        obs, _, term, _, info = env.step(1)
        latents.append(encode_ref(tiny_model, info["frame"]))
        np.testing.assert_allclose(obs, np.stack(latents[-3:]) if t else np.stack([np.zeros(64), *latents]), atol=1e-5)
    obs, _, term, _, _ = env.step(1)
    assert term
    obs, info = env.reset()
    assert np.all(obs[:2] == 0), "history must restart at reset"
    np.testing.assert_allclose(obs[2], encode_ref(tiny_model, info["frame"]), atol=1e-5)


@pytest.mark.parametrize(
    "make_env, error, words",
    [
        (lambda: FrameEnv(dtype=np.float32), TypeError, ["uint8", "float32"]),
        (lambda: FrameEnv(channels=4), ValueError, ["(32, 64, 4)", "3 (RGB)"]),
        (lambda: FrameEnv(channels=1), ValueError, ["(32, 64, 1)"]),
        (lambda: gym.make("CartPole-v1"), TypeError, ["(4,)", "uint8 RGB image"]),
        (lambda: FrameEnv(obs_kind="dict", dtype=np.float32), ValueError, ["image_key", "'rgb', 'state'"]),
    ],
)
def test_wrong_observation_fails_at_construction(tiny_model, make_env, error, words):
    with pytest.raises(error) as err:
        BtnkMAEObservation(make_env(), tiny_model, device="cpu")
    for word in words:
        assert word in str(err.value), str(err.value)


def test_more_construction_errors(tiny_model):
    class ChannelFirst(FrameEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Box(0, 255, (3, 32, 64), np.uint8)

    with pytest.raises(ValueError, match="channel-first"):
        BtnkMAEObservation(ChannelFirst(), tiny_model, device="cpu")
    with pytest.raises(KeyError, match="'depth' is not in the observation Dict"):
        BtnkMAEObservation(FrameEnv(obs_kind="dict"), tiny_model, image_key="depth", device="cpu")
    with pytest.raises(ValueError, match="not a Dict"):
        BtnkMAEObservation(FrameEnv(), tiny_model, image_key="rgb", device="cpu")
    with pytest.raises(TypeError, match="models.BtnkMAE"):
        BtnkMAEObservation(FrameEnv(), torch.nn.Linear(2, 2), device="cpu")
    with pytest.raises(ValueError, match="history"):
        BtnkMAEObservation(FrameEnv(), tiny_model, history=0, device="cpu")
    with pytest.raises(ValueError, match="precision"):
        BtnkMAEObservation(FrameEnv(), tiny_model, precision="fp8", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            BtnkMAEObservation(FrameEnv(), tiny_model, device="cuda")
        assert BtnkMAEObservation(FrameEnv(), tiny_model, device="auto").device == torch.device("cpu")
    meta = BtnkMAE("test").to("meta")
    with pytest.raises(ValueError, match=r"the model is on meta.*never move it"):
        BtnkMAEObservation(FrameEnv(), meta, device="cpu")


@pytest.mark.parametrize("precision, atol", [("bf16", 0.15), ("int8", 0.3)])
def test_reduced_precision_is_close_and_float32(tiny_model, precision, atol, bf16_anywhere):
    env = BtnkMAEObservation(FrameEnv(), tiny_model, precision=precision, device="cpu")
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    assert tiny_model.dtype == torch.float32 and env.model is tiny_model  # the caller's model is untouched
    ref = encode_ref(tiny_model, info["frame"])
    assert not np.array_equal(obs, ref)  # it really ran in another precision
    assert np.abs(obs - ref).max() < atol * np.abs(ref).max()


def test_resize_for_model_keeps_uint8_images():
    model = BtnkMAE("test", img_size=32)
    env = ResizeForModel(FrameEnv(shape=(60, 80)), model)
    assert env.observation_space == spaces.Box(0, 255, (32, 48, 3), np.uint8) and model.img_size == (32, 32)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs in env.observation_space
    # antialiased resampling keeps the mean brightness of the frame
    assert abs(float(obs.mean()) - float(info["frame"].mean())) < 2.0
    with pytest.raises(TypeError, match="uint8"):
        ResizeForModel(FrameEnv(dtype=np.float32), model)


def test_panorama_rooms_wrapped():
    """The built-in 3-D world, wrapped: check_env and a rollout in the space."""
    pytest.importorskip("moderngl")
    env = gym.make("btnk_env/PanoramaRooms-v0", world="single_room", height=32)
    model = BtnkMAE("test", img_size=32)
    wrapped = BtnkMAEObservation(env, model, history=2, device="cpu")
    assert wrapped.input_size == (32, 64) and model.img_size == (32, 32)
    check_env(wrapped, skip_render_check=True)
    obs, _ = wrapped.reset(seed=0)
    for _ in range(20):
        assert obs in wrapped.observation_space
        obs, _, term, trunc, _ = wrapped.step(wrapped.action_space.sample())
        if term or trunc:
            obs, _ = wrapped.reset()
    wrapped.close()


def test_wrappers_of_two_frame_sizes_share_one_model_without_changing_it():
    """Each wrapper gets the latents of its own size (= model.encode at that size); the shared
    model keeps its size, parameters, device and mode; decode_rollout decodes the size asked."""
    from btnk_env.video import decode_rollout

    torch.manual_seed(0)
    model = BtnkMAE("test", img_size=32).train()  # in training mode on purpose: nobody switches it
    state = {k: v.clone() for k, v in model.state_dict().items()}
    small = BtnkMAEObservation(FrameEnv(shape=(32, 64)), model)  # 2:1 frames -> (32, 64)
    large = BtnkMAEObservation(FrameEnv(shape=(96, 96)), model, size=(48, 48))
    assert (small.input_size, large.input_size) == ((32, 64), (48, 48))
    for _ in range(2):  # interleaved: neither wrapper disturbs the other
        obs_small, info_small = small.reset(seed=1)
        obs_large, info_large = large.reset(seed=2)
        np.testing.assert_allclose(obs_small, encode_ref(model, info_small["frame"], (32, 64)), atol=1e-6)
        np.testing.assert_allclose(obs_large, encode_ref(model, info_large["frame"], (48, 48)), atol=1e-6)
    assert model.img_size == (32, 32) and model.training and model.device == torch.device("cpu")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    model.eval()  # decoding needs eval mode (the decoder has dropout): the caller's choice
    z = np.stack([obs_small, obs_large])  # (T=2, D)
    assert decode_rollout(model, z, size=small.input_size).shape == (1, 2, 32, 64, 3)
    assert decode_rollout(model, z, size=large.input_size).shape == (1, 2, 48, 48, 3)
    assert decode_rollout(model, z).shape == (1, 2, 32, 32, 3)  # default: the trained size
