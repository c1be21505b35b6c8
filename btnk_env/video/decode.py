"""Decode latent rollouts into frames: what a world model imagines, as pixels.

A world model in the REMI / Dreamer line rolls out in the bottleneck MAE's latent space, one
``D``-vector per step. :func:`decode_rollout` turns such sequences, ``(T, D)`` or
``(B, T, D)``, into uint8 frames ``(B, T, H, W, 3)``, decoding a bounded number of frames at a
time on the model's device so that long rollouts never hold more than one batch of activations.
:func:`load_latents` reads sequences saved as ``.npy``, ``.npz``, ``.pt`` or ``.safetensors``;
:func:`interpolate_latents` walks the straight line (or the great circle) between two latents.

Writing videos is :mod:`btnk_env.video.io`; comparison layouts are :mod:`btnk_env.video.layout`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np
import torch

from btnk_env.models import BtnkMAE, tensor_to_frames
from btnk_env.models.config import ImageSize, to_hw
from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.precision import for_inference

__all__ = ["decode_rollout", "iter_decoded", "check_latents", "load_latents", "interpolate_latents", "LATENT_SUFFIXES"]

Latents = Union[np.ndarray, torch.Tensor]
LATENT_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors")
"""File types :func:`load_latents` reads."""


def check_latents(latents: Latents, latent_dim: int) -> torch.Tensor:
    """Validate a latent rollout before any work and return it as ``(B, T, D)`` float32 (CPU or
    where it was).

    Args:
        latents: ``(T, D)`` or ``(B, T, D)`` float, numpy or torch.
        latent_dim: the model's ``D``.

    Raises:
        TypeError: not an array, or not floating point.
        ValueError: wrong number of dimensions, wrong width ``D``, an empty sequence, NaN/inf.
    """
    if isinstance(latents, np.ndarray):
        if not np.issubdtype(latents.dtype, np.floating):
            raise TypeError(f"latents must be float, got dtype {latents.dtype}")
        latents = torch.from_numpy(np.ascontiguousarray(latents))
    if not isinstance(latents, torch.Tensor):
        raise TypeError(
            f"latents must be a numpy array or a torch tensor (T, D) or (B, T, D), got {type(latents).__name__}"
        )
    if not latents.is_floating_point():
        raise TypeError(f"latents must be float, got dtype {latents.dtype}")
    if latents.ndim == 2:
        latents = latents.unsqueeze(0)
    if latents.ndim != 3:
        raise ValueError(f"latents must be (T, D) or (B, T, D), got shape {tuple(latents.shape)}")
    b, t, d = latents.shape
    if d != latent_dim:
        raise ValueError(
            f"latents have width D={d} but the model's latent is D={latent_dim} (shape {tuple(latents.shape)}); "
            f"use the checkpoint that produced these latents"
        )
    if b == 0 or t == 0:
        raise ValueError(f"latents hold no frames (shape {tuple(latents.shape)}): a rollout needs B >= 1 and T >= 1")
    if not torch.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values")
    return latents.float()


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


@torch.inference_mode()
def iter_decoded(
    model: BtnkMAE,
    latents: Latents,
    *,
    size: Optional[ImageSize] = None,
    batch_size: int = 32,
    precision: str = "fp32",
    backend: str = "auto",
) -> Iterator[np.ndarray]:
    """Decode a rollout in chunks, in time order (sequence 0 first, then 1, ...).

    Args:
        model: the bottleneck MAE that produced the latents, in eval mode (as ``from_pretrained``
            returns it; the model is not changed); it decodes where it is.
        latents: ``(T, D)`` or ``(B, T, D)`` float, numpy or torch, any device.
        size: ``(H, W)`` (or an int) of the frames; default the model's trained size ``model.img_size``.
        batch_size: frames decoded per forward pass; bounds the memory used.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA), ``"int8"`` (CPU) or ``"auto"`` (bf16 on
            devices with bf16 matrix units, else fp32), see :func:`btnk_env.models.precision.for_inference`;
            outputs are cast to float32 before rounding.
        backend: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"openvino"`` (:mod:`btnk_env.models.backends`).

    Yields:
        ``(n, H, W, 3)`` uint8 chunks, ``n <= batch_size``, ``B * T`` frames in all.
    """
    flat = check_latents(latents, model.latent_dim).flatten(0, 1)  # (B * T, D)
    batch_size = _check_batch_size(batch_size)
    _check_eval(model)
    runner = for_inference(model, precision, backend)
    for start in range(0, flat.shape[0], batch_size):
        z = flat[start : start + batch_size].to(model.device)  # (n, D)
        images = runner.decode(z, size=size).float()  # (n, 3, H, W) normalized
        yield tensor_to_frames(images)  # (n, H, W, 3) uint8


def _check_eval(model: BtnkMAE) -> None:
    if model.training:
        raise ValueError(
            "the model is in training mode: its decoder's dropout would change the frames; call model.eval() "
            "first (BtnkMAE.from_pretrained returns it in eval mode)"
        )


def decode_rollout(
    model: BtnkMAE,
    latents: Latents,
    *,
    size: Optional[ImageSize] = None,
    batch_size: int = 32,
    precision: str = "fp32",
    progress: Optional[Callable[[int], object]] = None,
    backend: str = "auto",
) -> np.ndarray:
    """Decode latent rollouts into frames of the size asked for.

    Args:
        model: the bottleneck MAE that produced the latents, in eval mode (not changed).
        latents: ``(T, D)`` or ``(B, T, D)`` float, numpy or torch (see :func:`load_latents`
            for files).
        size: ``(H, W)`` (or an int) of the frames, multiples of the patch; default the size the
            model was trained at, ``model.img_size`` (a wrapper's ``input_size`` gives frames at
            the size it encoded).
        batch_size: frames decoded per forward pass, on ``model.device``.
        precision: inference precision (``"fp32"``, ``"bf16"``, ``"fp16"`` on CUDA, ``"int8"``
            on CPU, ``"auto"``: bf16 on devices with bf16 matrix units, else fp32).
        progress: called with the number of frames each batch decoded (e.g. ``tqdm.update``).
        backend: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"openvino"`` (:mod:`btnk_env.models.backends`).

    Returns:
        ``(B, T, H, W, 3)`` uint8 in ``[0, 255]`` with ``(H, W) = size``; ``B = 1``
        for ``(T, D)`` input. Decoding frame by frame, or all at once, gives the same frames on one
        backend; ``"auto"`` may decode small and large batches on different backends (equal within
        1e-5 before rounding to uint8, so a pixel may differ by one level).

    Raises:
        ValueError: wrong latent width for the model, an empty sequence, NaN, bad batch size.

    Example:
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=(32, 64)).eval()
        >>> frames = decode_rollout(model, torch.randn(5, model.latent_dim), batch_size=2)
        >>> frames.shape, frames.dtype
        ((1, 5, 32, 64, 3), dtype('uint8'))
        >>> decode_rollout(model, torch.randn(2, 3, model.latent_dim), size=(64, 128)).shape
        (2, 3, 64, 128, 3)
    """
    checked = check_latents(latents, model.latent_dim)  # (B, T, D)
    b, t, _ = checked.shape
    h, w = model.img_size if size is None else to_hw(size)
    out = np.empty((b * t, h, w, 3), np.uint8)
    done = 0
    for chunk in iter_decoded(model, checked, size=size, batch_size=batch_size, precision=precision, backend=backend):
        out[done : done + len(chunk)] = chunk
        done += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return out.reshape(b, t, h, w, 3)


def _pick(entries: dict, path: Path, key: Optional[str]) -> object:
    if key is not None:
        if key not in entries:
            raise KeyError(f"{path} has no entry {key!r}; it holds {sorted(entries)}")
        return entries[key]
    if "latents" in entries:
        return entries["latents"]
    if len(entries) == 1:
        return next(iter(entries.values()))
    raise ValueError(f"{path} holds several arrays {sorted(entries)}; name the one to decode with key=... (--key)")


class LatentsFileError(BtnkEnvError):
    """A latents file cannot be read safely (corrupt, truncated, or it holds pickled objects)."""


def _read_arrays(path: Path, suffix: str) -> object:
    """The array (or dict of arrays) in ``path``, read without unpickling anything.

    ``.npy``/``.npz`` with object arrays, and ``.pt`` pickles of anything but tensors and plain
    containers, are refused; a corrupt or truncated file raises :class:`LatentsFileError`.
    """
    import pickle

    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise LatentsFileError(
            f"refusing to read {path}: it holds pickled objects other than tensors, which could run code "
            f"({str(err).splitlines()[0][:160]}); save the latents as a tensor, .npy or .safetensors"
        ) from None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise LatentsFileError(
                f"refusing to read {path}: it holds a numpy object array (a pickle, which could run code); "
                f"save the latents as a float array"
            ) from None
        raise LatentsFileError(f"cannot read {path}: {str(err)[:200]}. The file is corrupt or not {suffix}") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file fails anywhere in a reader: all mean "corrupt"
        raise LatentsFileError(
            f"cannot read {path} ({type(err).__name__}: {str(err)[:160]}): the file is truncated, corrupt or not "
            f"{suffix}; write it again"
        ) from None


def load_latents(path: Union[str, "os.PathLike[str]"], key: Optional[str] = None) -> torch.Tensor:
    """Read a latent rollout from a file, safely (no pickled code runs).

    Args:
        path: ``.npy``; ``.npz``, ``.pt``/``.pth`` (a tensor, or a dict of tensors) or
            ``.safetensors`` holding one array, an entry named ``"latents"``, or the one named
            by ``key``.
        key: which entry of a multi-array file.

    Returns:
        the latents as a float32 CPU tensor, ``(T, D)`` or ``(B, T, D)`` as stored (validate
        the width with :func:`check_latents`).

    Raises:
        FileNotFoundError, ValueError (unknown suffix, several arrays and no key, not float),
        KeyError (``key`` missing), LatentsFileError (corrupt file, or pickled objects: never unpickled).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise ValueError(f"cannot read latents from {path}: the suffix must be one of {LATENT_SUFFIXES}")
    if not path.is_file():
        raise FileNotFoundError(f"latents file {path} does not exist")
    entries = _read_arrays(path, suffix)
    value = _pick(entries, path, key) if isinstance(entries, dict) else entries
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"latents in {path} must be float, got dtype {value.dtype}")
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise ValueError(
            f"latents in {path} must be a float array, got {getattr(value, 'dtype', type(value).__name__)}"
        )
    return value.detach().cpu().float()


