"""Tables in the docs, generated from benchmark JSON files that name their machine and date.

A table in a Markdown file (README.md, docs/*.md) sits between two markers::

    <!-- table: docs/benchmarks/quick.json model -->
    ... generated: a caption naming the machine and date, then the table ...
    <!-- /table -->

The marker names a JSON file (a path from the repository root), a *view* (which part of the file
becomes which table, :data:`VIEWS`) and optional filters (``preset=tiny``: only the rows whose
column ``preset`` is ``tiny``). The JSON files are the output of ``python -m benchmarks --json``
or of this module's ``measure``, which also records the machine (CPU, tier, threads, the load
average from other work before and after) and the command.

Usage::

    python -m benchmarks.report                  # rewrite every table from its JSON
    python -m benchmarks.report --check          # exit 1 if a table differs from its JSON (a test runs it)
    python -m benchmarks.report measure docs     # the figures the README quotes -> docs/benchmarks/docs.json
    python -m benchmarks.report measure quick    # python -m benchmarks --quick -> docs/benchmarks/quick.json
    python -m benchmarks.report measure demo     # btnk-env demo, timed   -> docs/benchmarks/demo.json
    python -m benchmarks.report measure world_model   # the world model's evaluation -> docs/benchmarks/world_model.json

(``measure`` takes any of :data:`MEASURES`: docs, quick, demo, video, train, collect, sb3, ppo, world_model.)
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks"
#: the Markdown files whose tables are generated
PAGES = ("README.md", "docs/*.md")

MARKER = re.compile(r"(<!-- table: (\S+) (\S+)((?: \S+=\S+)*) -->\n)(.*?)(<!-- /table -->)", re.S)

#: the engines / RL-loop / encode-pipeline tables of docs/speed.md, rendered by benchmarks/render_speed.py
SPEED_MARKER = re.compile(r"(<!-- generated: python -m benchmarks\.render_speed ((?:\S+\.json ?)+) -->\n)(.*?)(<!-- /generated -->)", re.S)

Table = Tuple[List[str], List[List[str]]]


def _f(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _x(value) -> str:
    return "" if value is None else f"{value:.2f}x"


# --- views: one part of a benchmark JSON -> (columns, rows) ---------------------------------------

def view_model(r: dict) -> Table:
    cols = ["preset", "input", "batch", "encode img/s", "decode img/s", "encode latency (batch 1)",
            "GFLOP/img enc / dec", "% of fp32 peak enc / dec", "peak RSS"]
    rows = []
    for m in r["model"]:
        lat = m.get("encode_latency_ms")
        rows.append([m["preset"], m["size"], str(m["batch"]), _f(m["encode_img_s"]), _f(m["decode_img_s"]),
                     f"{lat:.1f} ms" if lat else "",
                     f"{m['encode_gflop_per_img']:.1f} / {m['decode_gflop_per_img']:.1f}",
                     f"{100 * m['encode_fraction_of_fp32_peak']:.0f}% / {100 * m['decode_fraction_of_fp32_peak']:.0f}%",
                     f"{m['peak_memory_mib'] / 1024:.1f} GiB" if m.get("peak_memory_mib") else ""])
    return cols, rows


def view_original(r: dict) -> Table:
    o = r.get("versus_original", r)  # a whole suite run, or bench_original's own --json
    cols = ["contender", "batch", "encode img/s", "vs original (paired)", "decode img/s", "vs original (paired)"]
    rows = [[x["contender"], str(x["batch"]), _f(x["encode_img_s"], 2),
             f"{_x(x['encode_vs_original'])} ({_x(x['encode_paired'])})", _f(x["decode_img_s"], 2),
             f"{_x(x['decode_vs_original'])} ({_x(x['decode_paired'])})"] for x in o["rows"]]
    return cols, rows


def view_fast_paths(r: dict) -> Table:
    f = r["fast_vs_plain"]
    return (["exact fast path (base, 224x224, batch 8)", "speed-up", "largest difference"],
            [["encode: CLS-only last block, chosen kernels vs all tokens through every block",
              _x(f["encode_speedup"]), f"{f['encode_max_abs_diff']:.1e}"],
             ["decode: closed-form single-key cross-attention vs nn.MultiheadAttention",
              _x(f["decode_speedup"]), f"{f['decode_max_abs_diff']:.1e}"]])


def view_peak(r: dict) -> Table:
    pf, bd = r["encode_peak_fraction_interleaved"], r["encode_time_breakdown"]
    peak, enc = pf["peak_gflop_s"], bd["encode_ms"]
    rows = [[f"encode, timed in alternation with the fastest matmul ({pf['peak_matmul']})", "",
             f"{pf['encode_gflop_s']:.0f} GFLOP/s", f"{100 * pf['fraction']:.1f}% of {peak:.0f} GFLOP/s"]]
    for part, key in (("linear layers", "linear"), ("attention", "attention")):
        rows.append([part, f"{bd[key + '_ms']:.0f} ms ({100 * bd[key + '_ms'] / enc:.0f}%)",
                     f"{bd[key + '_gflop_s']:.0f} GFLOP/s", f"{100 * bd[key + '_gflop_s'] / peak:.0f}%"])
    rows.append(["everything else (layer norms, patch embedding, reshapes)",
                 f"{bd['other_ms']:.0f} ms ({100 * bd['other_ms'] / enc:.0f}%)", "", ""])
    rows.append(["ceiling: linear layers as timed, attention at the peak, the rest free", "", "",
                 f"{100 * bd['ceiling_fraction_of_fp32_peak']:.0f}%"])
    return ["fp32 encode, base, 224x224, batch 8", "time (share)", "rate", "of the fp32 matmul peak"], rows


def view_precision(r: dict) -> Table:
    cols = ["precision (runs as)", "encode img/s", "decode img/s", "latent cosine (min)", "decoded PSNR vs fp32"]
    rows = []
    for p in r["precision_base"]:
        label = p["precision"] if p.get("runs", p["precision"]) == p["precision"] else f"{p['precision']} ({p['runs']})"
        if "skipped" in p:
            rows.append([label, f"skipped: {p['skipped']}", "", "", ""])
            continue
        rows.append([label, f"{p['encode_img_s']:.1f} ({_x(p['encode_speedup'])})",
                     f"{p['decode_img_s']:.1f} ({_x(p['decode_speedup'])})", f"{p['latent_cosine_min']:.5f}",
                     "exact" if p["precision"] == p.get("runs") == "fp32" else f"{p['decode_psnr_vs_fp32_db']:.1f} dB"])
    return cols, rows


def view_wrappers(r: dict) -> Table:
    w = r["wrappers"]
    size = "x".join(str(s) for s in w["size"])
    rows = [[f"`BtnkMAEObservation.step` vs a bare `model.encode` ({w['preset']}, {size}, batch 1)",
             f"{1e3 * w['wrapper_step_s']:.1f} ms vs {1e3 * w['encode_s']:.1f} ms",
             f"{w['wrapper_overhead_pct']:+.1f}% overhead"]]
    for n, v in w["vector"].items():
        rows.append([f"`BtnkMAEVectorObservation`, {n} envs, vs {n} single-env wrappers (per frame)",
                     f"{v['vector_ms_per_frame']:.1f} ms vs {v['loop_ms_per_frame']:.1f} ms", f"{_x(v['speedup'])} faster"])
    return ["measurement", "time", "result"], rows


def view_env(r: dict) -> Table:
    return (["built-in world (step + render + read-back)", "frames/s", "ms/frame wall", "CPU ms/frame (all threads)", "renderer"],
            [[size, _f(e["fps"]), _f(e["ms_per_frame"], 2), _f(e["cpu_ms_per_frame"], 2), e["renderer"]]
             for size, e in r["env"].items()])


def view_video(r: dict) -> Table:
    v = r["video"]
    rows = [[f"decode_rollout, {d['preset']}", d["size"], d["precision"], str(d["batch_size"]), _f(d["frames_per_s"])]
            for d in v["decode"]]
    pipe = v.get("pipeline", {})
    for label, key in (("comparison layout, 2 tiled sequences", "comparison_layout_fps"),
                       ("MP4 writing (x264)", "mp4_write_fps"), ("GIF writing", "gif_write_fps")):
        if key in pipe:
            rows.append([label, pipe["layout_size"], "", "", _f(pipe[key])])
    return ["step", "frame size", "precision", "batch", "frames/s"], rows


def view_collect(r: dict) -> Table:
    c = r["collect"]
    rows = [[str(n), _f(w["fps_best"]), ", ".join(_f(x) for x in w["load_before"])] for n, w in c["workers"].items()]
    b = c["bytes_per_frame"]
    rows.append(["bytes per frame", f"PNG folder {b['folder']:,}, shards {b['shards']:,}", ""])
    return [f"collection workers ({c['size']}, {c['frames']} frames, shards)", "frames/s (best round)", "load average before"], rows


def view_train(r: dict) -> Table:
    rows = [[t["preset"], str(t["batch_size"]), "x".join(map(str, t["img_size"])), t["precision"],
             _f(t.get("steps_per_s"), 2), f"{t['peak_mem_mib'] / 1024:.1f} GiB" if t.get("peak_mem_mib") else ""]
            for t in r["train"]]
    return ["preset", "batch", "input", "precision", "steps/s", "peak RSS"], rows


def view_demo(r: dict) -> Table:
    d = r["demo"]
    return (["command", "steps", "env steps/s (with encoding)", "decoded frames/s", "mean PSNR", "precision", "wall time"],
            [[f"`{r['command']}`", str(d["steps"]), _f(d["env_steps_per_s"]), _f(d["decoded_frames_per_s"]),
              f"{d['psnr_db_mean']:.1f} dB", d["precision"], f"{d['wall_s']:.0f} s"]])


def view_sb3(r: dict) -> Table:
    b = r["sb3"]
    rows = [[n, _f(v["bridge_steps_per_s"]), _f(v["dummy_steps_per_s"]), _x(v["paired_speedup"])] for n, v in b["rows"].items()]
    return ([f"envs ({b['preset']}, {b['size'][0]}x{b['size'][1]}, {b['threads']} thread)", "`latent_vec_env` env steps/s",
             "`DummyVecEnv` of single wrappers env steps/s", "paired speed-up (median of rounds)"], rows)


def _ppo_cells(ppo: dict) -> List[str]:
    """training, PPO after, random policy: the cells of one ``examples/train_ppo_latents.py`` results.json."""
    a, rnd, args = ppo["after"], ppo["random"], ppo["args"]
    trained = (f"{args['timesteps']:,} steps, {ppo['train_seconds']:.0f} s" if args["timesteps"]
               else "the shipped agent, evaluated only")
    return [trained, f"**{100 * a['success_rate']:.0f}% success**, return {a['mean_return']:.2f}, {a['mean_length']:.1f} steps",
            f"{100 * rnd['success_rate']:.0f}% success, return {rnd['mean_return']:.2f}, {rnd['mean_length']:.1f} steps"]


def view_ppo(r: dict) -> Table:
    labels = {"rooms": "built-in world, `single_room`: reach the goal", "tint": "*tint*: name the tint of a rotated, tinted panorama"}
    rows = [[labels[task], f"`{ppo['args']['model']}`", f"{ppo['args']['eval_episodes']}", *_ppo_cells(ppo)]
            for task, ppo in r["ppo"].items()]
    return ["task", "encoder (frozen)", "held-out episodes", "training", "PPO after", "random policy"], rows


def view_world_model(r: dict) -> Table:
    from btnk_env.training.dynamics_eval import table

    cols, rows = table(r["world_model"])
    return [f"method ({r['world_model']['_rollouts']} rollouts)"] + cols[1:], rows


def view_encode_pipeline(r: dict) -> Table:
    """``benchmarks/bench_encode.py --json``: ``btnk-env encode`` against a bare ``model.encode`` loop."""
    fps, cpu = r["frames_per_s"], r.get("cpu_ms_per_frame", {})
    best, paired = r.get("fraction_of_bare", {}), r.get("paired_fraction_of_bare", {})
    size = "x".join(map(str, r["input"]))
    return ([f"{r['frames']} frames of {size}, `{r['model']}`, {r['precision']}, batch {r['batch']}, {r['torch_threads']} torch thread",
             "frames/s (best)", "fraction of bare (best)", "fraction of bare (paired)", "CPU ms per frame"],
            [[name, _f(v), _f(best.get(name), 2), _f(paired.get(name), 2), _f(cpu.get(name), 1)] for name, v in fps.items()])


#: the cases of benchmarks/bench_crafted.py, as the docs name them
CRAFTED = {"baseline": "(imports only)", "png_1bit_13000x13000": "1-bit PNG declaring 13000x13000, decoded by a dataset",
           "sparse_tar_member_1GiB": "shard whose PNG member is GNU-sparse, 1 GiB real size (`--convert`)",
           "dynamics_config_width_16384": "dynamics `config.json` with `width: 16384` beside the real weights",
           "mae_config_embed_dim_12288": "MAE `config.json` with `embed_dim: 12288` beside tiny weights",
           "episodes_num_steps_1e8": "`\"num_steps\": 100000000` in `episodes.jsonl`"}


def _crafted_outcome(case: dict) -> str:
    outcome = case.get("outcome", "?")
    if outcome.startswith("refused"):
        return "refused, one line"
    return {"exit 2": "refused, one line (exit 2)"}.get(outcome, outcome.split(":")[0])


def view_crafted(r: dict) -> Table:
    before = r.get("before", {})
    old = before.get("cases", {})
    label = f"before ({before.get('git') or 'old code'})"
    rows = []
    for name, case in r["cases"].items():
        was = old.get(name)
        rows.append([CRAFTED.get(name, name), str(case.get("input_bytes", "")), f"{_f(case.get('peak_rss_mib'), 0)} MiB",
                     _f(case.get("seconds"), 2), _crafted_outcome(case),
                     "" if was is None else (f"{_f(was.get('peak_rss_mib'), 0)} MiB, {_f(was.get('seconds'), 2)} s, "
                                             f"{_crafted_outcome(was)}" if "peak_rss_mib" in was else was["outcome"])])
    return ["crafted input", "input bytes", "peak RSS now", "seconds now", "outcome now", label], rows


def view_planning(r: dict) -> Table:
    names = {"planner": "planner (learned dynamics)", "copy-last": "planner, copy-last dynamics",
             "ridge": "planner, ridge dynamics", "ppo": "PPO agent (shipped)", "random": "random actions",
             "oracle": "BFS oracle"}
    return (["method", "success rate", "SPL", "steps (successes)", "deciding time per step"],
            [[names.get(n, n), f"{m['success_rate']:.2f}", f"{m['spl']:.2f}", _f(m["mean_steps_success"]),
              f"{m['time_per_step_s'] * 1000:.0f} ms"] for n, m in r["methods"].items()])


def view_planning_curve(r: dict) -> Table:
    return (["varied", "value", "head (training layouts, width, steps, weight decay)", "planner", "success rate", "SPL"],
            [[p["varied"], str(p["value"]), p["head"], p["planner"], f"{p['success_rate']:.2f}", f"{p['spl']:.2f}"]
             for p in r["points"]])


def view_plan_time(r: dict) -> Table:
    return (["solver", "threads", "planning ms/step (median / mean)", "encoding ms/frame", "RSS after warm-up / after all steps"],
            [[f"{r['solver']} {r['samples']} x {r['iterations']}, horizon {r['horizon']}", str(r["threads"]),
              f"{r['plan_ms_median']:.0f} / {r['plan_ms_mean']:.0f}", _f(r["encode_ms_per_frame"]),
              f"{r['after_warmup_mib']:.0f} / {r['after_all_mib']:.0f} MiB ({100 * r['rss_growth']:+.2f} % over {r['steps']} steps)"]])


VIEWS: Dict[str, Callable[[dict], Table]] = {
    "model": view_model, "original": view_original, "fast_paths": view_fast_paths, "peak": view_peak, "precision": view_precision,
    "wrappers": view_wrappers, "env": view_env, "video": view_video, "collect": view_collect, "train": view_train,
    "demo": view_demo, "sb3": view_sb3, "ppo": view_ppo, "world_model": view_world_model, "encode_pipeline": view_encode_pipeline,
    "crafted": view_crafted, "planning": view_planning, "planning_curve": view_planning_curve, "plan_time": view_plan_time,
}


# --- rendering ------------------------------------------------------------------------------------

def machine_line(r: dict) -> str:
    """Where and when: the date, the machine, the tier and the load from other work."""
    when = r.get("when") or "?"
    machine = r.get("machine") or {}
    if isinstance(machine, str):  # the benchmark scripts' own --json names the CPU only
        machine = {"device": machine, "tier": r.get("cpu")}
    device = machine.get("device") or r.get("device", "?")
    tier = r.get("cpu_tier", {}).get("name") or machine.get("tier")
    parts = [f"Measured {when.replace('T', ' ')[:16]} UTC on {device}"]
    if tier:
        parts.append(f"CPU tier `{tier}`")
    if r.get("torch"):
        parts.append(f"PyTorch {r['torch']}")
    line = ", ".join(parts)
    load = machine.get("load_average")
    if r.get("shared_machine") and not load:
        line += "; the cores were shared with other work, so the figures are noisy: compare ratios within the table"
    if load:
        line += (f"; load average {load[0]:.1f} before and {load[1]:.1f} after from other work on the same cores, "
                 "so the figures are noisy: compare ratios within one table, not across tables")
    if r.get("command"):
        line += f"; `{r['command']}`"
    return line


def render(json_path: str, view: str, filters: Dict[str, str], page: str) -> str:
    """The generated text between the markers of ``page`` (a path from the repository root)."""
    result = json.loads((ROOT / json_path).read_text())
    if view not in VIEWS:
        raise SystemExit(f"{page}: unknown table view {view!r} (one of {', '.join(VIEWS)})")
    cols, rows = VIEWS[view](result)
    for key, value in filters.items():
        rows = [row for row in rows if row[cols.index(key)] == value]
    link = posixpath.relpath(json_path, posixpath.dirname(page) or ".")
    lines = [f"*{machine_line(result)} ([{posixpath.basename(json_path)}]({link})).*", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def rewrite(text: str, page: str) -> str:
    """``text`` with every table between markers generated again (markers inside code fences are examples)."""
    def one(m: re.Match) -> str:
        filters = dict(f.split("=", 1) for f in m.group(4).split())
        return m.group(1) + render(m.group(2), m.group(3), filters, page) + m.group(6)

    def speed(m: re.Match) -> str:
        from benchmarks.render_speed import render as render_speed

        return m.group(1) + "\n" + render_speed(m.group(2).split(), ROOT) + "\n" + m.group(4)

    def both(chunk: str) -> str:
        return SPEED_MARKER.sub(speed, MARKER.sub(one, chunk))

    parts, last = [], 0
    for fence in FENCE.finditer(text):
        parts += [both(text[last:fence.start()]), fence.group(0)]
        last = fence.end()
    return "".join(parts) + both(text[last:])


def pages() -> List[Path]:
    return sorted({p for pattern in PAGES for p in ROOT.glob(pattern)})


def update(check: bool) -> int:
    """Rewrite (or, with ``check``, compare) every generated table; returns the exit status."""
    from btnk_env.models.files import atomic_write_text

    stale = []
    for path in pages():
        page = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, page)
        if new != text:
            stale.append(page)
            if not check:
                atomic_write_text(path, new)
    if check and stale:
        print(f"tables differ from their JSON in: {', '.join(stale)}; run: python -m benchmarks.report", file=sys.stderr)
        return 1
    print(("stale: " if check else "rewrote: ") + (", ".join(stale) or "none"))
    return 0


# --- measuring ------------------------------------------------------------------------------------

def machine() -> dict:
    from benchmarks.common import device_name

    return {"device": device_name("cpu"), "cpu_count": os.cpu_count()}


def _stamped(command: str, run: Callable[[], dict]) -> dict:
    """``run()``'s figures with the machine, the date, the load average before and after and the command."""
    before, when = os.getloadavg()[0], datetime.now(timezone.utc).isoformat(timespec="seconds")
    figures = run()
    figures.setdefault("when", when)
    figures["machine"] = {**machine(), "load_average": [round(before, 1), round(os.getloadavg()[0], 1)]}
    figures["command"] = command
    return figures


