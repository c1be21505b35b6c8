"""Training speed and peak memory: optimizer steps per second for a model preset and batch.

    .venv/bin/python benchmarks/bench_train.py                       # 'small' at batch 8 and 'base' at batch 8, 224x224
    .venv/bin/python benchmarks/bench_train.py --preset tiny --batch-size 16 --img-size 256 512 --precision bf16

Each configuration runs in a fresh subprocess so that its peak memory (process peak RSS on the CPU,
``torch.cuda.max_memory_allocated`` on CUDA) is its own. A step is the trainer's: forward with the
full-MAE path, both losses, backward, AdamW over the trainer's parameter groups. Input is random
(data loading is not measured). Timings on a shared machine are noisy: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_train(preset: str = "small", batch_size: int = 8, img_size: Sequence[int] = (224, 224), steps: int = 5,
                warmup: int = 1, precision: str = "fp32", device: str = "auto", threads: Optional[int] = None) -> Dict:
    """Time ``steps`` training steps (after ``warmup``) in this process.

    Returns:
        ``{"preset", "batch_size", "img_size", "precision", "device", "params_m", "steps_per_s",
        "images_per_s", "peak_mem_mib"}``.
    """
    import contextlib

    import torch

    from benchmarks.common import peak_memory_mib
    from btnk_env.models import BtnkMAE
    from btnk_env.training.distributed import resolve_device
    from btnk_env.training.losses import bottleneck_losses
    from btnk_env.training.lr_sched import param_groups
    from btnk_env.training.trainer import prepare_model

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = prepare_model(BtnkMAE(preset, img_size=tuple(img_size)).to(dev).train(), None)
    opt = torch.optim.AdamW(param_groups(model, 0.05, 0.1), lr=1e-4, betas=(0.9, 0.95))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    amp = (contextlib.nullcontext() if precision == "fp32"
           else torch.autocast(dev.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16))
    images = torch.randn(batch_size, 3, *img_size, device=dev)

    def step() -> None:
        with amp:
            out = model(images, full_mae=True)
        loss = bottleneck_losses(model, images, out, 1.0, 1.0)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    # VmHWM of this process (ru_maxrss would carry the parent's peak across exec)
    peak = peak_memory_mib(dev)
    return {"preset": preset, "batch_size": batch_size, "img_size": list(img_size), "precision": precision,
            "device": str(dev), "threads": torch.get_num_threads(),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "steps_per_s": round(steps / elapsed, 3), "images_per_s": round(steps * batch_size / elapsed, 2),
            "peak_mem_mib": round(peak)}


def bench_in_subprocess(**kwargs) -> Dict:
    """:func:`bench_train` in a fresh interpreter (so peak memory is this configuration's alone)."""
    cmd = [sys.executable, __file__, "--one", json.dumps(kwargs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--preset", action="append", help="preset(s) to time (default: small and base)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(bench_train(**json.loads(args.one))))
        return 0
    print(f"{'preset':>6} {'batch':>5} {'size':>9} {'prec':>5} {'device':>6} {'params':>7} {'steps/s':>8} "
          f"{'img/s':>7} {'peak MiB':>9}")
    for preset in args.preset or ["small", "base"]:
        r = bench_in_subprocess(preset=preset, batch_size=args.batch_size, img_size=args.img_size, steps=args.steps,
                                precision=args.precision, device=args.device, threads=args.threads)
        print(f"{r['preset']:>6} {r['batch_size']:>5} {'x'.join(map(str, r['img_size'])):>9} {r['precision']:>5} "
              f"{r['device']:>6} {r['params_m']:>6}M {r['steps_per_s']:>8.3f} {r['images_per_s']:>7.2f} {r['peak_mem_mib']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
