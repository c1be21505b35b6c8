"""Fused CPU inference kernels: linear with its bias, + GELU, + residual add, in one oneDNN call.

On the CPU, ``F.linear`` with a bias first copies the bias into the output and only then runs
the matrix multiply, and GELU and the residual add each make another pass over memory. oneDNN's
``linear_pointwise`` fuses the bias, the activation and the residual add into the multiply
(the same kernels ``torch.compile`` picks with ``freezing``). Results equal the plain
computation to float rounding (tested).

The fused path is taken only where it is safe: CPU tensors, no autograd recording (eval under
``torch.no_grad``/``torch.inference_mode``), a plain ``nn.Linear`` of the input's dtype (not a
quantized one), not while ``torch.compile`` traces (inductor fuses on its own), and a PyTorch
build that has the kernel. Everything else uses the plain path.
``set_fused_kernels(False)`` switches the fused path off (for benchmarks and debugging).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

_ENABLED = True
_AVAILABLE: Optional[bool] = None


def set_fused_kernels(enabled: bool) -> bool:
    """Turn the fused CPU inference kernels on (default) or off, process-wide; returns the
    previous setting."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return previous


@contextlib.contextmanager
def fused_kernels(enabled: bool) -> Iterator[None]:
    """``with fused_kernels(False): ...`` runs the block on the plain kernels, then restores."""
    previous = set_fused_kernels(enabled)
    try:
        yield
    finally:
        set_fused_kernels(previous)


def fused_kernels_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused linear kernels (checked once)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            op = torch.ops.mkldnn._linear_pointwise
            with torch.no_grad():
                op(torch.zeros(1, 4), torch.zeros(4, 4), torch.zeros(4), "gelu", [], "none")
                op.binary(torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(4, 4), torch.zeros(4), "add")
            _AVAILABLE = torch.backends.mkldnn.is_available()
        except (AttributeError, RuntimeError):
            _AVAILABLE = False
    return _AVAILABLE


def _fusable(x: torch.Tensor, layer: nn.Module) -> bool:
    return (
        _ENABLED
        and type(layer) is nn.Linear
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()  # inductor fuses these itself
        and x.dtype in (torch.float32, torch.bfloat16)
        and layer.weight.dtype == x.dtype
        and layer.bias is not None
        and fused_kernels_available()
    )


def linear(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``layer(x)`` with the bias added inside the multiply: ``(..., C_in)`` -> ``(..., C_out)``."""
    if _fusable(x, layer):
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
    return layer(x)


def linear_gelu(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``gelu(layer(x))`` (exact erf GELU): ``x: (..., C_in)`` -> ``(..., C_out)``."""
    if _fusable(x, layer):
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")
    return F.gelu(layer(x))


def linear_add(x: torch.Tensor, layer: nn.Module, residual: torch.Tensor) -> torch.Tensor:
    """``layer(x) + residual``: ``x: (..., C_in)``, ``residual: (..., C_out)`` -> ``(..., C_out)``."""
    if _fusable(x, layer) and residual.dtype == x.dtype and residual.shape[:-1] == x.shape[:-1]:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual.contiguous(), layer.weight, layer.bias, "add")
    return layer(x) + residual