def measure_quick() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quick.json"
        subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)], cwd=ROOT, check=True)
        return json.loads(out.read_text())


#: (preset, (H, W), batch sizes) of ``measure docs``: the shipped model's size and ViT-B
DOCS_CASES = (("tiny", (128, 256), (1, 8)), ("base", (224, 224), (1, 8)))


def measure_docs() -> dict:
    """The figures the README and the guides quote, in the layout of ``python -m benchmarks``'s JSON
    (the same views read both): encode/decode for :data:`DOCS_CASES`, the wrappers, the built-in world."""
    import torch

    from benchmarks import bench_model
    from benchmarks.bench_env import bench_env
    from benchmarks.bench_wrappers import benchmark_wrappers
    from benchmarks.common import matmul_peak_gflops
    from btnk_env.models.hardware import cpu_tier

    peak = matmul_peak_gflops(torch.float32, "cpu")
    rows = []
    for preset, size, batches in DOCS_CASES:
        model = bench_model.BtnkMAE(preset, img_size=size).eval()
        for batch in batches:
            r = bench_model.measure(model, batch)
            r.update(preset=preset, size=f"{size[0]}x{size[1]}", encode_fraction_of_fp32_peak=r["encode_gflop_s"] / peak,
                     decode_fraction_of_fp32_peak=r["decode_gflop_s"] / peak)
            rows.append(r)
    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name}, "matmul_peak_gflops": {"fp32": peak},
            "model": rows, "wrappers": benchmark_wrappers("base", (224, 224), (1, 4, 8), repeats=5, device="cpu"),
            "env": bench_env(heights=(256, 512), steps=100)}


