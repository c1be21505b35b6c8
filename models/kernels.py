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

Which path runs is decided once per process, at the first linear call, from the CPU tier
(:func:`btnk_env.models.hardware.cpu_tier`): the fused kernels where PyTorch's and oneDNN's kernels run
AVX-512 (measured faster there: base encode 1.2x the plain path on an AMD EPYC Zen 4), the plain
path on AVX2-only CPUs (measured on an AVX2 AMD EPYC: the fused kernels were 0.84-0.96x of the
original's speed, the plain path 1.05-1.08x). ``BTNK_FUSED_KERNELS=1`` (or ``0``) in the
environment forces the choice for a process, :func:`set_fused_kernels` and :func:`fused_kernels`
from code; :func:`kernel_choice` says what was chosen and why.

The plain path keeps its own two savings: under no autograd, ``linear + residual`` adds the
bias and the residual first and multiplies into that sum (``addmm_``: one pass over memory
instead of three), and GELU runs in place on the fresh linear output.

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
import os
import weakref
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Environment variable forcing the kernel path for a process: ``1``/``fused`` or ``0``/``plain``
#: (unset or ``auto``: chosen by the CPU tier).
ENV_VAR = "BTNK_FUSED_KERNELS"
_ENABLED: Optional[bool] = None  # decided at the first call, see kernel_choice()
_REASON = ""
_PACKING = True
_AVAILABLE: Optional[bool] = None
_BF16: Optional[bool] = None
#: A packed copy must serve at least this many calls before its weight changes, or the layer
#: stops being packed (see :func:`_weight`).
MIN_USES_PER_PACK = 8
_PACKED: "weakref.WeakKeyDictionary[nn.Linear, _Packed]" = weakref.WeakKeyDictionary()


def kernel_choice() -> Tuple[bool, str]:
    """``(fused, why)``: whether CPU inference runs on the fused kernels, and why (decided once)."""
    global _ENABLED, _REASON
    if _ENABLED is None:
        _ENABLED, _REASON = _choose()
    return _ENABLED, _REASON


def _choose() -> Tuple[bool, str]:
    from btnk_env.models.hardware import cpu_tier

    forced = os.environ.get(ENV_VAR, "auto").strip().lower()
    if forced not in ("", "auto", "1", "0", "fused", "plain", "true", "false", "on", "off"):
        raise ValueError(f"{ENV_VAR}={forced!r}: use 1 (fused kernels), 0 (plain path) or auto (by CPU tier)")
    if not fused_kernels_available():
        return False, "this PyTorch build has no oneDNN fused linear kernels"
    if forced in ("1", "fused", "true", "on"):
        return True, f"forced by {ENV_VAR}"
    if forced in ("0", "plain", "false", "off"):
        return False, f"forced by {ENV_VAR}"
    tier = cpu_tier()
    if tier.avx512:
        return True, f"{tier.name}: oneDNN's fused kernels measured faster on AVX-512"
    return False, f"{tier.name}: the plain path measured faster than oneDNN's fused kernels without AVX-512"


def set_fused_kernels(enabled: bool) -> bool:
    """Force the fused CPU inference kernels on or off, process-wide (overriding the choice by
    CPU tier); returns the previous setting."""
    global _ENABLED, _REASON
    previous = kernel_choice()[0]
    _ENABLED, _REASON = bool(enabled) and fused_kernels_available(), "set by set_fused_kernels"
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
    """A layer's packed weight, the weight state it was packed from, and how often it was used.

    The entry holds the storage it was packed from, so that memory cannot be freed and reused at
    the same address by a replacement weight (``layer.weight.data = ...``, ``.to()``) that would
    then look unchanged.
    """

    __slots__ = ("key", "weight", "uses", "source")

    def __init__(self, key: tuple, weight: Optional[torch.Tensor], source: Optional[torch.UntypedStorage] = None) -> None:
        self.key, self.weight, self.uses, self.source = key, weight, 0, source


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
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
        entry = _PACKED[layer] = _Packed(key, packed, weight.untyped_storage())
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
    """Whether this call may take oneDNN's fused kernel (the path chosen once, the input allows)."""
    return (
        _inference_call(x, layer)  # first: the one-time kernel probe must not run inside a trace
        and (_ENABLED if _ENABLED is not None else kernel_choice()[0])
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _bf16_supported()))
        and layer.weight.dtype == x.dtype
        and layer.bias is not None
    )


def _inference_call(x: torch.Tensor, layer: nn.Module) -> bool:
    """A CPU inference call of a plain, unhooked ``nn.Linear`` outside autograd and compilation:
    the layer's output is ours alone, so it may be computed differently or changed in place."""
    return (
        type(layer) is nn.Linear
        and not (layer._forward_hooks or layer._forward_pre_hooks)  # hooks see the plain call
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()  # inductor fuses these itself
        and not torch.jit.is_tracing()  # an ONNX export records the plain operators
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
    h = layer(x)
    return torch.ops.aten.gelu_(h) if _inference_call(x, layer) else F.gelu(h)


def linear_add(x: torch.Tensor, layer: nn.Module, residual: torch.Tensor) -> torch.Tensor:
    """``layer(x) + residual``: ``x: (..., C_in)``, ``residual: (..., C_out)`` -> ``(..., C_out)``."""
    if _fusable(x, layer) and residual.dtype == x.dtype and residual.shape[:-1] == x.shape[:-1]:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual.contiguous(), _weight(layer), layer.bias, "add")
    if not (_inference_call(x, layer) and layer.bias is not None and residual.shape[:-1] == x.shape[:-1]
            and residual.dtype == x.dtype == layer.weight.dtype):
        return layer(x) + residual
    out = (residual + layer.bias).contiguous()  # (..., C_out), fresh: x @ W^T is added into it
    out.view(-1, out.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), layer.weight.t())
    return out
