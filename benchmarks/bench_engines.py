"""This project's inference against ONNX Runtime and OpenVINO on the same weights, side by side.

The model (random weights, ``--preset``, 224x224 by default) is exported to ONNX once per graph
(:mod:`btnk_env.models.backends`) and run by each engine installed (``onnxruntime``, ``openvino``: the
``dev`` extra; an engine that is missing is skipped with a note). Every round times one encode
and one decode of every contender at every batch size, in turn, so load changes of a shared
machine hit all alike; per contender it reports the median and best images/s, the spread of its
rounds ((slowest - fastest) / median), and the paired ratio to the torch path: the median over
rounds of that round's ``torch time / contender time`` (above 1: the contender is faster).
Where this package's default (``backend="auto"``, :func:`btnk_env.models.backends.backend_choice`)
runs an engine in a cell, it is timed there as ``default`` (that engine at the thread count this
package decides, against the engine rows at their own default threads); elsewhere the default is
the ``torch`` row. Per cell the table then says whether the default was at least as fast as the
fastest engine (paired, within :data:`NOISE`). bf16 cells on a tier without bf16 units are
printed as not available, with the reason.

``--load`` adds a fixed contention load on the same cores for the whole run, in a separate
process: ``matmul`` (a single-threaded 1024x1024 matmul loop) or ``encode`` (a second encode
loop of this package at its default threads); ``none`` is the idle case. ``--loads none matmul
encode`` runs all three and reports busy/idle ratios.

Output JSON (``--json``; schema ``btnk-engines/1``)::

    {"schema": "btnk-engines/1", "when": ISO time, "machine": {"cpu", "cores", "tier", "emulated",
     "shared": true}, "threads": int, "preset": str, "size": [H, W], "rounds": int,
     "runs": [{"load": "none" | "matmul" | "encode",
               "rows": [{"op": "encode" | "decode", "batch": int, "precision": str,
                         "backend": "torch" | "onnxruntime" | "openvino" | "default", "img_s_median": float,
                         "img_s_best": float, "spread": float, "paired_vs_torch": float, "times_s": [float]}],
               "skipped": {backend/precision: why},
               "default_vs_engines": [{"op", "batch", "precision", "default_runs", "fastest_engine",
                                       "default_over_fastest"}]}],
     "errors": [{"backend", "precision", "op", "max_abs_diff_vs_torch_fp32", "cosine_min"}],
     "busy_over_idle": [{"load", "op", "batch", "precision", "backend", "ratio"}]}

Usage::

    python -m benchmarks.bench_engines --batches 1 8 32 --rounds 5 --loads none matmul encode --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import torch

from btnk_env.models import BtnkMAE
from btnk_env.models.backends import ENGINE_PRECISIONS, EngineModel, backend_choice, backend_missing
from btnk_env.models.files import atomic_write_text
from btnk_env.models.hardware import cpu_name, cpu_tier
from btnk_env.models.precision import for_inference
from btnk_env.models.threads import decide_again, inference_threads

SCHEMA = "btnk-engines/1"
LOADS = ("none", "matmul", "encode")
#: Paired ratios within this of 1 count as "as fast" (round-to-round noise of a shared machine).
NOISE = 0.03

_MATMUL_LOOP = """
import torch
torch.set_num_threads(1)
a = torch.randn(1024, 1024)
while True:
    a @ a
"""

_ENCODE_LOOP = """
import sys, torch
from btnk_env.models import BtnkMAE
from btnk_env.models.precision import for_inference
model = for_inference(BtnkMAE(sys.argv[1]).eval())  # this package's default threads and backend
x = torch.randn(8, 3, *model.img_size)
with torch.inference_mode():
    while True:
        model.encode(x)
