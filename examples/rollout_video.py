"""Watch what a latent world model imagines, Dreamer-style, in the built-in panorama world.

1. Roll out a random policy in ``btnk_env/PanoramaRooms-v0`` (one fixed apartment): a few
   training episodes and ``--sequences`` test episodes.
2. Encode every panorama into one bottleneck-MAE latent.
3. Fit a toy world model in latent space: a linear map ``z[t+1] = [z[t], onehot(a[t]), 1] @ W``
   (ridge regression on the training episodes). A real world model (REMI, Dreamer) goes here.
4. For each test episode, keep the first ``--context`` latents (decoded from observations) and
   let the toy model imagine the rest open loop from the actions taken.
5. Decode the rollouts and write the comparison video (truth / model / error, green borders for
   context frames, red for imagined ones) and a still.

Usage::

    python examples/rollout_video.py --out rollout.mp4 --still docs/images/rollout_comparison.png

``--model`` takes anything ``BtnkMAE.from_pretrained`` loads; the default is the trained
``panorama-rooms-small`` if this installation has it, else a randomly initialised ``tiny`` model
whose last decoder layer is fitted to the training panoramas by ridge regression (a one-second
stand-in for a trained decoder: its frames are blurry averages of the scene rather than noise,
so the layout can be seen; a trained model shows the scene).
"""

from __future__ import annotations

import argparse
import warnings

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import btnk_env  # noqa: F401  (registers the environments)
from btnk_env.video import decode_rollout
from btnk_env.video.io import check_video_path, write_video
from btnk_env.video.layout import comparison_frames, comparison_strip
from models import BtnkMAE, frames_to_tensor

DEFAULT_MODEL = "panorama-rooms-small"


def collect(env: gym.Env, seed: int, steps: int, rng: np.random.Generator):
    """One random-policy episode: frames ``(T, H, W, 3)`` uint8 and actions ``(T - 1,)``."""
    obs, _ = env.reset(seed=seed)
    frames, actions = [obs], []
    for _ in range(steps - 1):
        action = int(rng.choice(3, p=[0.6, 0.2, 0.2]))  # mostly forward
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs)
        actions.append(action)
        if terminated or truncated:
            break
    return np.stack(frames), np.array(actions)


def load_model(name: str, size: tuple) -> tuple:
    """The model and whether it is a random stand-in."""
    try:
        return BtnkMAE.from_pretrained(name), False  # it encodes and decodes any size (decode(size=...))
    except (FileNotFoundError, OSError, ValueError) as err:
        if name != DEFAULT_MODEL:
            raise
        warnings.warn(
            f"{name!r} is not available ({err}); using a random 'tiny' model with a fitted output layer", stacklevel=2
        )
        torch.manual_seed(0)
        return BtnkMAE("tiny", img_size=size).eval(), True


@torch.no_grad()
def fit_output_layer(model: BtnkMAE, frames: np.ndarray, ridge: float = 1e-4) -> None:
    """Least-squares fit of the decoder's last linear layer to ``frames`` ``(N, H, W, 3)``."""
    x = frames_to_tensor(frames)
    features = []
    hook = model.decoder.decoder_pred.register_forward_hook(lambda mod, inp, out: features.append(inp[0]))
    model.decode_patches(model.encode(x), size=tuple(x.shape[-2:]))
    hook.remove()
    f = features[0].reshape(-1, features[0].shape[-1])  # (N * P, C)
    f = torch.cat([f, torch.ones(len(f), 1)], 1)
    target = model.patchify(x).reshape(len(f), -1)  # (N * P, p * p * 3)
    w = torch.linalg.solve(f.T @ f + ridge * len(f) * torch.eye(f.shape[1]), f.T @ target)
    model.decoder.decoder_pred.weight.copy_(w[:-1].T)
    model.decoder.decoder_pred.bias.copy_(w[-1])


def dynamics_inputs(z: torch.Tensor, actions: np.ndarray) -> torch.Tensor:
    """``[z, onehot(a), 1]``: ``(T - 1, D)`` latents and actions -> ``(T - 1, D + 4)``."""
    onehot = torch.nn.functional.one_hot(torch.as_tensor(actions), 3).float()
    return torch.cat([z, onehot, torch.ones(len(z), 1)], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint, folder or release name")
    parser.add_argument("--height", type=int, default=128, help="panorama height (width is twice; the shipped model is trained at 128)")
    parser.add_argument("--layout-seed", type=int, default=7)
    parser.add_argument("--train-episodes", type=int, default=8)
    parser.add_argument("--sequences", type=int, default=2, help="test episodes shown side by side")
    parser.add_argument("--steps", type=int, default=24, help="frames per episode")
    parser.add_argument("--context", type=int, default=6, help="observed steps before imagination starts")
    parser.add_argument("--out", default="rollout.mp4")
    parser.add_argument("--fps", type=float, default=4)
    parser.add_argument("--still", default=None, help="also save a comparison still of the first test episode (.png)")
    args = parser.parse_args()
    out = check_video_path(args.out)

    env = gym.make("btnk_env/PanoramaRooms-v0", height=args.height, layout_seed=args.layout_seed)
    rng = np.random.default_rng(0)
    episodes = [
        collect(env, seed, args.steps, rng)
        for seed in tqdm(range(args.train_episodes + args.sequences), desc="episodes")
    ]
    env.close()
    train, test = episodes[: args.train_episodes], episodes[args.train_episodes :]
    steps = min(len(frames) for frames, _ in test)

    size = (args.height, 2 * args.height)  # native 2:1 panoramas
    model, stand_in = load_model(args.model, size)
    if stand_in:
        fit_output_layer(model, np.concatenate([frames for frames, _ in train]))
    with torch.no_grad():
        encode = lambda frames: model.encode(frames_to_tensor(frames, device=model.device)).cpu()  # noqa: E731
        inputs = torch.cat([dynamics_inputs(encode(f)[:-1], a) for f, a in train])
        targets = torch.cat([encode(f)[1:] for f, _ in train])
        w = torch.linalg.solve(inputs.T @ inputs + 1e-1 * len(inputs) * torch.eye(inputs.shape[1]), inputs.T @ targets)

        rollouts, truth = [], []
        for frames, actions in test:
            z = encode(frames[:steps])  # (T, D) posterior latents
            imagined = list(z[: args.context])
            for t in range(args.context, steps):
                imagined.append((dynamics_inputs(imagined[-1][None], actions[t - 1 : t]) @ w)[0])
            rollouts.append(torch.stack(imagined))
            truth.append(frames[:steps])
    pred = decode_rollout(model, torch.stack(rollouts), size=size)  # (B, T, H, W, 3)
    truth = np.stack(truth)
    write_video(out, comparison_frames(pred, truth, context=args.context), args.fps)
    print(f"wrote {out}: {len(test)} sequences x {steps} steps, context {args.context}")
    if args.still:
        picks = sorted({0, args.context - 1, args.context, (args.context + steps) // 2, steps - 1})
        write_video_still(args.still, comparison_strip(pred[0], truth[0], context=args.context, steps=picks, scale=2))
        print(f"wrote {args.still}")


def write_video_still(path: str, image: np.ndarray) -> None:
    import imageio.v3 as iio

    from models.files import atomic_path

    with atomic_path(path, ".png") as tmp:
        iio.imwrite(tmp, image, extension=".png", optimize=True)


if __name__ == "__main__":
    main()