def measure_video() -> dict:
    import torch

    from benchmarks.bench_video import run
    from btnk_env.models.hardware import cpu_tier

    cases = (("base", (224, 224), (1, 8)), ("small", (256, 512), (1, 8)))
    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name},
            "video": run("cpu", ("fp32",), cases=cases, frames=16, reps=2)}


def measure_train() -> dict:
    import torch

    from benchmarks.bench_train import bench_in_subprocess
    from btnk_env.models.hardware import cpu_tier

    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name},
            "train": [bench_in_subprocess(preset="small", batch_size=8, img_size=(224, 224), steps=3, precision="fp32", device="cpu")]}


def measure_demo() -> dict:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "btnk_env", "demo", "--out", tmp], cwd=ROOT, check=True)
        wall = time.perf_counter() - start
        demo = json.loads((Path(tmp) / "report.json").read_text())
    demo.pop("files", None)
    from btnk_env.models.hardware import cpu_tier

    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name}, "demo": {**demo, "wall_s": round(wall, 1)}}


def measure_collect() -> dict:
    import torch

    from benchmarks.bench_collect import bench_collect
    from btnk_env.models.hardware import cpu_tier

    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name}, "collect": bench_collect(frames=1200, rounds=2)}


def measure_sb3() -> dict:
    import torch

    from benchmarks.bench_sb3 import benchmark_sb3
    from btnk_env.models.hardware import cpu_tier

    torch.set_num_threads(1)
    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name}, "sb3": benchmark_sb3()}


