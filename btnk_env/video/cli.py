"""``btnk-env video``: decode a latent rollout (or a latent interpolation) into a video.

Examples::

    btnk-env video --checkpoint ckpt.pth --latents rollout.npy --out rollout.mp4
    btnk-env video --checkpoint ckpt.pth --latents rollout.npy --truth frames.npy --context 5 --out cmp.mp4
    btnk-env video --checkpoint ckpt.pth --interpolate a.png b.png --steps 30 --out interp.gif

Every input is checked (output path, latents file and width, ground-truth shape) before any
decoding starts; decoding and writing show tqdm progress bars.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="anything BtnkMAE.from_pretrained loads: .pth, a save_pretrained folder, a release name",
    )
    parser.add_argument(
        "--num-heads", type=int, default=None, help="encoder heads, for checkpoints of non-standard width"
    )
    parser.add_argument(
        "--decoder-num-heads", type=int, default=None, help="decoder heads, for checkpoints of non-standard width"
    )
    parser.add_argument(
        "--img-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="decode at this size instead of the checkpoint's",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--latents", type=Path, help="(T, D) or (B, T, D) latents: .npy, .npz, .pt, .safetensors")
    source.add_argument(
        "--interpolate",
        type=Path,
        nargs=2,
        metavar=("START", "END"),
        help="two images: decode the path between their latents",
    )
    parser.add_argument("--key", default=None, help="entry of a multi-array latents file")
    parser.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="ground-truth frames: .npy/.npz (T, H, W, 3) or (B, T, H, W, 3) uint8, a video, or a folder of images",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=0,
        help="the first K steps were decoded from observations (green); the rest are imagined (red)",
    )
    parser.add_argument(
        "--layout",
        choices=("compare", "raw"),
        default="compare",
        help="comparison grid (default) or the decoded frames only",
    )
    parser.add_argument("--columns", type=int, default=4, help="sequences per row of the comparison grid")
    parser.add_argument(
        "--scale", type=int, default=None, help="integer upscaling of the tiles (default: automatic for small frames)"
    )
    parser.add_argument("--no-psnr", action="store_true", help="no per-frame PSNR in the captions")
    parser.add_argument("--steps", type=int, default=30, help="frames of an --interpolate video")
    parser.add_argument("--method", choices=("linear", "slerp"), default="slerp", help="latent path of --interpolate")
    parser.add_argument("--out", type=Path, required=True, help="output: .mp4, .gif, or a folder name (PNG frames)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second")
    parser.add_argument("--crf", type=int, default=18, help="MP4 quality: x264 constant rate factor (lower is better)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames decoded per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"), default="fp32",
        help="inference precision (auto: bf16 where the CPU or GPU has bf16 matrix units, else fp32)"
    )


def load_frames(path: Path) -> np.ndarray:
    """Ground-truth frames from ``path``: ``(T, H, W, 3)`` or ``(B, T, H, W, 3)`` uint8."""
    import imageio.v3 as iio

    from btnk_env.models.image_file import read_image

    if not path.exists():
        raise FileNotFoundError(f"ground-truth frames {path} do not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        frames = np.stack([read_image(p) for p in files])
    elif path.suffix.lower() in (".npy", ".npz"):
        frames = np.load(path, allow_pickle=False)
        if isinstance(frames, np.lib.npyio.NpzFile):
            with frames:
                if len(frames.files) != 1:
                    raise ValueError(f"{path} holds {frames.files}; save one array of frames")
                frames = frames[frames.files[0]]
    else:
        frames = np.stack([_rgb(f, path) for f in iio.imread(path, index=None)])
    if frames.dtype != np.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
        raise ValueError(
            f"ground truth in {path} must be (T, H, W, 3) or (B, T, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
        )
    return frames


def _rgb(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _progress(frames: Iterable[np.ndarray], total: int, desc: str) -> Iterator[np.ndarray]:
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="frame", file=sys.stderr) as bar:
        for frame in frames:
            yield frame
            bar.update(1)


def _raw_frames(pred: np.ndarray) -> Iterator[np.ndarray]:
    """(B, T, H, W, 3) -> T frames with the B sequences side by side."""
    for t in range(pred.shape[1]):
        yield np.concatenate(list(pred[:, t]), axis=1)


def _load_model(args: argparse.Namespace):
    """The model (in eval mode, on ``--device``) and the ``(H, W)`` to decode at."""
    from btnk_env.models import BtnkMAE
    from btnk_env.models.config import check_img_size
    from btnk_env.models.device import resolve_device

    overrides = {
        k: v for k, v in (("num_heads", args.num_heads), ("decoder_num_heads", args.decoder_num_heads)) if v is not None
    }
    model = BtnkMAE.from_pretrained(args.checkpoint, map_location=resolve_device(args.device or "auto"), **overrides)
    size = model.img_size if args.img_size is None else check_img_size(tuple(args.img_size), model.patch_size)
    return model, size


def run(args: argparse.Namespace) -> int:
    """Run ``btnk-env video``; input errors become one line through :func:`btnk_env.models.errors.explain`."""
    from tqdm import tqdm

    from btnk_env.video import check_latents, decode_rollout, interpolate_latents, load_latents
    from btnk_env.video.io import check_video_path, write_video
    from btnk_env.video.layout import interpolation_frames, iter_comparison_frames
    from btnk_env.models import resize_frames
    from btnk_env.models.precision import check_precision

    out = check_video_path(args.out)
    if args.context < 0 or args.batch_size < 1 or args.fps <= 0 or args.steps < 2:
        raise ValueError("--context must be >= 0, --batch-size >= 1, --fps > 0 and --steps >= 2")
    writer_kwargs = {"crf": args.crf} if out.suffix.lower() == ".mp4" else {}
    latents = load_latents(args.latents, args.key) if args.latents is not None else None
    truth = load_frames(args.truth) if args.truth is not None else None
    model, size = _load_model(args)
    check_precision(args.precision, model.device)

    if args.interpolate is not None:
        import torch

        from btnk_env.models import frames_to_tensor
        from btnk_env.models.image_file import read_image

        ends = [resize_frames(read_image(p), size) for p in args.interpolate]
        with torch.inference_mode():
            z = model.encode(frames_to_tensor(np.stack(ends), device=model.device))  # (2, D)
        path = interpolate_latents(z[0].cpu(), z[1].cpu(), args.steps, args.method)  # (S, D)
        with tqdm(total=len(path), desc="decoding", unit="frame", file=sys.stderr) as bar:
            decoded = decode_rollout(
                model, path, size=size, batch_size=args.batch_size, precision=args.precision, progress=bar.update
            )[0]
        frames = interpolation_frames(ends[0], decoded, ends[1], scale=args.scale)
        write_video(out, _progress(frames, len(frames), "writing"), args.fps, **writer_kwargs)
        print(f"wrote {out} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]})")
        return 0

    latents = check_latents(latents, model.latent_dim)  # (B, T, D)
    b, t_len, _ = latents.shape
    if truth is not None:
        truth = truth[None] if truth.ndim == 4 else truth
        if truth.shape[:2] != (b, t_len):
            raise ValueError(
                f"ground truth holds {truth.shape[:2]} (B, T) frames but the latents {(b, t_len)}; they must match"
            )
        truth = resize_frames(truth, size)
    if args.context > t_len:
        raise ValueError(f"--context {args.context} is longer than the rollout (T={t_len})")

    with tqdm(total=b * t_len, desc="decoding", unit="frame", file=sys.stderr) as bar:
        pred = decode_rollout(
            model, latents, size=size, batch_size=args.batch_size, precision=args.precision, progress=bar.update
        )
    if args.layout == "raw":
        frames = _raw_frames(pred)
    else:
        frames = iter_comparison_frames(
            pred, truth, context=args.context, psnr_caption=not args.no_psnr, columns=args.columns, scale=args.scale
        )
    write_video(out, _progress(frames, t_len, "writing"), args.fps, **writer_kwargs)
    print(f"wrote {out} ({t_len} frames of {b} sequence(s))")
    return 0