"""


@contextmanager
def contention(load: str, preset: str) -> Iterator[None]:
    """Run a busy process of kind ``load`` (see the module docstring) for the duration of the block."""
    if load == "none":
        yield
        return
    code = {"matmul": _MATMUL_LOOP, "encode": _ENCODE_LOOP}[load]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code, preset], env=env)
    try:
        time.sleep(3.0)  # let it start and reach its loop
        yield
    finally:
        proc.terminate()
        proc.wait()


def bf16_unavailable() -> str:
    """Why bf16 is not measured on this CPU tier ("" where it has bf16 matrix units)."""
    tier = cpu_tier()
    if tier.bf16_units:
        return ""
    return (f"not available on this tier ({tier.name}: no AVX-512 BF16 or AMX units): for_inference(precision='bf16') "
            "runs fp32 here, PyTorch's bf16 matmul would be its slow reference kernel and OpenVINO ignores the "
            "bf16 hint (runs f32)")


def _contenders(model: BtnkMAE, precisions: Sequence[str]) -> tuple:
    """``({(backend, precision): runner}, {label: why skipped})`` for every backend and precision offered."""
    runners, skipped = {}, {}
    for precision in precisions:
        if precision == "bf16" and bf16_unavailable():
            skipped["bf16"] = bf16_unavailable()
            continue
        if precision in ("fp32", "bf16", "int8"):
            runners[("torch", precision)] = for_inference(model, precision, backend="torch")
        for engine, offered in ENGINE_PRECISIONS.items():
            if precision not in offered:
                continue
            reason = backend_missing(engine)
            if reason:
                skipped[f"{engine}/{precision}"] = reason
            else:
                runners[(engine, precision)] = EngineModel(model, engine, precision, threads=0)  # its own default
    return runners, skipped


def _once(fn, arg) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def _defaults(model: BtnkMAE, precisions: Sequence[str]) -> dict:
    """``{("default", precision): runner}`` where this package's default (``backend="auto"``) runs an
    engine in some cell: built now, so with the thread count decided under the current load."""
    out = {}
    for precision in precisions:
        if precision == "bf16" and bf16_unavailable():
            continue
        route = backend_choice(precision)
        if route.engines:
            out[("default", precision)] = EngineModel(model, route, precision)
    return out


def _timed_here(key: tuple, net, op: str, batch: int) -> bool:
    """Whether ``net`` is timed in this cell: the default only where its route runs an engine
    (elsewhere it is the torch path, timed as ``torch``)."""
    return key[0] != "default" or net.route.backend(op, batch) != "torch"


def measure(model: BtnkMAE, runners: dict, batches: Sequence[int], rounds: int) -> List[dict]:
    """Interleaved rounds over every runner, op and batch; one row per (op, batch, precision, backend),
    with every round's seconds (``times_s``) for paired ratios between any two rows."""
    xs = {b: torch.randn(b, 3, *model.img_size) for b in batches}
    zs = {b: torch.randn(b, model.latent_dim) for b in batches}
    times: Dict[tuple, list] = {}
    with torch.inference_mode():
        for key, net in runners.items():  # warm-up: exports, compiles, packs
            for b in batches:
                if _timed_here(key, net, "encode", b):
                    net.encode(xs[b])
                if _timed_here(key, net, "decode", b):
                    net.decode_patches(zs[b])
        for _ in range(rounds):
            for b in batches:
                for key, net in runners.items():
                    if _timed_here(key, net, "encode", b):
                        times.setdefault(("encode", b, *key), []).append(_once(net.encode, xs[b]))
                    if _timed_here(key, net, "decode", b):
                        times.setdefault(("decode", b, *key), []).append(_once(net.decode_patches, zs[b]))
    rows = []
    for (op, b, backend, precision), ts in times.items():
        ref = times.get((op, b, "torch", precision)) or times[(op, b, "torch", "fp32")]
        med = statistics.median(ts)
        rows.append({"op": op, "batch": b, "precision": precision, "backend": backend,
                     "img_s_median": round(b / med, 3), "img_s_best": round(b / min(ts), 3),
                     "spread": round((max(ts) - min(ts)) / med, 3),
                     "paired_vs_torch": round(statistics.median(r / t for r, t in zip(ref, ts)), 3),
                     "times_s": [round(t, 5) for t in ts]})
    return rows


def default_vs_engines(rows: List[dict]) -> List[dict]:
    """Per (op, batch, precision) cell: what this package's default ran (``default`` row where its
    route names an engine, else ``torch``), the fastest engine by paired ratio, and
    ``default_over_fastest``: the median over rounds of (that engine's time / the default's time)."""
    cells: Dict[tuple, Dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["op"], r["batch"], r["precision"]), {})[r["backend"]] = r
    out = []
    for (op, batch, precision), by in sorted(cells.items()):
        engines = [r for name, r in by.items() if name not in ("torch", "default")]
        ours = by.get("default") or by.get("torch")
        if not engines or ours is None:
            continue
        best = max(engines, key=lambda r: r["paired_vs_torch"])
        ratio = statistics.median(e / d for e, d in zip(best["times_s"], ours["times_s"]))
        runs = backend_choice(precision).backend(op, batch) if "default" in by else "torch"
        out.append({"op": op, "batch": batch, "precision": precision, "default_runs": runs,
                    "fastest_engine": best["backend"], "default_over_fastest": round(ratio, 3)})
    return out


def errors(model: BtnkMAE, runners: dict, batch: int = 4) -> List[dict]:
    """Output differences of every runner against the torch path in fp32 (latent and patches)."""
    torch.manual_seed(1)
    x, z = torch.randn(batch, 3, *model.img_size), torch.randn(batch, model.latent_dim)
    out = []
    with torch.inference_mode():
        ref_z, ref_p = model.encode(x), model.decode_patches(z)
        for (backend, precision), net in runners.items():
            lat, patches = net.encode(x).float(), net.decode_patches(z).float()
            cos = torch.nn.functional.cosine_similarity(lat, ref_z, dim=-1).min().item()
            out.append({"backend": backend, "precision": precision,
                        "latent_max_abs_diff": (lat - ref_z).abs().max().item(),
                        "patches_max_abs_diff": (patches - ref_p).abs().max().item(), "latent_cosine_min": cos})
    return out


