"""Panorama collection frames/s with 1 and N worker processes, and bytes per frame on disk.

Run: ``python benchmarks/bench_collect.py [--frames 1200] [--height 128] [--workers 1 2] [--rounds 2]``.
Each round collects the same frames once per worker count (interleaved: 1, 2, 1, 2, ...), as
shards, from a fresh temporary folder; the wall time includes starting the worker processes
(each builds its own renderer), so it is what ``btnk-env collect --workers N`` costs.
Bytes per frame: the same frames as a PNG folder and as a shard set, every file counted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

ENV_ID = "btnk_env/PanoramaRooms-v0"


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and of its finished children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_collect(frames: int = 1200, height: int = 128, workers=(1, 2), rounds: int = 2, shard_size: int = 50) -> dict:
    """Frames/s per worker count (best and all rounds) and bytes per frame of both formats.

    Returns:
        ``{"frames", "size", "cpu_count", "workers": {N: {"fps_best", "fps_rounds", "s_rounds",
        "steady_fps_rounds" (frames/s between the first and the last shard commit: without start-up),
        "cpu_ms_per_frame" (CPU time of this process and the workers per frame), "load_before"
        (1-minute load average before the round: other processes sharing the cores)}},
        "speedup" (best N=max vs best N=1), "bytes_per_frame": {"folder", "shards"}, "files": {...}}``.
    """
    from btnk_env.collection import collect_panoramas

    common = dict(seeds="0-999", frames_per_scene=10, height=height, progress=False)
    out: dict = {"frames": frames, "size": f"{height}x{2 * height}", "cpu_count": os.cpu_count(),
                 "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "unset"), "workers": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench_collect_"))
    try:
        for r in range(rounds):
            for n in workers:
                target = tmp / f"w{n}_r{r}"
                load = os.getloadavg()[0]
                stamps: list = []
                start, cpu = time.perf_counter(), _cpu_s()
                collect_panoramas(ENV_ID, target, frames, format="shards", shard_size=shard_size, workers=n,
                                  callback=lambda i, rec: stamps.append(time.perf_counter()), **common)
                elapsed, cpu = time.perf_counter() - start, _cpu_s() - cpu
                first = shard_size  # frames stored by the first shard commit
                steady = (frames - first) / max(stamps[-1] - stamps[0], 1e-9)
                row = out["workers"].setdefault(n, {"fps_rounds": [], "s_rounds": [], "steady_fps_rounds": [],
                                                    "cpu_ms_per_frame": [], "load_before": []})
                row["steady_fps_rounds"].append(round(steady, 1))
                row["fps_rounds"].append(round(frames / elapsed, 1))
                row["s_rounds"].append(round(elapsed, 2))
                row["cpu_ms_per_frame"].append(round(1000 * cpu / frames, 2))
                row["load_before"].append(round(load, 1))
                shutil.rmtree(target)
        for row in out["workers"].values():
            row["fps_best"] = max(row["fps_rounds"])
        if len(workers) > 1:
            out["speedup"] = round(out["workers"][max(workers)]["fps_best"] / out["workers"][min(workers)]["fps_best"], 2)
        n_small = min(frames, 500)
        folder = collect_panoramas(ENV_ID, tmp / "folder", n_small, **common)
        shards = collect_panoramas(ENV_ID, tmp / "shards", n_small, format="shards", shard_size=shard_size, **common)
        out["bytes_per_frame"] = {"folder": round(_folder_bytes(folder) / n_small), "shards": round(_folder_bytes(shards) / n_small)}
        out["files"] = {"folder": sum(1 for p in folder.rglob("*") if p.is_file()),
                        "shards": sum(1 for p in shards.rglob("*") if p.is_file()), "frames": n_small}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    r = bench_collect(args.frames, args.height, tuple(args.workers), args.rounds)
    print(f"cpu cores: {r['cpu_count']}, {r['frames']} frames at {r['size']}, LP_NUM_THREADS={r['LP_NUM_THREADS']}")
    for n, row in r["workers"].items():
        print(f"{n} worker(s): best {row['fps_best']:7.1f} frames/s (rounds: {row['fps_rounds']} frames/s, {row['s_rounds']} s, "
              f"after start-up {row['steady_fps_rounds']} frames/s, "
              f"CPU {row['cpu_ms_per_frame']} ms/frame, load average before {row['load_before']})")
    if "speedup" in r:
        print(f"speedup {max(args.workers)} vs {min(args.workers)} workers: {r['speedup']}x")
    b = r["bytes_per_frame"]
    print(f"bytes per frame: PNG folder {b['folder']}, shards {b['shards']} "
          f"({r['files']['folder']} vs {r['files']['shards']} files for {r['files']['frames']} frames)")


if __name__ == "__main__":
    main()
