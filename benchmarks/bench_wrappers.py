"""Benchmark of the observation wrappers.

1. Overhead of :class:`btnk_env.BtnkMAEObservation` at batch 1 (one ``env.step`` on an environment
   that returns a ready frame) against a bare ``model.encode`` of the same frame, already a
   normalized tensor (and, for reference, ``model.encode(frames_to_tensor(frame))``).
2. Throughput of :class:`btnk_env.BtnkMAEVectorObservation` (one batched forward per step) against
   a loop of single-env wrappers, for 1, 4 and 8 environments: milliseconds per frame and speed-up.

Random weights (speed does not depend on them). Timings are the best of interleaved repeats.

Usage::

    python benchmarks/bench_wrappers.py                          # base @224 and tiny @224, CPU/GPU auto
    python benchmarks/bench_wrappers.py --preset small --size 256 512 --steps 10 --device cpu

:func:`benchmark_wrappers` returns the figures as a dict for a benchmark suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import gymnasium as gym
import numpy as np
import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btnk_env import BtnkMAEObservation, BtnkMAEVectorObservation  # noqa: E402
from btnk_env.models import BtnkMAE, frames_to_tensor  # noqa: E402
from btnk_env.models.device import resolve_device  # noqa: E402


class StaticFrameEnv(gym.Env):
    """Returns one fixed ``(H, W, 3)`` uint8 frame at every step: the environment costs nothing."""

    metadata = {"render_modes": [], "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.observation_space = gym.spaces.Box(0, 255, frame.shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.frame, {}

    def step(self, action):
        return self.frame, 0.0, False, False, {}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _best(fns: Dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> Dict[str, float]:
    """Best (minimum) seconds of each function over ``repeats`` calls, interleaved so that machine
    noise hits all alike; the minimum is the least disturbed run (as ``timeit`` advises)."""
    for fn in fns.values():  # warm-up
        fn()
    times: Dict[str, list] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device))
    return {k: min(v) for k, v in times.items()}


def benchmark_wrappers(
    preset: str = "base",
    size: Tuple[int, int] = (224, 224),
    num_envs: Sequence[int] = (1, 4, 8),
    repeats: int = 10,
    device: str = "auto",
    precision: str = "fp32",
    seed: int = 0,
) -> Dict[str, Any]:
    """Measure the wrappers; returns a dict of figures (seconds, best of ``repeats``).

    Returns:
        ``{"preset", "size", "device", "precision", "encode_s", "encode_with_preprocess_s",
        "wrapper_step_s", "wrapper_overhead_pct", "vector": {n: {"vector_ms_per_frame",
        "loop_ms_per_frame", "speedup"}}}``
    """
    torch.manual_seed(seed)
    model = BtnkMAE(preset, img_size=tuple(size)).to(resolve_device(device))  # wrappers never move the model
    frame = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    single = BtnkMAEObservation(StaticFrameEnv(frame), model, precision=precision)
    dev = single.device
    single.reset(seed=0)
    net = single.encoder._net  # the (possibly reduced-precision) model the wrapper runs
    x = frames_to_tensor(frame, device=dev)

    def bare() -> None:
        with torch.inference_mode():
            net.encode(x).float().cpu()

    def bare_pre() -> None:
        with torch.inference_mode():
            net.encode(frames_to_tensor(frame, device=dev)).float().cpu()

    t = _best({"bare": bare, "bare_pre": bare_pre, "wrapper": lambda: single.step(0)}, repeats, dev)
    out: Dict[str, Any] = dict(
        preset=preset, size=tuple(size), device=str(dev), precision=precision,
        encode_s=t["bare"], encode_with_preprocess_s=t["bare_pre"], wrapper_step_s=t["wrapper"],
        wrapper_overhead_pct=100.0 * (t["wrapper"] / t["bare"] - 1.0), vector={},
    )
    for n in num_envs:
        envs = BtnkMAEVectorObservation(
            gym.vector.SyncVectorEnv([lambda: StaticFrameEnv(frame)] * n), model, precision=precision
        )
        singles = [BtnkMAEObservation(StaticFrameEnv(frame), model, precision=precision) for _ in range(n)]
        envs.reset(seed=0)
        for s in singles:
            s.reset(seed=0)
        actions = np.zeros(n, dtype=np.int64)

        def loop() -> None:
            for s in singles:
                s.step(0)

        t = _best({"vector": lambda: envs.step(actions), "loop": loop}, max(3, repeats // 2), dev)
        out["vector"][n] = dict(
            vector_ms_per_frame=1e3 * t["vector"] / n, loop_ms_per_frame=1e3 * t["loop"] / n, speedup=t["loop"] / t["vector"]
        )
        envs.close()
    return out


def format_report(r: Dict[str, Any]) -> str:
    lines = [
        f"preset={r['preset']} size={r['size'][0]}x{r['size'][1]} device={r['device']} precision={r['precision']}",
        f"  bare model.encode (batch 1)         {1e3 * r['encode_s']:9.2f} ms",
        f"  encode incl. frames_to_tensor       {1e3 * r['encode_with_preprocess_s']:9.2f} ms",
        f"  BtnkMAEObservation.step             {1e3 * r['wrapper_step_s']:9.2f} ms   overhead {r['wrapper_overhead_pct']:+.1f}% (target < 5%)",
        "  envs  vector ms/frame  loop ms/frame  speed-up (target >= 1.15x at 8)",
    ]
    for n, v in r["vector"].items():
        lines.append(f"  {n:4d}  {v['vector_ms_per_frame']:15.2f}  {v['loop_ms_per_frame']:13.2f}  {v['speedup']:7.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", action="append", help="model preset(s) (default: base and tiny)")
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--num-envs", type=int, nargs="+", default=(1, 4, 8))
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per figure (best of)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for preset in args.preset or ["base", "tiny"]:
        r = benchmark_wrappers(preset, tuple(args.size), args.num_envs, args.repeats, args.device, args.precision)
        print(format_report(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
