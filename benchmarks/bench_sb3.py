"""Benchmark of PPO collection on latents: :func:`btnk_env.sb3_vec.latent_vec_env` (the batched
vector wrapper, one encoder forward per vector step) against stable-baselines3's ``DummyVecEnv``
of single :class:`btnk_env.BtnkMAEObservation` wrappers (one forward per sub-environment).

Env steps per second of ``PPO.collect_rollouts`` (encoding, policy forward, buffer), on
environments that cost nothing (a fixed frame, episodes of 50 steps so that autoreset runs).
The two routes are timed in interleaved rounds and compared round by round (paired ratios), so
that a shared machine's noise hits both alike.

Usage::

    python benchmarks/bench_sb3.py                                  # tiny @128x256, 4 and 8 envs
    python benchmarks/bench_sb3.py --preset small --size 128 256 --rounds 7 --json sb3.json

:func:`benchmark_sb3` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import gymnasium as gym
import numpy as np
import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv  # noqa: E402

from benchmarks.bench_wrappers import StaticFrameEnv  # noqa: E402
from benchmarks.common import cpu_tier_line  # noqa: E402
from btnk_env import BtnkMAEObservation  # noqa: E402
from btnk_env.sb3_vec import latent_vec_env  # noqa: E402
from btnk_env.models import BtnkMAE  # noqa: E402


def _episodes(frame: np.ndarray, length: int = 50) -> gym.Env:
    return gym.wrappers.TimeLimit(StaticFrameEnv(frame), length)


def _collector(venv: VecEnv, steps: int) -> Any:
    """A function that runs one PPO rollout of ``steps`` vector steps on ``venv``."""
    agent = PPO("MlpPolicy", venv, n_steps=steps, batch_size=steps * venv.num_envs, device="cpu", seed=0,
                policy_kwargs=dict(net_arch=[64, 64]))
    _, callback = agent._setup_learn(total_timesteps=10**9)  # what learn() does before collecting
    callback.on_training_start(locals(), globals())
    return lambda: agent.collect_rollouts(agent.env, callback, agent.rollout_buffer, n_rollout_steps=steps)


def benchmark_sb3(
    preset: str = "tiny", size: Tuple[int, int] = (128, 256), num_envs: Sequence[int] = (4, 8), steps: int = 64,
    rounds: int = 5, history: int = 1, seed: int = 0,
) -> Dict[str, Any]:
    """Env steps/s of PPO collection through both routes, interleaved ``rounds`` times.

    Returns:
        ``{"preset", "size", "threads", "rows": {n: {"bridge_steps_per_s", "dummy_steps_per_s",
        "paired_speedup", "paired_speedups"}}}`` (best round's speed per route; the median of
        the per-round ratios bridge/dummy).
    """
    torch.manual_seed(seed)
    model = BtnkMAE(preset, img_size=tuple(size)).eval()
    frame = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out: Dict[str, Any] = dict(preset=preset, size=list(size), threads=torch.get_num_threads(), steps=steps, rows={})
    for n in num_envs:
        bridge = latent_vec_env([lambda: _episodes(frame)] * n, model, history=history)
        dummy = DummyVecEnv([lambda: BtnkMAEObservation(_episodes(frame), model, history=history)] * n)
        routes = {"bridge": _collector(bridge, steps), "dummy": _collector(dummy, steps)}
        for fn in routes.values():  # warm-up
            fn()
        secs: Dict[str, list] = {k: [] for k in routes}
        for r in range(rounds):
            for name in (list(routes) if r % 2 == 0 else list(routes)[::-1]):  # alternate the order too
                start = time.perf_counter()
                routes[name]()
                secs[name].append(time.perf_counter() - start)
        ratios = [d / b for b, d in zip(secs["bridge"], secs["dummy"])]
        out["rows"][n] = dict(
            bridge_steps_per_s=n * steps / min(secs["bridge"]), dummy_steps_per_s=n * steps / min(secs["dummy"]),
            paired_speedup=float(np.median(ratios)), paired_speedups=ratios,
        )
        bridge.close()
        dummy.close()
    return out


def format_report(r: Dict[str, Any]) -> str:
    lines = [f"PPO collection, preset={r['preset']} size={r['size'][0]}x{r['size'][1]}, {r['threads']} threads",
             "  envs  bridge steps/s  DummyVecEnv steps/s  paired speed-up (median of rounds)"]
    for n, v in r["rows"].items():
        lines.append(f"  {n:4d}  {v['bridge_steps_per_s']:14.1f}  {v['dummy_steps_per_s']:19.1f}  {v['paired_speedup']:8.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--num-envs", type=int, nargs="+", default=(4, 8))
    parser.add_argument("--steps", type=int, default=64, help="vector steps per rollout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(cpu_tier_line())
    r = benchmark_sb3(args.preset, tuple(args.size), args.num_envs, args.steps, args.rounds)
    r.update(machine=platform.node(), cpu=cpu_tier_line(), date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    print(format_report(r))
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
