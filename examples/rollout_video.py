"""Watch what the shipped latent world model imagines, Dreamer-style, in the built-in panorama world.

1. Roll out a random policy (uniform actions, as in the dynamics model's training data) in
   ``--sequences`` single-room layouts it never saw (seeds from 1000 on: held out).
2. Encode the first ``K`` panoramas of each episode into bottleneck-MAE latents (``K`` = the dynamics
   model's context, 4 for the shipped one).
3. Let the shipped dynamics model (``panorama-rooms-small-dynamics``, a small causal transformer:
   see its model card) imagine every further latent open loop from the actions the agent took,
   never seeing another frame.
4. Decode the rollouts and write the comparison video (truth / model / error, green borders for
   context frames, red for imagined ones) and a still; print the imagined frames' PSNR beside the
   copy-last baseline (the last context latent decoded at every step).

Usage::

    python examples/rollout_video.py --out rollout.mp4 --still docs/images/rollout_comparison.png

``btnk-env imagine`` does the same for one recorded episode or a planned path to the goal.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.imagine import encode_frames, load_pair, psnr_beside_copy_last
from btnk_env.video import decode_rollout
from btnk_env.video.io import check_video_path, write_video
from btnk_env.video.layout import comparison_frames, comparison_strip
from btnk_env.models import resize_frames


def collect(env: PanoramaRoomsEnv, seed: int, steps: int, rng: np.random.Generator):
    """One random-policy episode in layout ``seed``: frames ``(T, H, W, 3)`` uint8 and actions ``(T - 1,)``."""
    obs, _ = env.reset(seed=seed)
    frames, actions = [obs], []
    for _ in range(steps - 1):
        action = int(rng.integers(env.action_space.n))
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs)
        actions.append(action)
        if terminated or truncated:
            break
    return np.stack(frames), np.array(actions, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dynamics", default="panorama-rooms-small-dynamics", help="dynamics model folder or bundled name")
    parser.add_argument("--encoder", default=None, help="the encoder (default: the one the dynamics model names)")
    parser.add_argument("--world", default="single_room", help="built-in world (the shipped model knows single_room)")
    parser.add_argument("--height", type=int, default=128, help="panorama height (width is twice; the shipped models use 128)")
    parser.add_argument("--first-layout", type=int, default=1000, help="layout seed of the first sequence (1000+: held out)")
    parser.add_argument("--sequences", type=int, default=4, help="episodes shown side by side")
    parser.add_argument("--steps", type=int, default=24, help="frames per episode (context included)")
    parser.add_argument("--out", default="rollout.mp4")
    parser.add_argument("--fps", type=float, default=4)
    parser.add_argument("--still", default=None, help="also save a comparison still of the first episode (.png)")
    args = parser.parse_args()
    out = check_video_path(args.out)

    env = PanoramaRoomsEnv(height=args.height, world=args.world)
    dyn, encoder = load_pair(args.dynamics, args.encoder, int(env.action_space.n))  # checked before any work
    k = dyn.config.context
    if args.steps <= k:
        parser.error(f"--steps must exceed the dynamics model's context of {k} frames, got {args.steps}")
    rng = np.random.default_rng(0)
    episodes, seed = [], args.first_layout
    with tqdm(total=args.sequences, desc="episodes") as bar:
        while len(episodes) < args.sequences:  # an episode that reaches the goal within the context is skipped
            frames, actions = collect(env, seed, args.steps, rng)
            seed += 1
            if len(frames) > k:
                episodes.append((frames, actions))
                bar.update(1)
    env.close()
    steps = min(len(frames) for frames, _ in episodes)
    truth = np.stack([frames[:steps] for frames, _ in episodes])  # (B, T, H, W, 3)
    actions = torch.from_numpy(np.stack([a[:steps - 1] for _, a in episodes]))  # (B, T - 1)

    with torch.no_grad():
        context = encode_frames(encoder, truth[:, :k].reshape(-1, *truth.shape[2:])).reshape(len(truth), k, -1)  # (B, K, D)
        imagined = dyn.rollout(context, actions[:, :k - 1], actions[:, k - 1:])  # (B, T - K, D)
    pred = decode_rollout(encoder, torch.cat([context, imagined], 1))  # (B, T, h, w, 3)
    truth = resize_frames(truth, pred.shape[2:4])
    imagined_db, copy_last_db = psnr_beside_copy_last(truth, pred, k)  # (B, T - K) each
    print(f"imagined PSNR {imagined_db.mean():.2f} dB, copy-last baseline {copy_last_db.mean():.2f} dB "
          f"({len(truth)} held-out layouts, {steps - k} imagined steps after {k} context frames)")
    write_video(out, comparison_frames(pred, truth, context=k), args.fps)
    print(f"wrote {out}: {len(truth)} sequences x {steps} steps, context {k}")
    if args.still:
        picks = sorted({0, k - 1, k, k + 4, (k + steps) // 2, steps - 1})
        write_video_still(args.still, comparison_strip(pred[0], truth[0], context=k, steps=picks, scale=1))
        print(f"wrote {args.still}")


def write_video_still(path: str, image: np.ndarray) -> None:
    import imageio.v3 as iio

    from btnk_env.models.files import atomic_path

    with atomic_path(path, ".png") as tmp:
        iio.imwrite(tmp, image, extension=".png", optimize=True)


if __name__ == "__main__":
    main()
