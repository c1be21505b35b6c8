"""Reduced-precision inference: bf16 (CPU with bf16 support, CUDA), fp16 (CUDA), int8 dynamic
quantization of the linear layers (CPU).

``for_inference(model, precision)`` returns a model to run in that precision: the same object
for ``"fp32"``, otherwise a converted copy (the caller's model is never modified). Its
``encode``/``decode`` take float32 input as usual; outputs come back in the model's dtype,
so callers that need float32 cast with ``.float()``.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def check_precision(precision: str, device: "torch.device | str") -> str:
    """Validate a precision name for a device; returns it. Raises ``ValueError`` with the fix."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA device (CPUs have no fast fp16 matmul); use bf16 on CPU")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("int8 dynamic quantization runs on the CPU only; use bf16 or fp16 on CUDA")
    return precision


def for_inference(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """A model for eval-mode inference in ``precision`` (see the module docstring)."""
    device = next(model.parameters()).device
    check_precision(precision, device)
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
