"""Reduced-precision inference: bf16 (CPU with bf16 support, CUDA), fp16 (CUDA), int8 dynamic
quantization of the linear layers (CPU), and ``"auto"``.

``for_inference(model, precision)`` returns a model to run in that precision: the same object
for ``"fp32"``, otherwise a converted copy (the caller's model is never modified). Its
``encode``/``decode`` take float32 input as usual; outputs come back in the model's dtype,
so callers that need float32 cast with ``.float()``.

``"auto"`` is the fastest precision that keeps results within rounding of fp32 on the device
(:func:`auto_precision`): bf16 on a CPU with bf16 matrix units (AVX-512 BF16 or AMX, see
:func:`btnk_env.models.hardware.cpu_tier`) and on CUDA GPUs with native bf16 (compute capability 8.0+),
fp32 elsewhere. int8 is never chosen for you: it changes results beyond rounding.

bf16 asked for on a CPU without bf16 matrix units (an AVX2-only CPU) runs fp32, with a logged
warning, once per process: there PyTorch multiplies bf16 by converting to fp32 and back, measured
several times slower than fp32 and less exact, so bf16 would buy nothing (see docs/speed.md).
:func:`check_precision` says so by returning ``"fp32"``; a config asking for bf16 keeps working
on every machine and runs bf16 where it is fast.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn

from btnk_env.models.hardware import cpu_tier, cuda_bf16
from btnk_env.models.threads import apply_inference_threads

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: What a caller may ask for: a precision of :data:`PRECISIONS` or ``"auto"``.
CHOICES = ("auto",) + PRECISIONS


def auto_precision(device: "torch.device | str") -> str:
    """What ``precision="auto"`` means on ``device``: ``"bf16"`` where it multiplies bf16
    natively (a CPU with AVX-512 BF16 or AMX that oneDNN may use; a CUDA GPU of compute
    capability 8.0 or newer), ``"fp32"`` elsewhere. The one place this is decided."""
    device = torch.device(device)
    if device.type == "cpu":
        return "bf16" if cpu_tier().bf16_units else "fp32"
    if device.type == "cuda":
        return "bf16" if cuda_bf16(device) else "fp32"
    return "fp32"


_BF16_NOTED = False


def _note_bf16_runs_fp32() -> None:
    global _BF16_NOTED
    if not _BF16_NOTED:
        _BF16_NOTED = True
        logger.warning(
            "bf16 asked for on a CPU without bf16 matrix units (%s: no AVX-512 BF16 or AMX): running fp32, which "
            "is faster here and exact (bf16 matrix multiplies would convert to fp32 and back)", cpu_tier().name,
        )


def check_precision(precision: str, device: "torch.device | str") -> str:
    """Validate a precision name (or ``"auto"``) for a device; returns the precision to run
    (``"auto"`` resolved by :func:`auto_precision`; ``"bf16"`` on a CPU without bf16 units: ``"fp32"``,
    see the module docstring). Raises ``ValueError`` with the fix."""
    device = torch.device(device)
    if precision not in CHOICES:
        raise ValueError(f"precision must be one of {CHOICES}, got {precision!r}")
    if precision == "auto":
        return auto_precision(device)
    if precision == "bf16" and device.type == "cpu" and not cpu_tier().bf16_units:
        _note_bf16_runs_fp32()
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA device (CPUs have no fast fp16 matmul); use bf16 on CPU")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("int8 dynamic quantization runs on the CPU only; use bf16 or fp16 on CUDA")
    return precision


def for_inference(model: nn.Module, precision: str = "fp32", backend: str = "auto") -> nn.Module:
    """A model for eval-mode inference in ``precision`` (see the module docstring), run by
    ``backend`` (``"auto"``, ``"torch"``, ``"onnxruntime"``, ``"openvino"``; see
    :mod:`btnk_env.models.backends`: an engine backend returns an :class:`btnk_env.models.backends.EngineModel`,
    a snapshot of the weights with the same ``encode``/``decode``/``decode_patches``)."""
    from btnk_env.models.backends import check_backend, engine_for

    device = next(model.parameters()).device
    precision = check_precision(precision, device)
    route = check_backend(backend, precision, device)
    if device.type == "cpu":
        apply_inference_threads()  # once per process, from the cores others leave free
    if route.engines:
        return engine_for(model, route, precision)
    if precision == "fp32":
        return model
    with torch.inference_mode(False):  # ordinary tensors even when called under inference_mode
        return _converted(model, precision)


def _converted(model: nn.Module, precision: str) -> nn.Module:
    converted = copy.deepcopy(model).eval()
    if precision == "bf16":
        return converted.to(torch.bfloat16)
    if precision == "fp16":
        return converted.to(torch.float16)
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch announces a move of quantization to torchao
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(converted, {nn.Linear}, dtype=torch.qint8)
