"""Frames per second of the built-in panorama world (step + render + read-back).

Run: ``python benchmarks/bench_env.py [--steps 300] [--heights 256 512]``. Set
``LP_NUM_THREADS=2`` to limit Mesa's software renderer to two threads.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def bench_env(heights=(256, 512), steps: int = 300, depth: bool = False, warmup: int = 10) -> dict:
    """Time random-action steps of ``PanoramaRoomsEnv``.

    Returns:
        ``{"<H>x<2H>": {"fps", "ms_per_frame", "cpu_ms_per_frame" (CPU time of all threads of
        this process per frame: less sensitive to other processes than the wall clock), "renderer"}}``.
    """
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

    results = {}
    for h in heights:
        env = PanoramaRoomsEnv(height=h, depth=depth)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.choice(3, size=steps + warmup, p=[0.6, 0.2, 0.2])
        for a in actions[:warmup]:
            env.step(int(a))
        start, cpu_start = time.perf_counter(), time.process_time()
        for a in actions[warmup:]:
            _, _, terminated, _, _ = env.step(int(a))
            if terminated:
                env.reset()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        with env._renderer.ctx as ctx:
            renderer = ctx.info["GL_RENDERER"]
        env.close()
        results[f"{h}x{2 * h}"] = {"fps": steps / elapsed, "ms_per_frame": 1000 * elapsed / steps,
                                   "cpu_ms_per_frame": 1000 * cpu / steps, "renderer": renderer}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--heights", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--depth", action="store_true")
    args = parser.parse_args()
    print(f"cpu cores: {os.cpu_count()}, LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'unset')}")
    for size, r in bench_env(args.heights, args.steps, args.depth).items():
        print(f"PanoramaRooms {size}: {r['fps']:7.1f} frames/s ({r['ms_per_frame']:.2f} ms/frame wall, "
              f"{r['cpu_ms_per_frame']:.2f} ms/frame CPU over all threads, {r['renderer']})")


if __name__ == "__main__":
    main()
