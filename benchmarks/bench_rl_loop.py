"""Env steps/s of the RL loop: the vector wrapper over ``AsyncVectorEnv`` workers that render the
built-in panorama world on the same cores, with the encoder's default thread count against each
thread count set by hand, in interleaved rounds (paired ratios: default / setting, same round).

Usage::

    python -m benchmarks.bench_rl_loop --envs 4 --steps 40 --rounds 5 --json out.json

JSON (schema ``btnk-rl-loop/1``): ``{"schema", "when", "machine": {...}, "envs", "height", "model",
"default_threads", "threads_why", "rows": [{"threads": "default" | int, "steps_s_median",
"steps_s_best", "spread", "default_over_this_paired"}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

SCHEMA = "btnk-rl-loop/1"


def _make_env(height: int):
    def make():
        from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

        return PanoramaRoomsEnv(height=height)
    return make


def bench_rl_loop(envs: int = 4, height: int = 128, model_name: str = "panorama-rooms-small", steps: int = 40,
                  rounds: int = 5, settings=(1, 2)) -> dict:
    import gymnasium as gym

    from btnk_env import BtnkMAEVectorObservation
    from btnk_env.models import BtnkMAE
    from btnk_env.models.hardware import cpu_name, cpu_tier
    from btnk_env.models.threads import inference_threads

    vec = gym.vector.AsyncVectorEnv([_make_env(height) for _ in range(envs)])
    env = BtnkMAEVectorObservation(vec, BtnkMAE.from_pretrained(model_name))  # decides the threads now
    default, why = inference_threads()
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    times: dict = {}
    try:
        for _ in range(steps // 4):  # warm-up
            env.step(rng.integers(0, 3, envs))
        for _ in range(rounds):
            for setting in ("default", *settings):
                torch.set_num_threads(default if setting == "default" else setting)
                start = time.perf_counter()
                for _ in range(steps):
                    env.step(rng.integers(0, 3, envs))
                times.setdefault(setting, []).append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(default)
        env.close()
    rows = []
    for setting, ts in times.items():
        med = statistics.median(ts)
        rows.append({"threads": setting, "steps_s_median": round(envs * steps / med, 2),
                     "steps_s_best": round(envs * steps / min(ts), 2), "spread": round((max(ts) - min(ts)) / med, 3),
                     "default_over_this_paired": round(statistics.median(t / d for d, t in zip(times["default"], ts)), 3)})
    tier = cpu_tier()
    return {"schema": SCHEMA, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "tier": tier.name,
                        "emulated": tier.lowered, "shared": True},
            "envs": envs, "height": height, "model": model_name, "steps_per_round": steps, "rounds": rounds,
            "default_threads": default, "threads_why": why, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_rl_loop", description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--model", default="panorama-rooms-small")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="hand-set thread counts to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = bench_rl_loop(args.envs, args.height, args.model, args.steps, args.rounds, args.threads)
    print(json.dumps(result, indent=1))
    if args.json:
        from btnk_env.models.files import atomic_write_text

        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
