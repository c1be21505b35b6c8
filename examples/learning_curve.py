"""Learning curve of a training run: held-out PSNR and SSIM of its checkpoints against steps and wall time.

    python examples/learning_curve.py --run runs/panorama_rooms_small_v2 --data data/rooms128_heldout \
        --baseline panorama-rooms-small --plot docs/images/panorama_rooms_small_curve.png
    python examples/learning_curve.py ... --watch 300     # keep evaluating new checkpoints every 5 minutes

Every checkpoint of the run (``checkpoint-epoch*.pth`` and ``checkpoint-latest.pth``, at whatever
step it holds when read) is evaluated once with :func:`btnk_env.training.evaluate.evaluate` (the figures of
``btnk-env eval``: reconstruction through the latent, compared in [0, 1]); results accumulate in
``RUN/learning_curve.json`` (keyed by step, written atomically), so the script can run
again, or in a loop, while the training goes on. Wall time is the checkpoint's modification time
minus the run's start (the first evaluation records ``config.yaml``'s time; ``--started`` overrides).
``--baseline`` evaluates the model the run started from, as step 0.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from btnk_env.models import BtnkMAE
from btnk_env.models.files import atomic_write_text
from btnk_env.training.checkpointing import LATEST, load_checkpoint
from btnk_env.training.datasets import build_dataset
from btnk_env.training.evaluate import evaluate
from btnk_env.models.image_file import save_png


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` to ``path`` atomically (the package's one writer: umask permissions)."""
    atomic_write_text(path, json.dumps(value, indent=1))


def train_losses(run: Path) -> dict[int, float]:
    """``step -> training loss`` from the run's ``metrics.jsonl``."""
    path = run / "metrics.jsonl"
    losses = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                losses[int(row["step"])] = float(row["loss"])
            except (ValueError, KeyError, TypeError):
                continue
    return losses


def checkpoints(run: Path) -> list[Path]:
    """The run's numbered checkpoints, then its latest."""
    numbered = sorted(p for p in run.glob("checkpoint-epoch*.pth") if re.fullmatch(r"checkpoint-epoch\d+\.pth", p.name))
    return numbered + ([run / LATEST] if (run / LATEST).is_file() else [])