#: ``examples/train_ppo_latents.py`` runs of docs/wrappers.md: the shipped agent re-checked, the tint task trained
PPO_COMMANDS = {
    "rooms": "--task rooms --height 128 --model panorama-rooms-small --load btnk_env/agents/ppo_single_room/ppo_latents.zip"
             " --timesteps 0 --eval-episodes 30",
    "tint": "--task tint --timesteps 20000 --eval-episodes 50",
}


def measure_ppo() -> dict:
    import torch

    from btnk_env.models.hardware import cpu_tier

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, args in PPO_COMMANDS.items():
            subprocess.run([sys.executable, "examples/train_ppo_latents.py", *args.split(), "--save", f"{tmp}/{task}"],
                           cwd=ROOT, check=True)
            results[task] = json.loads((Path(tmp) / task / "results.json").read_text())
            results[task]["args"].pop("save")
    return {"torch": torch.__version__, "cpu_tier": {"name": cpu_tier().name}, "ppo": results,
            "commands": [f"python examples/train_ppo_latents.py {args}" for args in PPO_COMMANDS.values()]}


#: the commands of docs/world_model.md: held-out and training episodes of the single-room world, their latents
#: from the shipped encoder, the shipped dynamics model evaluated against copy-last and ridge
WORLD_MODEL_COMMANDS = (
    "collect --mode episodes --out train --world single_room --policy random --seeds 0 --num-episodes {train}"
    " --height 128 --max-steps 64 --no-progress",
    "collect --mode episodes --out heldout --world single_room --policy random --seeds 1000 --num-episodes {heldout}"
    " --height 128 --max-steps 64 --no-progress",
    "encode train --out train_latents --no-progress",
    "encode heldout --out heldout_latents --no-progress",
    "eval-dynamics --model panorama-rooms-small-dynamics --data heldout_latents --train-data train_latents --json eval.json",
)


