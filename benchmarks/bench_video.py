"""Video decoding speed: decoded frames/s of :func:`btnk_env.video.decode_rollout` (latents ->
uint8 frames) for ``base`` at 224x224 and a small preset at 256x512 panoramas, per batch size and
precision; and the cost of the rest of the pipeline (comparison layout, MP4 and GIF encoding).

    python -m benchmarks.bench_video                       # defaults below, CPU
    python -m benchmarks.bench_video --device cuda --precisions fp32,bf16,fp16

Random weights: decoding speed does not depend on the values. Timings are the best of several
repetitions (the machine is shared); frames/s = frames per call / best call time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import best_time, device_name
from btnk_env.video import decode_rollout
from btnk_env.video.io import write_gif, write_mp4
from btnk_env.video.layout import comparison_frames
from btnk_env.models import BtnkMAE, frames_to_tensor, tensor_to_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

CASES = (("base", (224, 224), (1, 8, 32)), ("small", (256, 512), (1, 8, 32)))
"""(preset, (H, W), batch sizes) measured by default."""


def decode_fps(
    preset: str, size: tuple, batches, precisions=("fp32",), device: str = "cpu", frames: int = 32, reps: int = 3
) -> list:
    """Decoded frames/s of a ``frames``-long rollout at each ``batch_size`` and precision.

    Returns:
        a list of rows ``{"preset", "size", "precision", "batch_size", "frames_per_s", "ms_per_frame"}``.
    """
    torch.manual_seed(0)
    model = BtnkMAE(preset, img_size=size).to(device).eval()
    latents = torch.randn(frames, model.latent_dim)
    rows = []
    for precision in precisions:
        for batch in batches:
            seconds = best_time(
                lambda b=batch, p=precision: decode_rollout(model, latents, batch_size=b, precision=p),
                device,
                reps=reps,
                warmup=1,
            )
            rows.append(
                dict(
                    preset=preset,
                    size=f"{size[0]}x{size[1]}",
                    precision=precision,
                    batch_size=batch,
                    frames_per_s=round(frames / seconds, 2),
                    ms_per_frame=round(1000 * seconds / frames, 2),
                )
            )
    return rows


def _turning(size: tuple, steps: int, shift: int) -> np.ndarray:
    """``(steps, H, W, 3)`` uint8: the shared Habitat panorama (noise if absent), turning in place."""
    path = SHARED / "images" / "habitat_pano" / "img_0.png"
    if path.is_file():
        import imageio.v3 as iio

        pano = tensor_to_frames(frames_to_tensor(iio.imread(path)[..., :3], size=size))[0]
    else:
        pano = np.random.default_rng(shift).integers(0, 256, (*size, 3), dtype=np.uint8)
    return np.stack([np.roll(pano, (t + 3 * shift) * size[1] // 24, axis=1) for t in range(steps)])


def pipeline_fps(size: tuple = (256, 512), sequences: int = 2, steps: int = 16, reps: int = 3) -> dict:
    """Frames/s of the CPU-side steps after decoding (comparison layout, MP4, GIF), for
    ``sequences`` tiled rollouts of ``steps`` panoramas (a real Habitat panorama, turning)."""
    truth = np.stack([_turning(size, steps, shift) for shift in range(sequences)])  # (B, T, H, W, 3)
    pred = (truth // 8 * 8 + 4).astype(np.uint8)  # a close, slightly wrong "prediction"
    video = comparison_frames(pred, truth, context=steps // 2)
    out = {"layout_size": f"{video.shape[1]}x{video.shape[2]}"}
    out["comparison_layout_fps"] = round(
        steps / best_time(lambda: comparison_frames(pred, truth, context=steps // 2), reps=reps, warmup=0), 2
    )
    with tempfile.TemporaryDirectory() as tmp:
        out["mp4_write_fps"] = round(
            steps / best_time(lambda: write_mp4(Path(tmp) / "v.mp4", video), reps=reps, warmup=0), 2
        )
        out["gif_write_fps"] = round(
            steps / best_time(lambda: write_gif(Path(tmp) / "v.gif", video), reps=reps, warmup=0), 2
        )
    return out


def run(device: str = "cpu", precisions=("fp32",), cases=CASES, frames: int = 32, reps: int = 3) -> dict:
    """All figures as a dict: ``{"device", "decode": [rows], "pipeline": {...}}``."""
    decode = []
    for preset, size, batches in cases:
        decode += decode_fps(preset, size, batches, precisions, device, frames, reps)
    return {"device": device_name(device), "decode": decode, "pipeline": pipeline_fps(reps=reps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32,bf16,fp16,int8")
    parser.add_argument("--frames", type=int, default=32, help="rollout length decoded per call")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(args.device, tuple(args.precisions.split(",")), CASES, args.frames, args.reps)
    print(f"device: {result['device']}")
    print(f"{'preset':<7}{'size':>9}{'precision':>10}{'batch':>7}{'frames/s':>10}{'ms/frame':>10}")
    for row in result["decode"]:
        cells = f"{row['preset']:<7}{row['size']:>9}{row['precision']:>10}{row['batch_size']:>7}"
        print(f"{cells}{row['frames_per_s']:>10}{row['ms_per_frame']:>10}")
    pipe = result["pipeline"]
    print(
        f"2 x 256x512 comparison ({pipe['layout_size']}): layout {pipe['comparison_layout_fps']} frames/s, "
        f"MP4 {pipe['mp4_write_fps']} frames/s, GIF {pipe['gif_write_fps']} frames/s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
