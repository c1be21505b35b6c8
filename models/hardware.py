"""What this machine's CPU runs fast, found out once per process: the instruction-set tier of
PyTorch's and oneDNN's kernels, and whether the CPU multiplies bf16 natively.

The tier is the one the kernels *run at*, not only what the chip has: ``ATEN_CPU_CAPABILITY=avx2``
lowers PyTorch's own kernels (``torch.backends.cpu.get_cpu_capability()`` then says ``AVX2``) and
``ONEDNN_MAX_CPU_ISA=AVX2`` lowers oneDNN's (its matrix multiplies then run AVX2 code and it
refuses bf16 weights: ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` turns ``False``). With both
set, a machine with AVX-512 behaves like an AVX2-only one, and :func:`cpu_tier` says so: the
test suite and the benchmarks can be run at the lower tier (see ``docs/cpu_tiers.md``).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

#: oneDNN's ``ONEDNN_MAX_CPU_ISA`` values, lowest first (``ALL``/``DEFAULT`` set no limit).
ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
)


@dataclass(frozen=True)
class CpuTier:
    """The CPU tier this process computes at (see the module docstring)."""

    capability: str
    """PyTorch's kernel tier, ``torch.backends.cpu.get_cpu_capability()``: ``"AVX512"``, ``"AVX2"``,
    ``"DEFAULT"`` (or a non-x86 name)."""
    onednn_limit: Optional[str]
    """``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``) when set, upper-cased."""
    avx512: bool
    """Both PyTorch's and oneDNN's kernels run AVX-512 code."""
    bf16_units: bool
    """The CPU has native bf16 dot products (AVX-512 BF16 or AMX) and oneDNN may use them: bf16
    matrix multiplies run about twice as fast as fp32. Without them oneDNN either refuses bf16
    or converts it to fp32 on the fly, and bf16 inference is slower than fp32."""
    amx: bool
    """The CPU has AMX tile units (oneDNN's fastest bf16 and int8 kernels)."""

    @property
    def name(self) -> str:
        """Short name: ``"AVX512+AMX"``, ``"AVX512+bf16"``, ``"AVX512"``, ``"AVX2"``, ..."""
        if self.bf16_units:
            return "AVX512+AMX" if self.amx else "AVX512+bf16"
        return self.capability

    @property
    def lowered(self) -> bool:
        """Whether ``ATEN_CPU_CAPABILITY`` or ``ONEDNN_MAX_CPU_ISA`` keeps the kernels below the chip's tier."""
        return self.capability != _hardware_capability() or not onednn_allows(_hardware_onednn_isa())

    def describe(self) -> str:
        """One line for logs, ``btnk-env info`` and benchmark headers."""
        text = f"CPU tier {self.name} (PyTorch kernels {self.capability}"
        if self.onednn_limit:
            text += f", oneDNN limited to {self.onednn_limit}"
        text += ", bf16 matrix units" if self.bf16_units else ", no bf16 matrix units"
        return text + (", lowered by environment variables)" if self.lowered else ")")


def onednn_allows(isa: str) -> bool:
    """Whether ``ONEDNN_MAX_CPU_ISA`` (if set) lets oneDNN use ``isa`` (a name of :data:`ONEDNN_ISAS`)."""
    limit = _onednn_limit()
    if limit is None or limit not in ONEDNN_ISAS:  # unset, ALL, DEFAULT; oneDNN ignores unknown values
        return True
    return ONEDNN_ISAS.index(limit) >= ONEDNN_ISAS.index(isa)


def _onednn_limit() -> Optional[str]:
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value else None


def _call(name: str, owner: object) -> bool:
    """``owner.name()`` for a private PyTorch probe, ``False`` where this build lacks it."""
    try:
        return bool(getattr(owner, name)())
    except (AttributeError, RuntimeError):
        return False


def _has_bf16_units() -> bool:
    """The chip has AVX-512 BF16 or AMX (whatever the environment variables say)."""
    return _call("_is_avx512_bf16_supported", torch.cpu) or _call("_is_amx_tile_supported", torch.cpu)


def _hardware_onednn_isa() -> str:
    """The highest of :data:`ONEDNN_ISAS` this project tells apart that the chip has."""
    if _call("_is_amx_tile_supported", torch.cpu):
        return "AVX512_CORE_AMX"
    if _call("_is_avx512_bf16_supported", torch.cpu):
        return "AVX512_CORE_BF16"
    return {"AVX512": "AVX512_CORE", "AVX2": "AVX2"}.get(_hardware_capability(), "SSE41")


def _hardware_capability() -> str:
    """The kernel tier the chip allows: PyTorch's, unless ``ATEN_CPU_CAPABILITY`` lowered it."""
    if _call("_is_avx512_supported", torch.cpu):
        return "AVX512"
    if _call("_is_avx2_supported", torch.cpu):
        return "AVX2"
    return torch.backends.cpu.get_cpu_capability()


@functools.lru_cache(maxsize=None)
def cpu_tier() -> CpuTier:
    """This process's :class:`CpuTier` (found out at the first call, then cached)."""
    capability = torch.backends.cpu.get_cpu_capability()
    avx512 = capability == "AVX512" and onednn_allows("AVX512_CORE")
    bf16_units = (
        avx512
        and _has_bf16_units()
        and onednn_allows("AVX512_CORE_BF16")
        and _call("_is_mkldnn_bf16_supported", torch.ops.mkldnn)
    )
    amx = bf16_units and _call("_is_amx_tile_supported", torch.cpu) and onednn_allows("AVX512_CORE_AMX")
    return CpuTier(capability=capability, onednn_limit=_onednn_limit(), avx512=avx512, bf16_units=bf16_units, amx=amx)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def cuda_bf16(device: "torch.device | str | None" = None) -> bool:
    """Whether a CUDA device (default: the current one) runs bf16 natively: compute capability
    8.0 or newer (Ampere on)."""
    if not torch.cuda.is_available():
        return False
    device = torch.device(device if device is not None else "cuda")
    return torch.cuda.get_device_capability(device) >= (8, 0)
