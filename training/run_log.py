"""Run outputs besides checkpoints: metrics files, optional TensorBoard / wandb, snapshot images.

Metrics always go to ``metrics.jsonl`` (one JSON object per row) and ``metrics.csv`` (columns
fixed by the first row, later new keys are ignored in the CSV only). TensorBoard and wandb are
imported lazily, only when asked for; if the package is missing a warning says how to install it
and the run goes on. Only rank 0 creates a :class:`MetricsWriter`.

Example:
    >>> import tempfile, json
    >>> d = tempfile.mkdtemp()
    >>> w = MetricsWriter(d)
    >>> w.write({"step": 1, "loss": 0.5}); w.close()
    >>> json.loads(open(f"{d}/metrics.jsonl").read())
    {'step': 1, 'loss': 0.5}
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from btnk_env.models.files import atomic_write_text
from btnk_env.models.image import tensor_to_frames

logger = logging.getLogger(__name__)


class MetricsWriter:
    """Appends metric rows to ``metrics.jsonl``/``metrics.csv`` (and TensorBoard / wandb if enabled).

    Args:
        out_dir: the run folder.
        tensorboard: also write TensorBoard events to ``out_dir/tb``.
        wandb: also log to Weights & Biases (``wandb_project``, ``run_name``, ``config``).
        resume_step: the step the run resumes from: rows of later steps (written after that
            checkpoint by a run that was then killed) and a torn last line are dropped first, so
            the resumed run writes each step once.
    """

    def __init__(self, out_dir: "str | os.PathLike[str]", tensorboard: bool = False, wandb: bool = False,
                 wandb_project: str = "btnk_mae", run_name: Optional[str] = None, config: Optional[dict] = None,
                 resume_step: Optional[int] = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            truncate_metrics(self.out_dir, resume_step)
        self._jsonl = open(self.out_dir / "metrics.jsonl", "a", buffering=1)
        csv_path = self.out_dir / "metrics.csv"
        self._csv_fields: Optional[List[str]] = None
        if csv_path.is_file() and csv_path.stat().st_size > 0:
            with open(csv_path, newline="") as f:
                self._csv_fields = next(csv.reader(f), None)
        self._csv = open(csv_path, "a", newline="", buffering=1)
        self._tb = self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"))
            except ImportError:
                logger.warning("io.tensorboard=true but tensorboard is not installed (pip install tensorboard); skipped")
        if wandb:
            try:
                import wandb as wandb_lib

                self._wandb = wandb_lib.init(project=wandb_project, name=run_name or self.out_dir.name,
                                             config=config, dir=str(self.out_dir), resume="allow")
            except ImportError:
                logger.warning("io.wandb=true but wandb is not installed (pip install wandb); skipped")

    def write(self, row: Dict[str, Any]) -> None:
        """Append one row (numbers and strings)."""
        self._jsonl.write(json.dumps(row) + "\n")
        if self._csv_fields is None:
            self._csv_fields = list(row)
            csv.writer(self._csv).writerow(self._csv_fields)
        csv.writer(self._csv).writerow([row.get(k, "") for k in self._csv_fields])
        step = int(row.get("step", 0))
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"train/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in scalars.items()}, step=step)

    def image(self, tag: str, path: Path, step: int) -> None:
        """Send a saved snapshot to TensorBoard / wandb."""
        if self._tb is None and self._wandb is None:
            return
        from PIL import Image

        pixels = np.asarray(Image.open(path).convert("RGB"))
        if self._tb is not None:
            self._tb.add_image(tag, pixels, step, dataformats="HWC")
        if self._wandb is not None:
            import wandb as wandb_lib

            self._wandb.log({tag: wandb_lib.Image(pixels)}, step=step)

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def snapshot_grid(images: torch.Tensor, recon: torch.Tensor, gap: int = 2) -> np.ndarray:
    """Rows of ``input | reconstruction``.

    Args:
        images, recon: ``(B, 3, H, W)`` ImageNet-normalized.

    Returns:
        ``(B * (H + gap) - gap, 2 * W + gap, 3)`` uint8.
    """
    a, b = tensor_to_frames(images), tensor_to_frames(recon)  # (B, H, W, 3) each
    n, h, w, _ = a.shape
    grid = np.full((n * (h + gap) - gap, 2 * w + gap, 3), 255, np.uint8)
    for i in range(n):
        y = i * (h + gap)
        grid[y:y + h, :w], grid[y:y + h, w + gap:] = a[i], b[i]
    return grid


def truncate_metrics(out_dir: Path, step: int) -> None:
    """Keep only the rows of ``metrics.jsonl``/``metrics.csv`` up to ``step`` (whole lines only)."""
    path = out_dir / "metrics.jsonl"
    if path.is_file():
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line torn by a kill: it and anything after it are dropped
            if not line.endswith("\n") or int(row.get("step", 0)) > step:
                break
            kept.append(line)
        atomic_write_text(path, "".join(kept))
    path = out_dir / "metrics.csv"
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if rows:
            header, body = rows[0], rows[1:]
            col = header.index("step") if "step" in header else None
            keep = [r for r in body if col is not None and len(r) == len(header) and r[col].isdigit() and int(r[col]) <= step]
            buf = io.StringIO()
            csv.writer(buf).writerows([header] + keep)
            atomic_write_text(path, buf.getvalue())