def busy_over_idle(runs: List[dict]) -> List[dict]:
    """Each contender's median images/s under a load over its idle median (``none`` run)."""
    idle = next((r for r in runs if r["load"] == "none"), None)
    if idle is None:
        return []
    key = lambda row: (row["op"], row["batch"], row["precision"], row["backend"])  # noqa: E731
    base = {key(row): row["img_s_median"] for row in idle["rows"]}
    return [{"load": run["load"], "op": row["op"], "batch": row["batch"], "precision": row["precision"],
             "backend": row["backend"], "ratio": round(row["img_s_median"] / base[key(row)], 3)}
            for run in runs if run["load"] != "none" for row in run["rows"] if key(row) in base]


def versus_engines(preset: str = "base", size=None, batches: Sequence[int] = (1, 8, 32), rounds: int = 5,
                   precisions: Sequence[str] = ("fp32", "bf16", "int8"), loads: Sequence[str] = ("none",),
                   seed: int = 0) -> dict:
    """The whole comparison (see the module docstring); returns the JSON document."""
    torch.manual_seed(seed)
    model = BtnkMAE(preset, **({"img_size": tuple(size)} if size else {})).eval()
    tier = cpu_tier()
    runners, skipped = _contenders(model, precisions)  # the torch path first: it decides the threads
    result = {"schema": SCHEMA, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "tier": tier.name,
                          "emulated": tier.lowered, "describe": tier.describe(), "shared": True},
              "threads": torch.get_num_threads(), "threads_why": inference_threads()[1],
              "engine_threads": "each engine's own default (all cores)", "preset": preset, "size": list(model.img_size), "rounds": rounds,
              "errors": errors(model, runners), "runs": []}
    for load in loads:
        with contention(load, preset):
            threads = decide_again()  # as a process started under this load would decide
            rows = measure(model, {**runners, **_defaults(model, precisions)}, batches, rounds)
        result["runs"].append({"load": load, "rows": rows, "skipped": skipped, "torch_threads": threads,
                               "threads_why": inference_threads()[1], "default_vs_engines": default_vs_engines(rows)})
    result["busy_over_idle"] = busy_over_idle(result["runs"])
    return result


def format_table(result: dict) -> str:
    """The comparison as text: per load, one line per op, batch, precision and backend."""
    m = result["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, tier {m['tier']} ({'emulated' if m['emulated'] else 'real'}), "
             f"{result['threads']} threads, {result['preset']} {result['size'][0]}x{result['size'][1]}, "
             f"{result['rounds']} interleaved rounds"]
    for e in result["errors"]:
        lines.append(f"  {e['backend']:>11} {e['precision']}: latent max |diff| vs torch fp32 {e['latent_max_abs_diff']:.1e}, "
                     f"patches {e['patches_max_abs_diff']:.1e}, latent cosine >= {e['latent_cosine_min']:.5f}")
    for run in result["runs"]:
        lines.append(f"load: {run['load']} (torch path on {run['torch_threads']} threads: {run['threads_why']})")
        lines.append(f"  {'op':<7}{'batch':>6}{'prec':>6}{'backend':>13}{'img/s med':>11}{'best':>9}{'spread':>8}{'paired':>8}")
        for r in sorted(run["rows"], key=lambda r: (r["op"], r["batch"], r["precision"], r["backend"])):
            lines.append(f"  {r['op']:<7}{r['batch']:>6}{r['precision']:>6}{r['backend']:>13}{r['img_s_median']:>11.2f}"
                         f"{r['img_s_best']:>9.2f}{r['spread']:>8.2f}{r['paired_vs_torch']:>7.2f}x")
        for what, why in run["skipped"].items():
            lines.append(f"  skipped {what}: {why}")
        for c in run.get("default_vs_engines", []):
            verdict = "yes" if c["default_over_fastest"] >= 1 - NOISE else "NO"
            lines.append(f"  default {c['op']} b{c['batch']} {c['precision']}: runs {c['default_runs']}, "
                         f"{c['default_over_fastest']:.2f}x the fastest engine ({c['fastest_engine']}), paired: "
                         f"at least as fast: {verdict}")
        if "bf16" in run["skipped"]:
            for b in sorted({r["batch"] for r in run["rows"]}):
                lines.append(f"  default encode/decode b{b} bf16: {run['skipped']['bf16']}")
    lines.append("paired: median over rounds of (torch time / this backend's time) in the same round; above 1 = faster "
                 "than the torch path; spread: (slowest - fastest) / median round")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_engines", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--loads", nargs="+", default=["none"], choices=LOADS)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = versus_engines(args.preset, args.size, args.batches, args.rounds, args.precisions, args.loads)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
