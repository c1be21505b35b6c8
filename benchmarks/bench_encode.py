"""``btnk-env encode`` throughput against a bare ``model.encode`` loop at the same batch size.

The bare loop encodes frames already decoded and converted in memory; ``encode_dataset`` (given
the same loaded model: loading it once, ~0.3 s on an idle machine, is not per-frame work) reads the
PNGs, decodes them (``--workers`` threads ahead of the model, :mod:`btnk_env.training.frame_reader`), encodes, and writes chunks and the joined arrays, up to
the final ``latents.json``. The two are timed in alternation in one
process (best of ``--reps``, and the paired ratio: median over rounds of that round's bare time over its
encode time), plus the parts of the difference: PNG decoding alone (a worker's job), and
the encode with decoding in the main process (``--workers 0``). Besides frames/s it reports the
CPU time per frame (this process, its threads and its finished worker processes), which says
where the time goes on a machine shared with other work.

Run: ``python benchmarks/bench_encode.py [--frames 1024] [--batch 64] [--height 128] [--workers 0 1 2]``
(the default compares 0, 1 and 2 decoding workers and collects ``--frames`` panoramas of the built-in world at 128x256, the shipped model's
input size, into a temporary folder; ``--data DIR`` reuses a panorama folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from btnk_env.models.hardware import cpu_name


def bench_encode(data: Path, model_name: str = "panorama-rooms-small", batch: int = 64, workers=(0, 1, 2),
                 reps: int = 3, precision: str = "fp32") -> dict:
    from btnk_env.models import BtnkMAE, frames_to_tensor
    from btnk_env.models.precision import for_inference
    from btnk_env.training.datasets import decode_image
    from btnk_env.training.encode import encode_dataset, open_source

    files = open_source(data).files
    n = len(files)
    model = BtnkMAE.from_pretrained(model_name)
    net = for_inference(model, precision)
    frames = np.stack([decode_image(f) for f in files])  # (N, H, W, 3) uint8
    x = frames_to_tensor(frames, size=model.img_size)  # (N, 3, h, w), in memory
    work = Path(tempfile.mkdtemp(prefix="bench_encode_"))

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, n, batch):
                net.encode(x[i:i + batch])

    def decode_only() -> None:  # what a worker does for a dataset of one frame size
        for f in files:
            decode_image(f)

    def command(w: int):
        def go() -> None:
            out = work / f"out{w}"
            shutil.rmtree(out, ignore_errors=True)
            encode_dataset(data, out, model, batch_size=batch, workers=w, precision=precision, device="cpu",
                           progress=False)
        return go

    cases = {"bare model.encode": bare, **{f"btnk-env encode (workers={w})": command(w) for w in workers},
             "PNG decoding only (as in a worker)": decode_only}
    times = {name: [] for name in cases}
    cpu = {name: float("inf") for name in cases}
    bare()  # warm-up (oneDNN primitives, weight packing)
    for _ in range(reps):  # in alternation: the shared machine's speed drifts
        for name, fn in cases.items():
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name] = min(cpu[name], _cpu_seconds() - cpu_start)
    shutil.rmtree(work, ignore_errors=True)
    rate = {name: n / min(ts) for name, ts in times.items()}
    paired = {name: statistics.median(b / t for b, t in zip(times["bare model.encode"], ts))
              for name, ts in times.items() if "encode (" in name}  # same round's bare / this
    base = rate["bare model.encode"]
    return {"frames": n, "batch": batch, "model": model_name, "input": list(model.img_size), "precision": precision,
            "torch_threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
            "frames_per_s": {k: round(v, 1) for k, v in rate.items()},
            "fraction_of_bare": {k: round(v / base, 3) for k, v in rate.items() if "encode (" in k},
            "paired_fraction_of_bare": {k: round(v, 3) for k, v in paired.items()},
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": cpu_name(),
            "shared_machine": True,
            "cpu_ms_per_frame": {k: round(1000 * v / n, 2) for k, v in cpu.items()}}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader workers), all threads."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="a panorama folder (default: collect one)")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--height", type=int, default=128, help="panorama height of the collected frames")
    parser.add_argument("--model", default="panorama-rooms-small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="decoding threads to compare")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    data, tmp = args.data, None
    if data is None:
        from btnk_env.collection import collect_panoramas
        from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

        tmp = Path(tempfile.mkdtemp(prefix="bench_encode_data_"))
        env = PanoramaRoomsEnv(height=args.height)
        start = time.perf_counter()
        data = collect_panoramas(env, tmp / "pano", args.frames, seeds="0-99", progress=False)
        env.close()
        print(f"collected {args.frames} panoramas of {args.height}x{2 * args.height} in {time.perf_counter() - start:.1f} s")
    try:
        result = bench_encode(data, args.model, args.batch, args.workers, args.reps, args.precision)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
