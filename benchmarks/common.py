"""Timing, peak-memory and matmul-peak helpers shared by the benchmark scripts.

Timings take the best of several repetitions after warm-up (the machines are shared and
noisy; compare ratios measured in one run, never absolute figures across runs).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Callable

import torch


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], device: torch.device | str = "cpu", reps: int = 5,
              warmup: int = 2, min_seconds: float = 0.0) -> float:
    """Best wall time of ``fn()`` in seconds over ``reps`` runs (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    sync(device)
    best, total, runs = float("inf"), 0.0, 0
    while runs < reps or total < min_seconds:
        start = time.perf_counter()
        fn()
        sync(device)
        elapsed = time.perf_counter() - start
        best, total, runs = min(best, elapsed), total + elapsed, runs + 1
    return best


def reset_peak_memory(device: torch.device | str) -> None:
    """Reset the peak-memory counter: CUDA allocator stats, or the process's RSS high-water mark."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # hand freed heap back to the OS first, or the high-water mark restarts from stale pages
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mib(device: torch.device | str) -> float | None:
    """Peak memory since :func:`reset_peak_memory`: CUDA allocated bytes, or process peak RSS, MiB."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def matmul_candidates(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 2048) -> list:
    """``(label, flops, fn)`` for the matrix multiplies the peak is taken over: square ``n x n``
    products and the ViT-B linear shapes, each with a plain weight and (on the CPU) with the
    oneDNN-packed weight the model's fused kernels use."""
    from btnk_env.models.kernels import _bf16_supported, fused_kernels_available

    shapes = [(n, n, n), (1576, 768, 3072), (1576, 3072, 768), (1576, 768, 2304)]
    # oneDNN packs bf16 weights only where it runs bf16 (AVX-512 or AVX-NE-CONVERT; not on AVX2)
    packed = torch.device(device).type == "cpu" and fused_kernels_available() and (
        dtype == torch.float32 or (dtype == torch.bfloat16 and _bf16_supported()))
    out = []
    for m, k, o in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, o, device=device, dtype=dtype)
        out.append((f"{m}x{k}x{o}", 2 * m * k * o, lambda a=a, b=b: a @ b))
        if packed:
            w = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous())
            out.append((f"{m}x{k}x{o} packed", 2 * m * k * o,
                        lambda a=a, w=w: torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")))
    return out


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 2048, reps: int = 5) -> float:
    """Measured matrix-multiply throughput (GFLOP/s) of this machine for ``dtype``: the best
    over :func:`matmul_candidates`, each timed ``reps`` times."""
    with torch.inference_mode():
        return max(flops / best_time(fn, device, reps=reps) / 1e9 for _, flops, fn in matmul_candidates(dtype, device, n))


def flops_per_call(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call, counted by ``torch.utils.flop_counter`` (on the
    plain kernels: the counter does not know oneDNN's fused ones, which do the same work).

    The counter has formulas for the CUDA attention kernels but not for the CPU's flash
    attention; it is given the same formula (4 * B * h * L_q * L_k * d), so attention counts
    on both.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from btnk_env.models.kernels import fused_kernels

    def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flop}
    with fused_kernels(False), FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        fn()
    return counter.get_total_flops()


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from btnk_env.models.hardware import cpu_name

    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def cpu_tier_line() -> str:
    """The CPU, its thread count and the tier the kernels run at (see :mod:`btnk_env.models.hardware`)."""
    from btnk_env.models.hardware import cpu_tier

    return f"{device_name('cpu')}: {cpu_tier().describe()}"
