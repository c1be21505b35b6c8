"""Decoding latent rollouts (btnk_env.video) and writing them as videos (btnk_env.video.io)."""

from __future__ import annotations

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch

import btnk_env  # noqa: F401  (registers the environments)
from btnk_env.video import check_latents, decode_rollout, interpolate_latents, load_latents
from btnk_env.video.decode import LatentsFileError
from btnk_env.video.io import check_video_path, codec_safe_size, write_video
from btnk_env.video.layout import psnr
from btnk_env.models import BtnkMAE, frames_to_tensor, tensor_to_frames

ACTIONS = [0, 0, 1, 0, 0, 2, 2, 0, 0, 1, 0, 0, 0, 2, 0, 0]


@pytest.fixture(scope="module")
def episode() -> np.ndarray:
    """16 panoramas ``(16, 32, 64, 3)`` uint8 of a fixed action sequence in PanoramaRooms."""
    env = gym.make("btnk_env/PanoramaRooms-v0", height=32, world="single_room")
    obs, _ = env.reset(seed=3)
    frames = [obs]
    for action in ACTIONS[:-1]:
        obs, *_ = env.step(action)
        frames.append(obs)
    env.close()
    return np.stack(frames)


@pytest.fixture(scope="module")
def model(episode) -> BtnkMAE:
    """A ``test``-preset model whose output layer is fitted to the episode (ridge regression).

    A random decoder paints per-pixel colour noise, the worst case for any video codec; with
    the last layer fitted, it decodes blurry versions of the episode, like a trained model.
    """
    torch.manual_seed(0)
    model = BtnkMAE("test", img_size=(32, 64)).eval()
    x = frames_to_tensor(episode)
    features = []
    hook = model.decoder.decoder_pred.register_forward_hook(lambda mod, inp, out: features.append(inp[0]))
    with torch.no_grad():
        model.decode_patches(model.encode(x))
        hook.remove()
        f = features[0].reshape(-1, features[0].shape[-1])  # (T * N, C)
        f = torch.cat([f, torch.ones(len(f), 1)], 1)
        target = model.patchify(x).reshape(len(f), -1)  # (T * N, p * p * 3)
        ridge = 1e-2 * len(f) * torch.eye(f.shape[1])  # keeps the weights small (bf16/int8 friendly)
        solution = torch.linalg.solve(f.T @ f + ridge, f.T @ target)  # (C + 1, p * p * 3)
        model.decoder.decoder_pred.weight.copy_(solution[:-1].T)
        model.decoder.decoder_pred.bias.copy_(solution[-1])
    return model


def test_episode_decodes_like_reconstruct_and_survives_mp4_and_gif(episode, model, tmp_path):
    x = frames_to_tensor(episode)
    with torch.no_grad():
        latents = model.encode(x)  # (T, D)
        direct = tensor_to_frames(model.reconstruct(x))  # (T, H, W, 3)
    decoded = decode_rollout(model, latents, batch_size=5)  # T = 16 is not a multiple of 5
    assert decoded.shape == (1, 16, 32, 64, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded[0].astype(int) - direct).max() <= 1
    assert psnr(episode, decoded[0]).mean() > 16  # the fitted model reproduces the episode

    mp4 = write_video(tmp_path / "episode.mp4", decoded[0], fps=8)
    gif = write_video(tmp_path / "episode.gif", decoded[0], fps=10)
    back_mp4 = iio.imread(mp4, index=None)
    back_gif = iio.imread(gif, index=None)
    assert back_mp4.shape == back_gif.shape == (16, 32, 64, 3)
    assert iio.immeta(mp4)["fps"] == 8.0
    assert iio.immeta(gif)["duration"] == 100  # ms per frame
    assert psnr(direct, back_mp4).min() > 30  # lossy H.264
    gif_err = np.abs(direct.astype(int) - back_gif)
    assert gif_err.mean() < 3 and psnr(direct, back_gif).min() > 33  # 256-colour palettes

    folder = write_video(tmp_path / "episode_png", decoded[0])
    back_png = np.stack([iio.imread(p) for p in sorted(folder.glob("*.png"))])
    np.testing.assert_array_equal(back_png, decoded[0])  # lossless


def test_batched_rollouts_match_per_sequence_decoding(episode, model):
    with torch.no_grad():
        z = model.encode(frames_to_tensor(episode)).numpy().astype(np.float64)  # (T, D), float64
    rollouts = np.stack([z[:7], z[9:]])  # (2, 7, D)
    calls = []
    frames = decode_rollout(model, rollouts, batch_size=3, progress=calls.append)
    assert frames.shape == (2, 7, 32, 64, 3)
    assert calls == [3, 3, 3, 3, 2]
    one_by_one = decode_rollout(model, torch.from_numpy(rollouts[1]).float(), batch_size=1)[0]
    assert np.abs(frames[1].astype(int) - one_by_one).max() <= 1
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 1  # different latents, different frames


