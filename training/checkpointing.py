"""Training checkpoints: one atomic file each, loadable by ``BtnkMAE.from_pretrained``.

A checkpoint is a dict of tensors and plain containers only (so ``torch.load(weights_only=True)``
reads it): ``model`` (state dict), ``model_config`` (``BtnkMAEConfig.to_dict()``), ``optimizer``,
``scaler``, ``epoch``, ``step`` (optimizer steps done), ``rng`` (one entry per rank: torch, CUDA,
numpy, python), ``config`` (the train config as a plain dict) and ``format``. It is written to a
temporary file in the same folder, flushed and fsynced, then ``os.replace``d over the target,
so a crash mid-write never leaves a corrupt ``checkpoint-latest.pth``.

Example:
    >>> import tempfile, torch
    >>> from models import BtnkMAE
    >>> model = BtnkMAE("test")
    >>> path = save_checkpoint(tempfile.mkdtemp() + "/ckpt.pth", {"model": model.state_dict(),
    ...                        "model_config": model.config.to_dict(), "step": 3})
    >>> BtnkMAE.from_pretrained(path).latent_dim, load_checkpoint(path)["step"]
    (64, 3)
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from models.checkpoint import CheckpointError, load_file

FORMAT = "btnk_env.training/1"
LATEST = "checkpoint-latest.pth"
CRASH = "checkpoint-crash.pth"

PathLike = Union[str, "os.PathLike[str]"]


def epoch_name(epoch: int) -> str:
    """File name of the numbered checkpoint written after ``epoch`` (1-based count of epochs done)."""
    return f"checkpoint-epoch{epoch:04d}.pth"


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - e.g. file systems without directory fsync
        pass
    return path


def load_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read a checkpoint of this trainer safely (no code runs).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: corrupt, unsafe, or not a training checkpoint of this project.
    """
    obj = load_file(path)
    missing = [k for k in ("model", "model_config", "step") if k not in obj]
    if missing:
        raise CheckpointError(
            f"{path} is not a training checkpoint of this project (missing {missing}); to start "
            f"from its weights use model.init=pretrained:{path} instead of train.resume"
        )
    return obj


def find_latest(out_dir: PathLike) -> Optional[Path]:
    """``out_dir/checkpoint-latest.pth`` if it exists."""
    path = Path(out_dir) / LATEST
    return path if path.is_file() else None


def get_rng_state() -> Dict[str, Any]:
    """This process's RNG states as tensors and plain values."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