def interpolate_latents(z0: Latents, z1: Latents, steps: int, method: str = "linear") -> torch.Tensor:
    """Latents on the way from ``z0`` to ``z1``, both ends included.

    Args:
        z0, z1: ``(D,)`` float latents (numpy or torch).
        steps: number of latents returned, ``>= 2``.
        method: ``"linear"`` (straight line) or ``"slerp"`` (great circle, the norm is
            interpolated linearly; a good path when latents spread over a sphere).

    Returns:
        ``(steps, D)`` float32; row 0 is ``z0`` and row ``steps - 1`` is ``z1``.

    Example:
        >>> interpolate_latents(torch.zeros(2), torch.ones(2), 3)
        tensor([[0.0000, 0.0000],
                [0.5000, 0.5000],
                [1.0000, 1.0000]])
    """
    a = torch.as_tensor(z0).float().flatten()
    b = torch.as_tensor(z1).float().flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(
            f"z0 and z1 must be two (D,) latents of the same width, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (both ends are included), got {steps!r}")
    alpha = torch.linspace(0.0, 1.0, steps).unsqueeze(1)  # (S, 1)
    if method == "linear":
        return (1 - alpha) * a + alpha * b
    if method != "slerp":
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return (1 - alpha) * a + alpha * b
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua @ ub).clamp(-1.0, 1.0))
    if omega < 1e-4 or math.pi - omega < 1e-4:  # (anti)parallel: the great circle is undefined
        direction = (1 - alpha) * ua + alpha * ub
    else:
        direction = (torch.sin((1 - alpha) * omega) * ua + torch.sin(alpha * omega) * ub) / torch.sin(omega)
    return direction * ((1 - alpha) * na + alpha * nb)