def update(run: Path, data: Path, baseline: str | None, curve_path: Path, started: float | None) -> dict:
    """Evaluate the checkpoints not yet in ``curve_path``; return the whole curve."""
    curve = json.loads(curve_path.read_text()) if curve_path.is_file() else {"points": {}}
    if started is not None or "started" not in curve:
        curve["started"] = started if started is not None else (run / "config.yaml").stat().st_mtime
    curve.update(run=str(run), data=str(data), cpu=torch.backends.cpu.get_cpu_capability(), threads=torch.get_num_threads())
    points = curve["points"]
    dataset = None
    todo: list[tuple[int, str, float]] = []  # (step, source, wall seconds)
    if baseline and "0" not in points:
        todo.append((0, baseline, 0.0))
    for path in checkpoints(run):
        mtime = path.stat().st_mtime
        state = load_checkpoint(path)
        step = int(state["step"])
        if str(step) not in points and step not in [s for s, _, _ in todo]:
            todo.append((step, str(path), mtime - curve["started"]))
    losses = train_losses(run)
    for step, source, wall in sorted(todo):
        if dataset is None:
            dataset = build_dataset(str(data), (128, 256), transform="resize", hflip=False)
        model = BtnkMAE.from_pretrained(source)
        if tuple(model.img_size) != tuple(dataset.transform.size):
            dataset = build_dataset(str(data), model.img_size, transform="resize", hflip=False)
        result = evaluate(model, dataset, batch_size=20)
        near = [s for s in losses if abs(s - step) <= 10]
        points[str(step)] = {"psnr": round(result.psnr, 3), "ssim": round(result.ssim, 4), "wall_s": round(wall, 1),
                             "images": result.n_images, "train_loss": losses[min(near, key=lambda s: abs(s - step))] if near else None,
                             "source": source, "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        print(f"step {step:6d}  wall {wall / 60:7.1f} min  PSNR {result.psnr:.2f} dB  SSIM {result.ssim:.4f}  ({source})", flush=True)
        curve["points"] = dict(sorted(points.items(), key=lambda kv: int(kv[0])))
        write_json(curve_path, curve)
    return curve


def plot(curve: dict, out: Path, target: float | None = None) -> Path:
    """Two panels, held-out PSNR and SSIM against optimizer steps, as a PNG (PIL only)."""
    pts = sorted((int(s), p) for s, p in curve["points"].items())
    steps = [s for s, _ in pts]
    panels = [("held-out PSNR (dB)", [p["psnr"] for _, p in pts], target), ("held-out SSIM", [p["ssim"] for _, p in pts], None)]
    W, H, pad_l, pad_r, pad_t, pad_b = 460, 300, 58, 16, 34, 44
    img = Image.new("RGB", (2 * W, H), "white")
    draw = ImageDraw.Draw(img)
    x_max = max(max(steps, default=1), 1)
    for k, (label, ys, line) in enumerate(panels):
        ox = k * W
        lo, hi = min(ys + ([line] if line else [])), max(ys + ([line] if line else []))
        margin = max((hi - lo) * 0.1, 1e-3)
        lo, hi = lo - margin, hi + margin
        X = lambda s: ox + pad_l + (W - pad_l - pad_r) * s / x_max  # noqa: E731
        Y = lambda v: pad_t + (H - pad_t - pad_b) * (hi - v) / (hi - lo)  # noqa: E731
        draw.rectangle([ox + pad_l, pad_t, ox + W - pad_r, H - pad_b], outline="black")
        for i in range(5):
            v = lo + (hi - lo) * i / 4
            draw.line([ox + pad_l - 4, Y(v), ox + pad_l, Y(v)], fill="black")
            draw.text((ox + 4, Y(v) - 6), f"{v:.3f}" if hi - lo < 1 else f"{v:.2f}", fill="black")
            s = x_max * i / 4
            draw.line([X(s), H - pad_b, X(s), H - pad_b + 4], fill="black")
            draw.text((X(s) - 12, H - pad_b + 6), f"{s:.0f}", fill="black")
        draw.text((ox + pad_l, 8), label, fill="black")
        draw.text((ox + W // 2 - 40, H - 18), "optimizer steps", fill="black")
        if line is not None:
            for x0 in range(int(X(0)), int(X(x_max)), 12):
                draw.line([x0, Y(line), x0 + 6, Y(line)], fill=(200, 0, 0))
            draw.text((X(0) + 4, Y(line) - 14), f"target {line:g}", fill=(200, 0, 0))
        xy = [(X(s), Y(v)) for s, v in zip(steps, ys)]
        if len(xy) > 1:
            draw.line(xy, fill=(20, 80, 200), width=2)
        for x, y in xy:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(20, 80, 200))
        if ys:
            draw.text((ox + W - pad_r - 150, pad_t + 6), f"step {steps[-1]}: {ys[-1]:.3f}" if hi - lo < 1 else
                      f"step {steps[-1]}: {ys[-1]:.2f}", fill=(20, 80, 200))
    return save_png(out, np.asarray(img))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder of btnk-env train")
    parser.add_argument("--data", type=Path, required=True, help="held-out panoramas (btnk-env collect)")
    parser.add_argument("--baseline", default=None, help="the model the run started from, evaluated as step 0")
    parser.add_argument("--curve", type=Path, default=None, help="results JSON (default RUN/learning_curve.json)")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the curve to this PNG")
    parser.add_argument("--started", type=float, default=None, help="run start as a Unix time (wall-time origin)")
    parser.add_argument("--watch", type=float, default=0, metavar="SECONDS",
                        help="re-check every SECONDS until the run's final/ exists (0: once)")
    parser.add_argument("--target", type=float, default=None, help="draw a target PSNR line (dB)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the evaluation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    curve_path = args.curve or args.run / "learning_curve.json"
    while True:
        finished = (args.run / "final").is_dir()  # evaluated once more after the run ends, then stop
        curve = update(args.run, args.data, args.baseline, curve_path, args.started)
        if args.plot and curve["points"]:
            plot(curve, args.plot, args.target)
        if not args.watch or finished:
            break
        time.sleep(args.watch)


if __name__ == "__main__":
    main()