def test_bad_latents_fail_before_any_work(model):
    d = model.latent_dim
    with pytest.raises(ValueError, match=r"D=65 but the model's latent is D=64"):
        decode_rollout(model, np.zeros((4, 65), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        decode_rollout(model, np.zeros((0, d), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        decode_rollout(model, torch.zeros(2, 0, d))
    with pytest.raises(TypeError, match="float"):
        decode_rollout(model, np.zeros((3, d), np.int64))
    with pytest.raises(ValueError, match=r"\(T, D\) or \(B, T, D\)"):
        decode_rollout(model, torch.zeros(1, 2, 3, d))
    with pytest.raises(ValueError, match="NaN"):
        decode_rollout(model, torch.full((2, d), float("nan")))
    with pytest.raises(ValueError, match="batch_size"):
        decode_rollout(model, torch.zeros(2, d), batch_size=0)
    with pytest.raises(ValueError, match="fp16 inference needs a CUDA"):
        decode_rollout(model, torch.zeros(2, d), precision="fp16")


def test_reduced_precision_stays_close_and_leaves_the_model_alone(episode, model, bf16_anywhere):
    with torch.no_grad():
        z = model.encode(frames_to_tensor(episode[:6]))
    fp32 = decode_rollout(model, z).astype(int)
    for precision, bound in (("bf16", 2.0), ("int8", 4.0)):
        low = decode_rollout(model, z, precision=precision)
        assert low.dtype == np.uint8 and low.shape == fp32.shape
        assert 0 < np.abs(low - fp32).mean() < bound, precision  # rounded differently, but close
    assert model.dtype == torch.float32 and not model.training


def test_load_latents_from_every_format(tmp_path):
    from safetensors.torch import save_file

    z = torch.randn(2, 5, 64)
    np.save(tmp_path / "z.npy", z.numpy())
    np.savez(tmp_path / "z.npz", latents=z.numpy(), actions=np.zeros(5))
    torch.save(z.to(torch.bfloat16), tmp_path / "z.pt")
    torch.save({"latents": z, "rewards": torch.zeros(5)}, tmp_path / "zd.pt")
    save_file({"imagined": z.contiguous(), "other": torch.zeros(1)}, str(tmp_path / "z.safetensors"))
    for name in ("z.npy", "z.npz", "zd.pt"):
        torch.testing.assert_close(load_latents(tmp_path / name), z, msg=name)
    torch.testing.assert_close(load_latents(tmp_path / "z.pt"), z.to(torch.bfloat16).float())
    torch.testing.assert_close(load_latents(tmp_path / "z.safetensors", key="imagined"), z)
    with pytest.raises(ValueError, match="several arrays"):
        load_latents(tmp_path / "z.safetensors")
    with pytest.raises(KeyError, match="no entry 'nope'"):
        load_latents(tmp_path / "zd.pt", key="nope")
    with pytest.raises(ValueError, match="suffix"):
        load_latents(tmp_path / "z.csv")
    with pytest.raises(FileNotFoundError):
        load_latents(tmp_path / "missing.npy")
    assert check_latents(load_latents(tmp_path / "z.npy"), 64).shape == (2, 5, 64)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_load_latents_never_runs_pickled_code(tmp_path):
    torch.save({"latents": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(LatentsFileError, match="pickled objects"):
        load_latents(tmp_path / "evil.pt")


def test_interpolation_paths():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    lin = interpolate_latents(a, b, 5)
    torch.testing.assert_close(lin[0], a)
    torch.testing.assert_close(lin[-1], b)
    torch.testing.assert_close(lin[2], torch.tensor([1.0, 2.0]))
    slerp = interpolate_latents(a, b, 5, method="slerp")
    torch.testing.assert_close(slerp[[0, -1]], torch.stack([a, b]))
    torch.testing.assert_close(slerp.norm(dim=1), torch.tensor([2.0, 2.5, 3.0, 3.5, 4.0]))
    angle = torch.rad2deg(torch.atan2(slerp[:, 1], slerp[:, 0]))
    torch.testing.assert_close(angle, torch.tensor([0.0, 22.5, 45.0, 67.5, 90.0]))  # even steps on the arc
    with pytest.raises(ValueError, match="same width"):
        interpolate_latents(torch.zeros(3), torch.zeros(4), 5)
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(a, b, 1)


def test_odd_sizes_are_padded_not_resized(tmp_path):
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (4, 3, 5, 3)).astype(np.uint8).repeat(10, 1).repeat(10, 2)  # (4, 30, 50, 3)
    assert codec_safe_size(30, 50) == (32, 64)
    back = iio.imread(write_video(tmp_path / "odd.mp4", smooth, fps=5), index=None)
    assert back.shape == (4, 32, 64, 3)
    picture = back[:, 0:30, 6:56]  # centred, at even offsets: 0 rows above, 6 columns to the left
    assert psnr(smooth, picture).min() > 30
    assert back[:, 31].max() < 40 and back[:, :, :5].max() < 40 and back[:, :, -6:].max() < 40  # black border


def test_paths_are_checked_and_failed_writes_leave_the_old_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        check_video_path(tmp_path / "clip.avi")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        check_video_path(tmp_path / "file" / "clip.mp4")
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(IsADirectoryError):
        check_video_path(tmp_path / "folder.mp4")
    with pytest.raises(FileExistsError, match="not a folder"):
        check_video_path(tmp_path / "file")  # no suffix: a PNG folder is wanted
    good = np.zeros((3, 16, 16, 3), np.uint8)
    target = write_video(tmp_path / "clip.mp4", good, fps=5)
    before = target.read_bytes()

    def frames():
        yield good[0]
        yield np.zeros((8, 8, 3), np.uint8)  # a frame of another size: the write fails midway

    with pytest.raises(ValueError, match="frame 1"):
        write_video(target, frames(), fps=5)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "file", "folder.mp4"]  # no temporary left
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.gif", iter([]))