def measure_world_model(train: int = 100, heldout: int = 20) -> dict:
    """``btnk-env eval-dynamics``'s report on freshly recorded held-out layouts (see :data:`WORLD_MODEL_COMMANDS`)."""
    with tempfile.TemporaryDirectory() as tmp:
        for command in WORLD_MODEL_COMMANDS:
            subprocess.run([sys.executable, "-m", "btnk_env", *command.format(train=train, heldout=heldout).split()],
                           cwd=tmp, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        report = json.loads((Path(tmp) / "eval.json").read_text())
    return {"world_model": report, "episodes": {"train": train, "heldout": heldout},
            "commands": [f"btnk-env {c.format(train=train, heldout=heldout)}" for c in WORLD_MODEL_COMMANDS]}


MEASURES: Dict[str, Tuple[str, Callable[[], dict]]] = {
    "quick": ("python -m benchmarks --quick", measure_quick),
    "docs": ("python -m benchmarks.report measure docs", measure_docs),
    "demo": ("btnk-env demo", measure_demo),
    "video": ("python -m benchmarks.report measure video", measure_video),
    "train": ("python -m benchmarks.report measure train", measure_train),
    "world_model": ("python -m benchmarks.report measure world_model", measure_world_model),
    "collect": ("python -m benchmarks.report measure collect", measure_collect),
    "sb3": ("python -m benchmarks.report measure sb3", measure_sb3),
    "ppo": ("python -m benchmarks.report measure ppo", measure_ppo),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a table is stale")
    sub = parser.add_subparsers(dest="command")
    m = sub.add_parser("measure", help="run benchmarks and write their JSON under docs/benchmarks/")
    m.add_argument("names", nargs="+", choices=sorted(MEASURES))
    args = parser.parse_args(argv)
    if args.command == "measure":
        from btnk_env.models.files import atomic_write_text

        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in args.names:
            command, run = MEASURES[name]
            figures = _stamped(command, run)
            atomic_write_text(RESULTS / f"{name}.json", json.dumps(figures, indent=2, default=str) + "\n")
            print(f"wrote {RESULTS / f'{name}.json'}")
        return 0
    return update(args.check)


if __name__ == "__main__":
    sys.exit(main())
