"""Training checkpoints: one atomic file each, loadable by ``BtnkMAE.from_pretrained``.

A checkpoint is a dict of tensors and plain containers only (so ``torch.load(weights_only=True)``
reads it): ``model`` (state dict), ``model_config`` (``BtnkMAEConfig.to_dict()``), ``optimizer``,
``scaler``, ``epoch``, ``step`` (optimizer steps done), ``rng`` (one entry per rank: torch, CUDA,
numpy, python), ``config`` (the train config as a plain dict) and ``format``. It is written with
:func:`btnk_env.models.files.atomic_writer` (a temporary file in the same folder, fsynced, then
``os.replace``d over the target, with the umask's permissions), so a crash mid-write never leaves
a corrupt ``checkpoint-latest.pth``; a full disk raises ``OSError(ENOSPC)``, not torch's
``inline_container.cc`` message.

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

import errno
import io
import os
import random
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from btnk_env.models.checkpoint import CheckpointError, load_file
from btnk_env.models.files import atomic_writer

FORMAT = "btnk_env.training/1"
LATEST = "checkpoint-latest.pth"
CRASH = "checkpoint-crash.pth"

PathLike = Union[str, "os.PathLike[str]"]


def epoch_name(epoch: int) -> str:
    """File name of the numbered checkpoint written after ``epoch`` (1-based count of epochs done)."""
    return f"checkpoint-epoch{epoch:04d}.pth"


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`btnk_env.models.files.atomic_writer`).

    Raises:
        OSError: the disk is full (``ENOSPC``) or not writable; the old ``path`` is untouched and
            no temporary file is left.
    """
    path = Path(path)
    try:
        with atomic_writer(path) as f:
            torch.save({"format": FORMAT, **state}, _PythonWrites(f))
    except RuntimeError as err:  # torch's writer, when a write fails below it ("inline_container.cc")
        if "inline_container" not in str(err) and "write" not in str(err):
            raise
        free = shutil.disk_usage(path.parent).free
        raise OSError(errno.ENOSPC if free < (64 << 20) else errno.EIO,
                      f"cannot write the checkpoint {path}: "
                      + ("no space left on the device" if free < (64 << 20) else f"the write failed ({err})")
                      + "; free some space or set io.out_dir on another disk", str(path)) from None
    return path


class _PythonWrites(io.RawIOBase):
    """Hands torch.save a writer without ``fileno``, so each write goes through Python and a full
    disk raises ``OSError(ENOSPC)`` from ``write`` itself (a real file makes torch report
    ``unexpected pos ... inline_container.cc`` instead)."""

    def __init__(self, f) -> None:
        self._f = f

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


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


def resume_path(out_dir: PathLike, resume: Optional[str]) -> Optional[Path]:
    """The checkpoint ``train.resume`` names: ``None``/empty -> none, ``"auto"`` -> :func:`find_latest`
    (``None`` if the run has none yet), anything else -> that path."""
    if not resume:
        return None
    return find_latest(out_dir) if resume == "auto" else Path(resume)


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
