"""Picture of a model's reconstructions on held-out panoramas: truth | reconstruction, with PSNR.

    python examples/heldout_reconstructions.py --model panorama-rooms-small \
        --data data/rooms128_heldout --out docs/images/panorama_rooms_small_heldout.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from btnk_env.video.layout import psnr
from btnk_env.models import BtnkMAE, frames_to_tensor, tensor_to_frames
from btnk_env.models.files import atomic_path
from btnk_env.models.image_file import read_image


def load_frames(folder: Path, count: int, stride: int) -> tuple[list[str], np.ndarray]:
    """``count`` panoramas of a collected dataset (every ``stride``-th manifest entry)."""
    lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    picked = lines[::stride][:count]
    frames = np.stack([read_image(folder / entry["file"]) for entry in picked])
    return [f"{e['scene']}" for e in picked], frames


def figure(truth: np.ndarray, recon: np.ndarray, labels: list[str]) -> Image.Image:
    """Rows of ``truth | reconstruction`` with the scene and PSNR under each pair."""
    n, h, w, _ = truth.shape
    band, gap = 16, 4
    canvas = Image.new("RGB", (2 * w + gap, n * (h + band) + (n - 1) * gap), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        y = i * (h + band + gap)
        canvas.paste(Image.fromarray(truth[i]), (0, y))
        canvas.paste(Image.fromarray(recon[i]), (w + gap, y))
        draw.text((2, y + h + 2), f"{labels[i]}: held-out truth", fill="black")
        draw.text((w + gap + 2, y + h + 2), f"reconstruction from the 192-d latent, {psnr(truth[i], recon[i]):.1f} dB", fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="panorama-rooms-small")
    parser.add_argument("--data", type=Path, required=True, help="a dataset folder written by btnk-env collect")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--stride", type=int, default=37)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = BtnkMAE.from_pretrained(args.model)
    labels, frames = load_frames(args.data, args.count, args.stride)
    with torch.inference_mode():
        x = frames_to_tensor(frames, size=model.img_size)
        truth = tensor_to_frames(x)
        recon = tensor_to_frames(model.reconstruct(x))
    with atomic_path(args.out, args.out.suffix) as tmp:
        figure(truth, recon, labels).save(tmp)
    print(f"wrote {args.out}; mean PSNR {np.mean(psnr(truth, recon)):.2f} dB over {len(frames)} panoramas")


if __name__ == "__main__":
    main()
