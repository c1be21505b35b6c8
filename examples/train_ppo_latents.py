"""Train PPO (stable-baselines3) on bottleneck-MAE latents instead of pixels.

The agent never sees pixels: :class:`btnk_env.BtnkMAEVectorObservation` turns the ``(H, 2H, 3)``
panoramas of all ``--n-envs`` environments into D-dimensional vectors with a frozen encoder, in
one forward pass per vector step, and :class:`btnk_env.sb3_vec.SB3VecEnv` hands them to PPO's
small MLP (evaluation runs one :class:`btnk_env.BtnkMAEObservation` environment).

Tasks (``--task``):

- ``tint`` (default): every step shows a real Habitat panorama (``shared/images/habitat_pano``),
  rotated by a random heading and tinted red, green or blue; the action that matches the tint
  earns +1 (episodes of 20 steps: a random policy earns about 6.7, a perfect one 20). The answer
  is in the whole image, which a frozen random-init encoder does carry.
- ``rooms``: ``btnk_env/PanoramaRooms-v0`` with ``world="single_room"``: reach a red column 1 to
  2.5 m away with forward / turn left / turn right. The goal's bearing is a small detail of the
  panorama; a random-init encoder does not carry it (a linear probe finds nothing), so this task
  needs a trained model (``--model panorama-rooms-small`` when one ships).

Before and after training the policy is evaluated on held-out seeds (layouts / images the
training never draws), against a uniformly random policy: mean return, success rate, length.

Usage::

    python examples/train_ppo_latents.py                              # tint task, tiny random-init encoder
    python examples/train_ppo_latents.py --task rooms --model panorama-rooms-small --timesteps 200000
    python examples/train_ppo_latents.py --model path/to/checkpoint --save runs/ppo
    python examples/train_ppo_latents.py --task rooms --height 128 --model panorama-rooms-small \
        --load btnk_env/agents/ppo_single_room/ppo_latents.zip --timesteps 0 --eval-episodes 30   # re-check an agent

``--model`` is a preset name (random init; a frozen random ViT still gives usable features for
a simple task) or anything ``BtnkMAE.from_pretrained`` loads (folder, ``.pth``, release name).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import gymnasium as gym
import numpy as np
import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stable_baselines3 import PPO  # noqa: E402

import btnk_env  # noqa: E402,F401  (registers the environments)
from btnk_env import BtnkMAEObservation  # noqa: E402
from btnk_env.sb3_vec import latent_vec_env  # noqa: E402
from btnk_env.models import PRESETS, BtnkMAE  # noqa: E402
from btnk_env.models.device import resolve_device  # noqa: E402
from btnk_env.models.files import atomic_write_bytes, atomic_write_text  # noqa: E402
from btnk_env.models.image_file import read_image  # noqa: E402

ENV_ID = "btnk_env/PanoramaRooms-v0"
EVAL_SEED = 100_000  # evaluation layouts: seeds EVAL_SEED + i, never drawn in training
PANORAMA = Path(__file__).resolve().parents[1].parent / "shared" / "images" / "habitat_pano" / "img_0.png"
TINTS = np.array([[255, 40, 40], [40, 255, 40], [40, 40, 255]], np.float32)


class TintedPanoramaEnv(gym.Env):
    """A panorama, rotated by a random heading and tinted by one of ``TINTS``; name the tint.

    Observation ``(H, 2H, 3)`` uint8; action ``Discrete(3)``: +1 when it equals the tint's index
    (``info["success"]`` over the episode: more than 90% right); ``length`` steps per episode.
    """

    metadata = {"render_modes": []}

    def __init__(self, height: int = 64, length: int = 20, path: Path = PANORAMA) -> None:
        if path.is_file():
            from PIL import Image

            base = Image.fromarray(read_image(path)).resize((2 * height, height), Image.BILINEAR)
            self.base = np.asarray(base, np.float32)
        else:  # no shared/ folder: smooth random colours
            rng = np.random.default_rng(0)
            small = rng.uniform(0, 255, (height // 8, height // 4, 3)).astype(np.float32)
            self.base = np.kron(small, np.ones((8, 8, 1), np.float32))
        self.length = length
        self.observation_space = gym.spaces.Box(0, 255, self.base.shape, np.uint8)
        self.action_space = gym.spaces.Discrete(3)

    def _frame(self) -> np.ndarray:
        self._tint = int(self.np_random.integers(3))
        shift = int(self.np_random.integers(self.base.shape[1]))
        alpha = self.np_random.uniform(0.2, 0.4)
        frame = np.roll(self.base, shift, axis=1) * (1 - alpha) + alpha * TINTS[self._tint]
        return np.clip(frame * self.np_random.uniform(0.7, 1.2), 0, 255).astype(np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._right = 0, 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == self._tint)
        self._t, self._right = self._t + 1, self._right + int(reward)
        done = self._t >= self.length
        return self._frame(), reward, done, False, {"success": done and self._right > 0.9 * self.length}


def load_model(name: str, height: int, seed: int) -> BtnkMAE:
    """A preset name -> random init at ``(height, 2 * height)``; anything else -> ``from_pretrained``."""
    if name in PRESETS:
        torch.manual_seed(seed)
        return BtnkMAE(name, img_size=(height, 2 * height)).eval()
    return BtnkMAE.from_pretrained(name)


def make_task_env(args: argparse.Namespace) -> gym.Env:
    """The task's pixel environment (``(H, 2H, 3)`` uint8 observations)."""
    if args.task == "tint":
        return TintedPanoramaEnv(args.height)
    return gym.make(ENV_ID, world="single_room", height=args.height, max_episode_steps=args.max_steps)


