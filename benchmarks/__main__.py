"""The benchmark suite: ``python -m benchmarks [--quick | --full] [--json out.json]``.

Prints, for this machine: the CPU tier the kernels run at (``btnk_env.models.hardware.cpu_tier``; lower it
with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` to measure the AVX2 tier) and what it
lacks; the original btnk_mae against this project side by side, and ONNX Runtime and OpenVINO on the
same weights (``benchmarks.bench_engines``: batch 1, 8 and 32, fp32/bf16/int8, idle and under a
busy process, paired ratios; skipped with a note where they are not installed); (base, 224x224, batch 1 and 8,
encode and decode; when ``../shared/upstream`` is there); the measured fp32/bf16 matmul peaks; encode and decode images/s at
batch 1, 8 and 32, batch-1 latency, peak memory, FLOPs per image and the fraction of the peaks,
for ``base`` and ``large`` at 224x224, 256x512 and 512x1024 panoramas and the small presets; the
exact fast paths against the plain computation; fp32 encode timed in alternation with the matmul
peak, and where its time goes (linear layers, attention, the rest); reduced precision (speed and error against fp32
on the real images of ``shared/images``); optionally ``torch.compile``; the wrapper and
vector-wrapper overheads; decoded video frames/s; environment frames/s; collection frames/s with 1
and 2 worker processes and bytes per frame (PNG folder vs shards); training steps/s (bf16
only where the CPU has bf16 matrix units, or on a GPU). All
figures go to a JSON file so runs can be compared. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.common import cpu_tier_line, device_name, matmul_peak_gflops
from btnk_env.models.hardware import cpu_tier
from btnk_env.models.kernels import kernel_choice
from btnk_env.models.precision import auto_precision

# (preset, (H, W), batch sizes): the default table; --quick trims it, --full adds batch 32 everywhere.
MODEL_CASES = [
    ("base", (224, 224), (1, 8, 32)),
    ("large", (224, 224), (1, 8, 32)),
    ("base", (256, 512), (1, 8)),
    ("large", (256, 512), (1, 8)),
    ("base", (512, 1024), (1,)),
    ("large", (512, 1024), (1,)),
    ("small", (256, 512), (1, 8, 32)),
    ("tiny", (256, 512), (1, 8, 32)),
    ("tiny", (128, 256), (1, 8, 32)),
]
QUICK_CASES = [("base", (224, 224), (1, 8)), ("tiny", (128, 256), (1, 8))]


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_suite(args: argparse.Namespace) -> dict:
    from benchmarks import bench_model

    device = args.device
    results: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    cpu = torch.device(device).type == "cpu"
    tier, (fused, why) = cpu_tier(), kernel_choice()
    bf16_fast = auto_precision(device) == "bf16"
    results["cpu_tier"] = {"name": tier.name, "capability": tier.capability, "onednn_limit": tier.onednn_limit,
                           "bf16_units": tier.bf16_units, "lowered": tier.lowered, "fused_kernels": fused,
                           "auto_precision": auto_precision(device)}
    _section("machine")
    print(cpu_tier_line())
    if cpu:
        print(f"kernels: {'fused oneDNN, packed weights' if fused else 'plain PyTorch'} ({why}); "
              f'precision="auto" -> {auto_precision(device)}')
        if not tier.bf16_units:
            print("this tier lacks bf16 matrix units (AVX-512 BF16 / AMX): bf16 runs converted to fp32, slower "
                  "than fp32; bf16 figures below are shown for completeness, bf16 training is skipped")
    if device == "cpu":
        from benchmarks.bench_original import KERNEL_MODES, format_table, versus_original

        _section("against the original btnk_mae (base, 224x224, fp32, interleaved, best of rounds)")
        original = versus_original("base", (1, 8), rounds=max(3, args.reps + 2), kernels=KERNEL_MODES)
        results["versus_original"] = original
        print(format_table(original))

    if device == "cpu" and not args.skip_engines:
        from benchmarks.bench_engines import format_table as engines_table, versus_engines

        _section("against ONNX Runtime and OpenVINO (base, 224x224, same weights, interleaved, paired ratios)")
        engines = versus_engines("base", batches=(1, 8) if args.quick else (1, 8, 32), rounds=max(3, args.reps),
                                 precisions=("fp32", "bf16", "int8"),
                                 loads=("none",) if args.quick else ("none", "matmul", "encode"))
        results["versus_engines"] = engines
        print(engines_table(engines))

    _section("matmul peaks")
    # without bf16 matrix units bf16 runs PyTorch's reference kernel (minutes at 2048^3): a small probe says enough
    bf16_probe = {} if bf16_fast or not cpu else {"n": 256, "reps": 1}
    peaks = {"fp32": matmul_peak_gflops(torch.float32, device), "bf16": matmul_peak_gflops(torch.bfloat16, device, **bf16_probe)}
    results["matmul_peak_gflops"] = peaks
    print(f"fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s  ({results['device']})"
          + ("" if bf16_fast or not cpu else "  (bf16 without bf16 matrix units)"))

    _section("encode / decode (fp32)")
    print(f"{'preset':<6}{'size':>9}{'batch':>6}{'enc img/s':>11}{'dec img/s':>11}{'enc ms@1':>10}"
          f"{'GFLOP/img':>10}{'%fp32 peak':>11}{'peak MiB':>9}")
    rows = []
    cases = QUICK_CASES if args.quick else MODEL_CASES
    for preset, size, batches in cases:
        if args.full:
            batches = (1, 8, 32)
        model = bench_model.BtnkMAE(preset, img_size=size).to(device).eval()
        for batch in batches:
            r = bench_model.measure(model, batch, reps=args.reps, device=device)
            r.update(preset=preset, size=f"{size[0]}x{size[1]}",
                     encode_fraction_of_fp32_peak=r["encode_gflop_s"] / peaks["fp32"],
                     decode_fraction_of_fp32_peak=r["decode_gflop_s"] / peaks["fp32"])
            rows.append(r)
            lat = f"{r['encode_latency_ms']:.1f}" if r["encode_latency_ms"] else ""
            print(f"{preset:<6}{r['size']:>9}{batch:>6}{r['encode_img_s']:>11.2f}{r['decode_img_s']:>11.2f}{lat:>10}"
                  f"{r['encode_gflop_per_img']:>10.1f}{100 * r['encode_fraction_of_fp32_peak']:>10.0f}%"
                  f"{(r['peak_memory_mib'] or 0):>9.0f}", flush=True)
        del model
    results["model"] = rows

    _section(f"exact fast paths ({'fused' if fused else 'plain'} kernels) vs plain computation (base, 224, batch 8)")
    base = bench_model.BtnkMAE("base").to(device).eval()
    fast = bench_model.fast_vs_plain(base, batch=8, reps=args.reps + 2, device=device)
    results["fast_vs_plain"] = fast
    print(f"encode: CLS-only last block + chosen kernels {fast['encode_speedup']:.3f}x the full-sequence path "
          f"(max |diff| {fast['encode_max_abs_diff']:.1e}); decode: closed-form cross-attention "
          f"{fast['decode_speedup']:.3f}x nn.MultiheadAttention (max |diff| {fast['decode_max_abs_diff']:.1e})")

    _section("fp32 encode against the matmul peak (base, 224, batch 8)")
    pf = bench_model.peak_fraction_interleaved(base, batch=8, rounds=2 * args.reps + 1, device=device)
    results["encode_peak_fraction_interleaved"] = pf
    print(f"timed in alternation with the fastest matmul ({pf['peak_matmul']}), best of {pf['rounds']} each: "
          f"encode {pf['encode_gflop_s']:.0f} GFLOP/s = {pf['fraction']:.1%} of {pf['peak_gflop_s']:.0f} GFLOP/s")
    if device == "cpu":
        bd = bench_model.time_breakdown(base, batch=8, reps=2 * args.reps + 1, device=device)
        bd["ceiling_fraction_of_fp32_peak"] = bench_model.ceiling_fraction(bd, pf["peak_gflop_s"])
        results["encode_time_breakdown"] = bd
        enc, peak = bd["encode_ms"], pf["peak_gflop_s"]
        print(f"where the time goes (fastest of {2 * args.reps + 1} encodes, {enc:.0f} ms for {bd['gflop']:.0f} GFLOP):")
        print(f"  linear layers   {bd['linear_ms']:6.0f} ms ({bd['linear_ms'] / enc:4.0%})  "
              f"{bd['linear_gflop_s']:5.0f} GFLOP/s = {bd['linear_gflop_s'] / peak:.0%} of the peak")
        print(f"  attention       {bd['attention_ms']:6.0f} ms ({bd['attention_ms'] / enc:4.0%})  "
              f"{bd['attention_gflop_s']:5.0f} GFLOP/s = {bd['attention_gflop_s'] / peak:.0%} of the peak")
        print(f"  everything else {bd['other_ms']:6.0f} ms ({bd['other_ms'] / enc:4.0%})  (layer norms, patch embedding, reshapes)")
        print(f"  ceiling (linear layers as timed, attention at the peak rate, the rest free): "
              f"{bd['ceiling_fraction_of_fp32_peak']:.0%} of the peak")

    _section("reduced precision (base, 224, batch 8; error on the real images, random weights)")
    precisions = ("fp32", "auto", "bf16", "int8", "fp16")
    table = bench_model.precision_table(base, batch=8, reps=args.reps, device=device, precisions=precisions)
    results["precision_base"] = table
    _print_precision(table)
    _section("precision='auto' against fp32 at batch 1 (base, 224)")
    table = bench_model.precision_table(base, batch=1, reps=args.reps + 2, device=device, precisions=("auto",))
    results["precision_base_batch1"] = table
    _print_precision(table)
    trained = _trained_model(device)
    if trained is not None:
        name, model = trained
        _section(f"reduced precision ({name}, trained, batch 8, real images)")
        table = bench_model.precision_table(model, batch=8, reps=args.reps, device=device, precisions=precisions)
        results["precision_trained"] = {"model": name, "rows": table}
        _print_precision(table)

    if args.compile:
        _section("torch.compile (base, 224, batch 8; compile time = first call)")
        results["compile"] = _compile_table(base, device, args.reps)
    del base

    if not args.skip_wrappers:
        from benchmarks.bench_wrappers import benchmark_wrappers, format_report

        _section("wrappers (base, 224)")
        wrappers = benchmark_wrappers("base", (224, 224), (1, 4, 8), repeats=max(5, args.reps), device=device)
        results["wrappers"] = wrappers
        print(format_report(wrappers))

    if not args.skip_video:
        from benchmarks.bench_video import run as video_run

        _section("rollout video decoding")
        video = video_run(device, ("fp32", "auto") if device == "cpu" else ("fp32", "auto", "fp16"), reps=args.reps)
        results["video"] = video
        for row in video["decode"]:
            print(f"{row['preset']:<6}{row['size']:>9} {row['precision']:>5} batch {row['batch_size']:>2}: "
                  f"{row['frames_per_s']:>7} frames/s")

    if not args.skip_env:
        from benchmarks.bench_env import bench_env

        _section("built-in panorama world")
        env = bench_env(heights=(256, 512), steps=100 if args.quick else 300)
        results["env"] = env
        print(json.dumps(env, indent=1))

    if not args.skip_collect:
        from benchmarks.bench_collect import bench_collect

        _section("panorama collection (1 and 2 workers, 128x256, shards; bytes per frame)")
        collect = bench_collect(frames=300 if args.quick else 1200, rounds=1 if args.quick else 2)
        results["collect"] = collect
        print(json.dumps(collect, indent=1))

    if not args.skip_train:
        from benchmarks.bench_train import bench_in_subprocess

        _section("training steps/s (batch 8, 224x224; each in its own process)")
        train_rows = []
        for preset, precision in (("small", "fp32"), ("small", "bf16"), ("base", "fp32"), ("base", "bf16")):
            if (args.quick and preset == "base") or (precision == "bf16" and not bf16_fast):
                continue
            r = bench_in_subprocess(preset=preset, batch_size=8, img_size=(224, 224), steps=3, precision=precision, device=device)
            train_rows.append(r)
            print(f"{preset:<6} {precision}: {r.get('steps_per_s', float('nan')):.3f} steps/s, "
                  f"peak {r.get('peak_mem_mib', float('nan')):.0f} MiB", flush=True)
        results["train"] = train_rows

    _section("issue targets (ratios measured in this run)")
    results["targets"] = _targets(results)
    for line in results["targets"]:
        print(line)
    return results


def _print_precision(table: list) -> None:
    for row in table:
        if "skipped" in row:
            print(f"{row['precision']:>11}: skipped ({row['skipped']})")
            continue
        label = row["precision"] if row["precision"] == row["runs"] else f"{row['precision']} ({row['runs']})"
        print(f"{label:>11}: encode {row['encode_img_s']:7.2f} img/s ({row['encode_speedup']:.2f}x), "
              f"decode {row['decode_img_s']:7.2f} img/s ({row['decode_speedup']:.2f}x), latent cosine >= "
              f"{row['latent_cosine_min']:.5f}, decoded PSNR vs fp32 {row['decode_psnr_vs_fp32_db']:.1f} dB", flush=True)


def _trained_model(device: str):
    from btnk_env.models import BtnkMAE
    from btnk_env.models.hub import BUNDLED

    for name in BUNDLED:
        try:
            return name, BtnkMAE.from_pretrained(name).to(device).eval()
        except (FileNotFoundError, OSError):
            continue
    return None


def _compile_table(model, device: str, reps: int) -> list:
    from benchmarks.common import best_time
    from btnk_env.models.btnk_mae import COMPILE_MODES

    x = torch.randn(8, 3, *model.img_size, device=device)
    rows = []
    with torch.inference_mode():
        eager = model.encode(x)
        t_eager = best_time(lambda: model.encode(x), device, reps=reps, warmup=1)
        for mode in COMPILE_MODES:
            torch._dynamo.reset()
            model.enable_compile(mode)
            start = time.perf_counter()
            out = model.encode(x)
            compile_s = time.perf_counter() - start
            t = best_time(lambda: model.encode(x), device, reps=reps, warmup=1)
            row = {"mode": mode, "compile_s": compile_s, "encode_img_s": 8 / t, "speedup_vs_eager": t_eager / t,
                   "max_abs_diff_vs_eager": (out - eager).abs().max().item()}
            rows.append(row)
            print(f"{mode:>16}: compile {compile_s:6.1f} s, encode {row['encode_img_s']:.2f} img/s "
                  f"({row['speedup_vs_eager']:.2f}x eager), max |diff| {row['max_abs_diff_vs_eager']:.1e}", flush=True)
        model.disable_compile()
    return rows


def _targets(r: dict) -> list[str]:
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"[{'met' if ok else 'NOT met'}] {text}")

    b8 = next((x for x in r.get("model", []) if x["preset"] == "base" and x["size"] == "224x224" and x["batch"] == 8), None)
    if b8:
        frac = b8["encode_fraction_of_fp32_peak"]
        pf = r.get("encode_peak_fraction_interleaved")
        if pf:
            check(pf["fraction"] >= 0.9, f"fp32 base encode at batch 8: {pf['fraction']:.1%} of the fp32 matmul peak timed "
                  f"in alternation ({frac:.0%} of the peak measured at the start) (target 90%)")
        else:
            check(frac >= 0.9, f"fp32 base encode at batch 8: {frac:.0%} of the measured fp32 matmul peak (target 90%)")
        bd = r.get("encode_time_breakdown")
        if bd:
            lines.append(f"      its linear layers run at {bd['linear_gflop_s'] / pf['peak_gflop_s']:.0%} of the peak and take "
                         f"{bd['linear_ms'] / bd['encode_ms']:.0%} of the time; ceiling {bd['ceiling_fraction_of_fp32_peak']:.0%}")
    fast = r.get("fast_vs_plain")
    if fast:
        check(fast["encode_speedup"] >= 1.05, f"encode vs plain full-sequence path: {fast['encode_speedup']:.3f}x (target 1.05x)")
        check(fast["decode_speedup"] >= 1.0, f"decode vs plain MultiheadAttention path: {fast['decode_speedup']:.3f}x (target >= 1x)")
    orig = r.get("versus_original", {})
    for row in orig.get("rows", []):
        if row["contender"] == "ours default":
            for op in ("encode", "decode"):
                check(row[f"{op}_paired"] >= 1.0, f"default fp32 {op} at batch {row['batch']}: "
                      f"{row[f'{op}_paired']:.2f}x the original, paired median over rounds "
                      f"(best of rounds {row[f'{op}_vs_original']:.2f}x; target >= 1x)")
    if orig.get("max_abs_diff"):
        worst = max(orig["max_abs_diff"].values())
        check(worst <= 1e-5, f"outputs equal the original's within {worst:.1e} (target 1e-5)")
    for row in r.get("precision_base", []) + r.get("precision_base_batch1", []):
        if row.get("precision") == "auto" and "encode_speedup" in row:
            check(min(row["encode_speedup"], row["decode_speedup"]) >= 0.97,
                  f"precision='auto' ({row['runs']}, batch {row['batch']}): encode {row['encode_speedup']:.2f}x, decode "
                  f"{row['decode_speedup']:.2f}x fp32 (target: never slower; 3% noise allowed)")
        if row.get("precision") == "bf16" and "encode_speedup" in row and r["cpu_tier"]["bf16_units"]:
            check(row["encode_speedup"] >= 1.7 and row["latent_cosine_min"] >= 0.999,
                  f"bf16 encode {row['encode_speedup']:.2f}x fp32, cosine {row['latent_cosine_min']:.5f} (target 1.7x, 0.999)")
        if row.get("precision") == "int8" and "encode_speedup" in row:
            check(row["encode_speedup"] >= 1.5, f"int8 encode {row['encode_speedup']:.2f}x fp32, cosine "
                  f"{row['latent_cosine_min']:.4f}, decode PSNR vs fp32 {row['decode_psnr_vs_fp32_db']:.1f} dB (target 1.5x)")
    from benchmarks.bench_engines import NOISE as ENGINE_NOISE

    for run in r.get("versus_engines", {}).get("runs", []):
        for c in run.get("default_vs_engines", []):
            check(c["default_over_fastest"] >= 1 - ENGINE_NOISE,
                  f"{c['op']} batch {c['batch']} {c['precision']}, load {run['load']}: our default ({c['default_runs']}) "
                  f"at {c['default_over_fastest']:.2f}x the fastest engine ({c['fastest_engine']}), paired "
                  f"(target >= 1x; {ENGINE_NOISE:.0%} noise allowed)")
        if "bf16" in run.get("skipped", {}):
            lines.append(f"  n/a  bf16 encode/decode, load {run['load']}: {run['skipped']['bf16']}")
    w = r.get("wrappers")
    if w:
        check(w["wrapper_overhead_pct"] < 5, f"wrapper overhead at batch 1: {w['wrapper_overhead_pct']:.1f}% (target < 5%)")
        v8 = w["vector"].get(8)
        if v8:
            check(v8["speedup"] >= 1.15, f"vector wrapper, 8 envs: {v8['speedup']:.2f}x per frame vs 8 single wrappers (target 1.15x)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="base 224 and tiny only, batch 1 and 8 (a few minutes)")
    size.add_argument("--full", action="store_true", help="batch 1, 8 and 32 for every case (long: large at 512x1024)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per figure (best is kept)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile modes (minutes of compiling)")
    for part in ("engines", "wrappers", "video", "env", "collect", "train"):
        parser.add_argument(f"--skip-{part}", action="store_true", help=f"skip the {part} benchmarks")
    parser.add_argument("--json", type=Path, help="where to write the figures (default: benchmarks/results/<time>.json)")
    args = parser.parse_args()
    results = run_suite(args)
    out = args.json or Path("benchmarks/results") / f"{results['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nfigures written to {out}")


if __name__ == "__main__":
    main()
