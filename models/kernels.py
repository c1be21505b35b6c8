"""Fused CPU inference kernels: linear with its bias, + GELU, + residual add, in one oneDNN call,
on weights pre-packed into oneDNN's blocked layout.

On the CPU, ``F.linear`` with a bias first copies the bias into the output and only then runs
the matrix multiply, and GELU and the residual add each make another pass over memory. oneDNN's
``linear_pointwise`` fuses the bias, the activation and the residual add into the multiply
(the same kernels ``torch.compile`` picks with ``freezing``). Results equal the plain
computation to float rounding (tested).

The fused path is taken only where it is safe: CPU tensors, no autograd recording (eval under
``torch.no_grad``/``torch.inference_mode``), a plain ``nn.Linear`` of the input's dtype (not a
quantized one) with no forward hooks (a hooked layer is called as a module, so feature-extraction
hooks keep working), not while ``torch.compile`` traces (inductor fuses on its own), and a PyTorch
build that has the kernel. Everything else uses the plain path.
``set_fused_kernels(False)`` switches the fused path off (for benchmarks and debugging).

Weight pre-packing: oneDNN multiplies fastest with the weight reordered once into its blocked
layout (measured here: ~7% faster per ViT-B linear, 3.6% per encode, bitwise-equal outputs).
The packed copy is kept outside the model, in a cache keyed weakly by the layer and checked
against the weight's storage, dtype and version counter, so an optimizer step,
``load_state_dict``, ``.to()`` or any in-place edit repacks it at the next call and the model
itself carries no extra state. Weights created under ``torch.inference_mode`` have no version
counter and are used unpacked. Packing costs one more copy of each linear weight in memory
(ViT-B encoder: +340 MB) and a repack after each weight change (about half an encode); a layer
whose weight keeps changing between a few calls (acting and updating at every step) is left
unpacked. ``set_weight_packing(False)`` turns packing off and frees the copies.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

_ENABLED = True
_PACKING = True
_AVAILABLE: Optional[bool] = None
_BF16: Optional[bool] = None
#: A packed copy must serve at least this many calls before its weight changes, or the layer
#: stops being packed (see :func:`_weight`).
MIN_USES_PER_PACK = 8
_PACKED: "weakref.WeakKeyDictionary[nn.Linear, _Packed]" = weakref.WeakKeyDictionary()


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


def set_weight_packing(enabled: bool) -> bool:
    """Turn weight pre-packing for the fused kernels on (default) or off, process-wide; returns
    the previous setting. Either way the packed copies are freed (and layers that had stopped
    being packed, see :func:`_weight`, are given a fresh start)."""
    global _PACKING
    previous, _PACKING = _PACKING, bool(enabled)
    _PACKED.clear()
    return previous


class _Packed:
    """A layer's packed weight, the weight state it was packed from, and how often it was used."""

    __slots__ = ("key", "weight", "uses")

    def __init__(self, key: tuple, weight: Optional[torch.Tensor]) -> None:
        self.key, self.weight, self.uses = key, weight, 0


def _weight(layer: nn.Linear) -> torch.Tensor:
    """``layer.weight`` ``(C_out, C_in)``, or its oneDNN-packed copy (same values, blocked layout).

    A layer whose weight changed before its packed copy was used :data:`MIN_USES_PER_PACK` times
    (an agent that acts and updates its encoder at every step) stays unpacked from then on:
    repacking a ViT-B costs about half an encode.
    """
    weight = layer.weight
    if not _PACKING or weight.is_inference():  # no version counter to tell an edit by
        return weight
    key = (weight.data_ptr(), weight.dtype, weight._version)
    entry = _PACKED.get(layer)
    if entry is not None and entry.weight is None:  # too often changed: plain weight
        return weight
    if entry is None or entry.key != key:
        if entry is not None and entry.uses < MIN_USES_PER_PACK:
            _PACKED[layer] = _Packed(key, None)
            return weight
        entry = _PACKED[layer] = _Packed(key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
    entry.uses += 1
    return entry.weight


def fused_kernels_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused linear kernels (checked once)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            op = torch.ops.mkldnn._linear_pointwise
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(torch.zeros(4, 4))
                op(torch.zeros(1, 4), packed, torch.zeros(4), "gelu", [], "none")
                op.binary(torch.zeros(1, 4), torch.zeros(1, 4), packed, torch.zeros(4), "add")
            _AVAILABLE = torch.backends.mkldnn.is_available()
        except (AttributeError, RuntimeError):
            _AVAILABLE = False
    return _AVAILABLE


def _bf16_supported() -> bool:
    """Whether oneDNN runs bf16 on this CPU (AVX-512 BF16 / AMX); otherwise bf16 takes the plain path."""
    global _BF16
    if _BF16 is None:
        try:
            _BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            _BF16 = False
    return _BF16


def _fusable(x: torch.Tensor, layer: nn.Module) -> bool:
    return (
        _ENABLED
        and type(layer) is nn.Linear
        and not (layer._forward_hooks or layer._forward_pre_hooks)  # hooks see the plain call
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()  # inductor fuses these itself
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _bf16_supported()))
        and layer.weight.dtype == x.dtype
        and layer.bias is not None
        and fused_kernels_available()
    )


def linear(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``layer(x)`` with the bias added inside the multiply: ``(..., C_in)`` -> ``(..., C_out)``."""
    if _fusable(x, layer):
        return torch.ops.mkldnn._linear_pointwise(x, _weight(layer), layer.bias, "none", [], "")
    return layer(x)


def linear_gelu(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``gelu(layer(x))`` (exact erf GELU): ``x: (..., C_in)`` -> ``(..., C_out)``."""
    if _fusable(x, layer):
        return torch.ops.mkldnn._linear_pointwise(x, _weight(layer), layer.bias, "gelu", [], "none")
    return F.gelu(layer(x))


def linear_add(x: torch.Tensor, layer: nn.Module, residual: torch.Tensor) -> torch.Tensor:
    """``layer(x) + residual``: ``x: (..., C_in)``, ``residual: (..., C_out)`` -> ``(..., C_out)``."""
    if _fusable(x, layer) and residual.dtype == x.dtype and residual.shape[:-1] == x.shape[:-1]:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual.contiguous(), _weight(layer), layer.bias, "add")
    return layer(x) + residual
