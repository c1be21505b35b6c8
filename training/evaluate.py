"""``btnk-env eval``: PSNR and SSIM of a model's reconstructions on a held-out image folder.

    btnk-env eval --checkpoint runs/pano/final --data data/pano_val
    btnk-env eval --checkpoint btnk_tiny_noact_64.pth --num-heads 4 --decoder-num-heads 4 --data imgs --img-size 64 64

Images are resized (bicubic, whole image) to the model's input size; the reconstruction through
the latent and the input are compared in ``[0, 1]`` (reconstructions clipped).

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> from models import BtnkMAE
    >>> d = tempfile.mkdtemp()
    >>> Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(f"{d}/a.png")
    >>> result = evaluate(BtnkMAE("test").eval(), build_dataset(d, (64, 64), transform="resize"))
    >>> result.n_images, 0.0 <= result.ssim <= 1.0
    (1, True)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from btnk_env.models.image import denormalize
from btnk_env.training.datasets import DatasetError, build_dataset, collate_skip
from btnk_env.training.metrics import psnr, ssim
from btnk_env.training.shard_stream import ShardStream


@dataclass
class EvalResult:
    """Mean PSNR (dB) and SSIM over the readable images."""

    psnr: float
    ssim: float
    n_images: int
    skipped: List[str] = field(default_factory=list)
    per_image: List[dict] = field(default_factory=list)


@torch.no_grad()
def evaluate(model: Any, dataset: Dataset, batch_size: int = 8, progress: bool = False) -> EvalResult:
    """Reconstruct every image of ``dataset`` (``(3, H, W)`` normalized items) through the latent."""
    model.eval()
    if isinstance(dataset, ShardStream):  # a shard set: read in index order, shard by shard
        loader: Any = dataset.ordered_batches(batch_size)
    else:
        batches = [[(i, 0) for i in range(s, min(s + batch_size, len(dataset)))] for s in range(0, len(dataset), batch_size)]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=lambda items: (collate_skip(items), [k for _, k in items]))
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="eval", unit="batch")
    per_image, skipped = [], []
    for (images, bad), keys in loader:
        skipped += bad
        if images.numel() == 0:
            continue
        x = images.to(model.device, model.dtype)
        target = denormalize(x.float()).clamp(0, 1)
        recon = denormalize(model.reconstruct(x).float()).clamp(0, 1)
        good = [k for k in keys if k not in bad]
        for key, p, s in zip(good, psnr(recon, target).tolist(), ssim(recon, target).tolist()):
            per_image.append({"image": key, "psnr": p, "ssim": s})
    if not per_image:
        raise DatasetError(f"no readable image to evaluate ({len(skipped)} unreadable)")
    n = len(per_image)
    return EvalResult(sum(r["psnr"] for r in per_image) / n, sum(r["ssim"] for r in per_image) / n, n, skipped, per_image)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``btnk-env eval``."""
    parser.add_argument("--checkpoint", required=True, help="save_pretrained folder, training or original .pth, or release name")
    parser.add_argument("--data", required=True, help="held-out image folder (or panorama dataset, episode folder, shard set of "
                        "panoramas or episodes, or hf:<name>)")
    parser.add_argument("--split", default="val", help="split for hf: datasets / ImageFolder roots (default val)")
    parser.add_argument("--img-size", type=int, nargs="+", metavar="S", help="run at H W (or S) instead of the model's size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--num-heads", type=int, default=None, help="encoder heads, for non-standard widths")
    parser.add_argument("--decoder-num-heads", type=int, default=None, help="decoder heads, for non-standard widths")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write per-image results as JSON")


def run(args: argparse.Namespace) -> int:
    """Load, evaluate, print ``PSNR`` and ``SSIM``."""
    from btnk_env.models import BtnkMAE, CheckpointError
    from btnk_env.models.config import check_img_size
    from btnk_env.models.device import resolve_device

    overrides = {k: v for k, v in (("num_heads", args.num_heads), ("decoder_num_heads", args.decoder_num_heads)) if v}
    try:
        model = BtnkMAE.from_pretrained(args.checkpoint, map_location=resolve_device(args.device), **overrides)
        size = model.img_size  # reconstruct() decodes at the size of its input
        if args.img_size:
            if len(args.img_size) not in (1, 2):
                raise ValueError(f"--img-size takes H W or S, got {args.img_size}")
            size = check_img_size(tuple(args.img_size) if len(args.img_size) == 2 else args.img_size[0], model.patch_size)
        dataset = build_dataset(args.data, size, split=args.split, transform="resize", hflip=False,
                                max_images=args.limit)
        result = evaluate(model, dataset, args.batch_size, progress=sys.stderr.isatty())
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"btnk-env eval: {err}", file=sys.stderr)
        return 2
    h, w = size
    print(f"PSNR {result.psnr:.2f} dB  SSIM {result.ssim:.4f}  over {result.n_images} images at {h}x{w}"
          + (f" ({len(result.skipped)} unreadable, skipped)" if result.skipped else ""))
    if args.json:
        from btnk_env.models.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(asdict(result), indent=1))
    return 0


def _main(argv: Optional[List[str]] = None) -> int:  # pragma: no cover - python -m btnk_env.training.evaluate
    parser = argparse.ArgumentParser(prog="python -m btnk_env.training.evaluate")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
