"""How many threads CPU inference runs on, decided once per process from what it sees.

PyTorch starts with one OpenMP thread per core it may use. When other processes keep those
cores busy (environment workers rendering, another encode, a training), its threads wait at every
barrier for a thread that is not scheduled: measured on a shared 2-core AMD EPYC (load average
about 12), a tiny encode at batch 8 ran at 5.5 images/s on 2 threads and 28.7 on 1. So at the
first inference set-up (:func:`btnk_env.models.precision.for_inference`, which the wrappers,
``btnk-env encode`` and ``decode_rollout`` go through) :func:`inference_threads` looks at

- the cores this process may run on (``os.sched_getaffinity``),
- how many of them others keep busy: the runnable tasks of ``/proc/loadavg`` besides this
  process (sampled a few times over 0.1 s, the median) and the 1-minute load average, whichever
  is lower, so a short burst alone does not count; and, where ``/proc/stat`` says so, no more
  than the CPU time others spent at normal priority over those samples: work started with
  ``nice`` yields its cores to this process, so it does not count against its threads,

and runs on the cores left free (at least 1); ``torch.set_num_threads`` is called with that.
A thread count the user chose is kept: ``OMP_NUM_THREADS`` or ``BTNK_THREADS`` in the
environment, or ``torch.set_num_threads`` called before the first inference set-up.
:func:`inference_threads` returns the count and why (``btnk-env info`` prints it).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Optional, Tuple

import torch

ENV_VAR = "BTNK_THREADS"
#: torch's thread count when this module was imported: a different count later was set by the user.
_STARTUP = torch.get_num_threads()
_CHOICE: Optional[Tuple[int, str]] = None
_APPLIED = False


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_jiffies() -> Tuple[float, float, float]:
    """``(all cores' busy time at normal priority, their niced time, this process's time)`` in
    clock ticks so far (``/proc/stat``, ``/proc/self/stat``)."""
    fields = [float(v) for v in open("/proc/stat").readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    own = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return user + system + irq + softirq, nice, float(own[11]) + float(own[12])


def others_cpu(before: Tuple[float, float, float], after: Tuple[float, float, float], seconds: float,
               own_nice: int) -> float:
    """Cores' worth of CPU time that other processes took between two :func:`_cpu_jiffies`
    samples ``seconds`` apart; niced time counts only when this process is niced itself (then it
    does not yield to it)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    normal = (after[0] - before[0]) - (after[2] - before[2])
    niced = after[1] - before[1]
    used = normal + (niced if own_nice > 0 else 0.0)
    return max(0.0, used / ticks / max(seconds, 1e-9))


def busy_cores(samples: int = 5, interval_s: float = 0.04) -> float:
    """How many cores other work keeps busy: the runnable tasks of ``/proc/loadavg`` other than
    this one (median of ``samples``), capped by the 1-minute load average and by the CPU time
    others took at this process's priority or above meanwhile (niced work yields); 0 where unknown."""
    running = []
    try:
        stat_before, t0 = _cpu_jiffies(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        stat_before = None
    try:
        for i in range(samples):
            fields = open("/proc/loadavg").read().split()
            running.append(int(fields[3].split("/")[0]) - 1)  # minus this thread
            load1 = float(fields[0])
            if i + 1 < samples:
                time.sleep(interval_s)
    except (OSError, ValueError, IndexError):
        return 0.0
    busy = max(0.0, min(float(statistics.median(running)), load1))
    if stat_before is not None:
        try:
            others = others_cpu(stat_before, _cpu_jiffies(), time.perf_counter() - t0, os.nice(0))
        except (OSError, ValueError, IndexError):
            return busy
        busy = min(busy, others)
    return busy


def choose_threads(cores: int, busy: float) -> int:
    """Threads for ``cores`` usable cores of which ``busy`` are kept busy by others (at least 1)."""
    return max(1, min(cores, cores - int(busy)))


def inference_threads() -> Tuple[int, str]:
    """``(threads, why)``: the thread count for CPU inference in this process (decided once)."""
    global _CHOICE
    if _CHOICE is None:
        _CHOICE = _choose()
    return _CHOICE


def _choose() -> Tuple[int, str]:
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise ValueError(f"{ENV_VAR}={forced!r}: give a thread count >= 1")
        return int(forced), f"set by {ENV_VAR}"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "set by OMP_NUM_THREADS"
    if torch.get_num_threads() != _STARTUP:
        return torch.get_num_threads(), "set by torch.set_num_threads"
    cores, busy = available_cores(), busy_cores()
    threads = choose_threads(cores, busy)
    return threads, f"{cores} usable cores, {busy:g} kept busy by other work"


def apply_inference_threads() -> int:
    """Decide and set torch's thread count for inference, once per process; returns it (a later
    ``torch.set_num_threads`` of the user's is not undone)."""
    global _APPLIED
    threads, _ = inference_threads()
    if not _APPLIED:
        _APPLIED = True
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return threads


def decide_again() -> int:
    """Forget the decision and take it again now (benchmarks that start a load mid-process, tests);
    returns the new thread count."""
    global _CHOICE, _APPLIED
    _CHOICE, _APPLIED = None, False
    torch.set_num_threads(_STARTUP)
    return apply_inference_threads()
