"""Render the tables of ``docs/speed.md`` from benchmark JSON files (never typed by hand).

Usage::

    python -m benchmarks.render_speed benchmarks/results/engines-*.json benchmarks/results/rl-loop-*.json \\
        benchmarks/results/encode-pipeline-*.json > /tmp/tables.md

Each file is recognised by its ``schema`` (``btnk-engines/1``, ``btnk-rl-loop/1``) or, for
``benchmarks/bench_encode.py`` output, by its ``fraction_of_bare`` key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _where(doc: dict, path: Path) -> str:
    m = doc.get("machine", {})
    machine = m if isinstance(m, str) else f"{m.get('cpu')}, {m.get('cores')} cores, tier {m.get('tier')} " \
                                          f"({'emulated' if m.get('emulated') else 'real'})"
    return f"*{machine}; {doc.get('when', '?')}; machine shared with other jobs; from `{path.as_posix()}`*"


def engines_tables(doc: dict, path: Path) -> str:
    out = [f"#### {doc['preset']} {doc['size'][0]}x{doc['size'][1]}: images/s (median of {doc['rounds']} interleaved "
           f"rounds), spread of the rounds and paired ratio to the torch path", "", _where(doc, path), ""]
    for run in doc["runs"]:
        out += [f"Load: **{run['load']}** (torch path on {run.get('torch_threads', doc['threads'])} threads: "
                f"{run.get('threads_why', '')}; engines on their own default threads)", "",
                "| op | batch | precision | torch | onnxruntime | openvino | default runs | default / fastest engine |",
                "|---|---|---|---|---|---|---|---|"]
        cells: dict = {}
        for r in run["rows"]:
            cells.setdefault((r["op"], r["batch"], r["precision"]), {})[r["backend"]] = r
        defaults = {(d["op"], d["batch"], d["precision"]): d for d in run.get("default_vs_engines", [])}
        for (op, batch, precision), by in sorted(cells.items()):
            def cell(name):
                r = by.get(name)
                if r is None:
                    return "-"
                text = f"{r['img_s_median']:.2f}, spread {r['spread']:.2f}"
                return text if name == "torch" else f"{text}, {r['paired_vs_torch']:.2f}x"
            verdict = defaults.get((op, batch, precision))
            ours = "-" if verdict is None else verdict["default_runs"]
            if "default" in by:
                ours += f" ({cell('default')})"
            if verdict is None:
                versus = "-"
            else:
                versus = f"{verdict['default_over_fastest']:.2f}x ({verdict['fastest_engine']})"
            out.append(f"| {op} | {batch} | {precision} | {cell('torch')} | {cell('onnxruntime')} | {cell('openvino')} "
                       f"| {ours} | {versus} |")
        out += [f"- {k}: {v}" for k, v in run.get("skipped", {}).items()]
        out.append("")
    out += default_summary(doc)
    out += ["Output error against the torch path in fp32:", "", "| backend | precision | latent max abs diff | "
            "patches max abs diff | latent cosine min |", "|---|---|---|---|---|"]
    out += [f"| {e['backend']} | {e['precision']} | {e['latent_max_abs_diff']:.1e} | {e['patches_max_abs_diff']:.1e} | "
            f"{e['latent_cosine_min']:.5f} |" for e in doc["errors"]]
    if doc.get("busy_over_idle"):
        out += ["", "Busy / idle images/s (median rounds), encode:", "", "| load | batch | precision | backend | busy/idle |",
                "|---|---|---|---|---|"]
        out += [f"| {b['load']} | {b['batch']} | {b['precision']} | {b['backend']} | {b['ratio']:.2f} |"
                for b in doc["busy_over_idle"] if b["op"] == "encode"]
    return "\n".join(out) + "\n"


def default_summary(doc: dict) -> list:
    """One generated line per load: in how many cells this package's default was at least as fast as
    the fastest engine (paired, within ``bench_engines.NOISE``), and which cells were not."""
    from benchmarks.bench_engines import NOISE

    out = []
    for run in doc["runs"]:
        cells = run.get("default_vs_engines")
        if not cells:
            continue
        short = [c for c in cells if c["default_over_fastest"] < 1 - NOISE]
        said = "; ".join(f"{c['op']} b{c['batch']} {c['precision']} ({c['default_runs']}: "
                         f"{c['default_over_fastest']:.2f}x {c['fastest_engine']})" for c in short)
        out.append(f"- Load **{run['load']}**: our default at least as fast as the fastest engine (paired, "
                   f"{NOISE:.0%} noise allowed) in {len(cells) - len(short)} of {len(cells)} cells"
                   + (f"; not in: {said}" if short else ""))
    return out + ([""] if out else [])


def rl_loop_table(doc: dict, path: Path) -> str:
    out = [f"#### RL loop: {doc['envs']} AsyncVectorEnv workers rendering {doc['height']}x{2 * doc['height']}, "
           f"`{doc['model']}`, env steps/s", "", _where(doc, path), "",
           f"Default threads: {doc['default_threads']} ({doc['threads_why']})", "",
           "| encoder threads | steps/s (median) | best | spread | default / this (paired) |", "|---|---|---|---|---|"]
    out += [f"| {r['threads']} | {r['steps_s_median']:.1f} | {r['steps_s_best']:.1f} | {r['spread']:.2f} | "
            f"{r['default_over_this_paired']:.2f} |" for r in doc["rows"]]
    return "\n".join(out) + "\n"


def encode_table(doc: dict, path: Path) -> str:
    out = [f"#### `btnk-env encode` against bare `model.encode` ({doc['model']}, {doc['frames']} frames, batch "
           f"{doc['batch']}, {doc['precision']}, {doc['torch_threads']} torch threads)", "", _where(doc, path), "",
           "| pipeline | frames/s (best) | fraction of bare (best) | fraction of bare (paired) |", "|---|---|---|---|"]
    for name, rate in doc["frames_per_s"].items():
        frac = doc["fraction_of_bare"].get(name)
        paired = doc.get("paired_fraction_of_bare", {}).get(name)
        out.append(f"| {name} | {rate:.1f} | {'' if frac is None else f'{frac:.2f}'} | "
                   f"{'' if paired is None else f'{paired:.2f}'} |")
    return "\n".join(out) + "\n"


def render(paths, root: Path = Path(".")) -> str:
    """The tables of the benchmark JSON files ``paths`` (named as given, read under ``root``)."""
    parts = []
    for p in map(Path, paths):
        doc = json.loads((root / p).read_text())
        if doc.get("schema") == "btnk-engines/1":
            parts.append(engines_tables(doc, p))
        elif doc.get("schema") == "btnk-rl-loop/1":
            parts.append(rl_loop_table(doc, p))
        elif "fraction_of_bare" in doc:
            parts.append(encode_table(doc, p))
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(sys.argv[1:]))