def make_env(model: BtnkMAE, args: argparse.Namespace) -> gym.Env:
    """One latent-observation environment (for evaluation)."""
    return BtnkMAEObservation(make_task_env(args), model, size=args.encoder_size, history=args.history)  # runs where the model is


def evaluate(env: gym.Env, act: Callable[[np.ndarray], int], episodes: int) -> Dict[str, float]:
    """Run ``episodes`` on the evaluation layouts; mean return, success rate, mean length."""
    returns, successes, lengths = [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, steps, done, info = 0.0, 0, False, {}
        while not done:
            obs, reward, term, trunc, info = env.step(act(obs))
            total, steps, done = total + float(reward), steps + 1, term or trunc
        returns.append(total)
        successes.append(bool(info.get("success", False)))
        lengths.append(steps)
    return dict(mean_return=float(np.mean(returns)), success_rate=float(np.mean(successes)), mean_length=float(np.mean(lengths)))


def fmt(name: str, r: Dict[str, float]) -> str:
    return f"{name:<22} return {r['mean_return']:7.2f}   success {100 * r['success_rate']:5.1f}%   length {r['mean_length']:6.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PPO on bottleneck-MAE latents.")
    parser.add_argument("--task", choices=("tint", "rooms"), default="tint")
    parser.add_argument("--model", default="tiny", help="preset (random init) or path/name for BtnkMAE.from_pretrained")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--height", type=int, default=64, help="panorama height H (frames are H x 2H)")
    parser.add_argument("--encoder-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="encoder input size (default: the model's height at the 2:1 aspect)")
    parser.add_argument("--history", type=int, default=1, help="latents stacked per observation")
    parser.add_argument("--max-steps", type=int, default=100, help="episode time limit (rooms task)")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for batch-1 encoding on a shared or small CPU)")
    parser.add_argument("--save", type=Path, default=None, help="folder for the agent and results.json")
    parser.add_argument("--load", type=Path, default=None,
                        help="start from this saved agent (ppo_latents.zip); with --timesteps 0 it is only evaluated")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = load_model(args.model, args.height, args.seed).to(resolve_device(args.device))  # wrappers never move it
    # training: all envs' frames encoded in one forward per vector step
    vec_env = latent_vec_env([lambda: make_task_env(args)] * args.n_envs, model, size=args.encoder_size, history=args.history)
    vec_env.seed(args.seed)
    eval_env = make_env(model, args)
    latent_shape = eval_env.observation_space.shape
    print(f"task {args.task}, model {args.model}: D={model.latent_dim}, encoder input {eval_env.input_size}, observation {latent_shape}")

    if args.load is not None:
        agent = PPO.load(args.load, env=vec_env, device="cpu")
    else:
        agent = PPO(
            "MlpPolicy", vec_env, n_steps=256, batch_size=256, n_epochs=10, learning_rate=3e-4, gamma=0.97,
            ent_coef=0.01, policy_kwargs=dict(net_arch=[128, 128]), seed=args.seed, device="cpu", verbose=0,
        )
    rng = np.random.default_rng(args.seed)
    results: Dict[str, Any] = dict(args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})
    results["random"] = evaluate(eval_env, lambda obs: int(rng.integers(3)), args.eval_episodes)
    results["before"] = evaluate(eval_env, lambda obs: int(agent.predict(obs, deterministic=True)[0]), args.eval_episodes)
    print(fmt("random policy", results["random"]))
    print(fmt("PPO before training", results["before"]))

    start = time.perf_counter()
    if args.timesteps > 0:
        agent.learn(args.timesteps, progress_bar=_has_progress_bar())
    results["train_seconds"] = time.perf_counter() - start
    results["after"] = results["before"] if args.timesteps <= 0 else \
        evaluate(eval_env, lambda obs: int(agent.predict(obs, deterministic=True)[0]), args.eval_episodes)
    print(fmt(f"PPO after {args.timesteps} steps", results["after"]) + f"   ({results['train_seconds']:.0f} s training)")

    if args.save is not None:
        buf = io.BytesIO()
        agent.save(buf)  # read back by btnk_env.agent_io.load_agent (weights and settings only)
        atomic_write_bytes(args.save / "ppo_latents.zip", buf.getvalue())
        atomic_write_text(args.save / "results.json", json.dumps(results, indent=2) + "\n")
        print(f"saved the agent and results.json in {args.save}")
    vec_env.close()
    eval_env.close()
    return 0


def _has_progress_bar() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
