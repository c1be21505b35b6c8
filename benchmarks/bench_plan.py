"""Benchmark of planning in imagination (:mod:`btnk_env.planning`): time per planning step and memory
over a long run.

1. Planning time per step (the solver's batched imaginations and the goal-distance head; the frame's
   encoding is timed apart) with the shipped encoder, dynamics model and goal-distance head, on latents
   of a held-out layout, at ``--threads`` torch threads: median and mean milliseconds.
2. Memory: resident set size after ``--warmup`` steps and after ``--steps`` consecutive planning steps
   (the planner keeps only its last ``K`` latents and actions, so it must stay flat).

Usage::

    python benchmarks/bench_plan.py                               # 2 threads, CEM 64 x 2, horizon 8
    python benchmarks/bench_plan.py --solver mppi --samples 128 --steps 1000 --json bench_plan.json

:func:`benchmark_plan` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_tier_line  # noqa: E402


def rss_mib() -> float:
    """Resident set size of this process in MiB (``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def benchmark_plan(solver: str = "cem", samples: int = 64, iterations: int = 2, horizon: int = 8, threads: int = 2,
                   steps: int = 1000, warmup: int = 50, timed: int = 100, head: str = "panorama-rooms-small-goal-distance",
                   seed: int = 1000) -> Dict:
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
    from btnk_env.imagine import encode_frames
    from btnk_env.planning.goals import goal_view
    from btnk_env.planning.load import load_models
    from btnk_env.planning.policy import LatentPlanner

    torch.set_num_threads(threads)
    env = PanoramaRoomsEnv(height=128, world="single_room")
    try:
        dyn, gd, encoder = load_models(head=head, num_actions=int(env.action_space.n))
        obs, info = env.reset(seed=seed)
        frames = [obs] + [env.step(a)[0] for a in (1, 1, 0, 2, 0, 0, 1, 0)]
        goal = goal_view(env, info["goal_position"], 0.0)
    finally:
        env.close()
    t0 = time.perf_counter()
    latents = encode_frames(encoder, np.stack(frames))  # (T, D)
    encode_ms = (time.perf_counter() - t0) / len(frames) * 1000
    goal_z = encode_frames(encoder, goal[None])[0]
    planner = LatentPlanner(dyn, gd, dyn.config.num_actions, dyn.config.context, horizon=horizon, solver=solver,
                            samples=samples, iterations=iterations)
    planner.reset(goal_z)
    times, rss = [], {}
    for i in range(max(steps, warmup + timed)):
        t = time.perf_counter()
        planner.act(latents[i % len(latents)])
        if warmup <= i < warmup + timed:
            times.append(time.perf_counter() - t)
        if i + 1 == warmup:
            rss["after_warmup_mib"] = rss_mib()
    rss["after_all_mib"] = rss_mib()
    return {"solver": solver, "samples": samples, "iterations": iterations, "horizon": horizon, "threads": threads,
            "plan_ms_median": float(np.median(times) * 1000), "plan_ms_mean": float(np.mean(times) * 1000),
            "encode_ms_per_frame": encode_ms, "steps": max(steps, warmup + timed), "warmup": warmup, **rss,
            "rss_growth": rss["after_all_mib"] / rss["after_warmup_mib"] - 1, "cpu": cpu_tier_line()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--solver", default="cem")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000, help="consecutive planning steps of the memory check")
    p.add_argument("--head", default="panorama-rooms-small-goal-distance")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from benchmarks.report import _stamped

    r = _stamped("python benchmarks/bench_plan.py " + " ".join(sys.argv[1:]), lambda: benchmark_plan(
        args.solver, args.samples, args.iterations, args.horizon, args.threads, args.steps, head=args.head))
    print(f"{r['cpu']}; {r['threads']} threads; {r['solver']} {r['samples']} samples x {r['iterations']} iterations, "
          f"horizon {r['horizon']}")
    print(f"planning: {r['plan_ms_median']:.1f} ms/step median, {r['plan_ms_mean']:.1f} mean "
          f"(target <= 500); encoding {r['encode_ms_per_frame']:.1f} ms/frame")
    print(f"memory: {r['after_warmup_mib']:.1f} MiB after {r['warmup']} steps, {r['after_all_mib']:.1f} MiB after "
          f"{r['steps']} ({100 * r['rss_growth']:+.2f} %, target within 5 %)")
    if args.json:
        from btnk_env.models.files import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
