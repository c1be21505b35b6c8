"""The figures of docs/planning.md from ``btnk-env plan --eval`` reports.

1. The table: several evaluation reports over the same layouts (e.g. the planners in one process, the
   policies in another) joined into ``docs/planning_eval.json`` and its bar chart.
2. The curve: success on validation layouts against what was varied (training layouts of the
   goal-distance head, its regularisation, the planner's samples and horizon, goal rolls) into
   ``docs/planning_curve.json`` and its chart. Each point is one evaluation report; the head it used is
   described from the head's training folder (``config.yaml`` beside ``final/``: width, steps, weight
   decay, and the layouts of its ``data.cache`` files, named ``.../A-B/data.npz``).

Usage::

    python -m benchmarks.plan_report table runs/test/planners.json runs/test/baselines.json
    python -m benchmarks.plan_report curve "training layouts=runs/val/a.json,runs/val/b.json" \\
        "planner=runs/val/c.json,runs/val/d.json"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("planner", "copy-last", "ridge", "ppo", "random", "oracle")


def join_reports(reports: Sequence[Dict]) -> Dict:
    """One report with every method of ``reports`` (the same layouts and step budget), in :data:`ORDER`."""
    first = reports[0]
    for r in reports[1:]:
        if (r["seeds"], r["max_steps"]) != (first["seeds"], first["max_steps"]):
            raise SystemExit(f"reports over other layouts or budgets: {r['seeds']} / {r['max_steps']} "
                             f"against {first['seeds']} / {first['max_steps']}")
    methods = {n: m for r in reports for n, m in r["methods"].items()}
    stamped = next((r for r in reports if "when" in r), first)
    out = {k: v for k, v in first.items() if k != "methods"}
    out.update({k: stamped[k] for k in ("when", "machine") if k in stamped})
    planner = next((r for r in reports if {"planner", "copy-last", "ridge"} & set(r["methods"])), first)
    out["planner"] = planner.get("planner", {})
    out["methods"] = {n: methods[n] for n in sorted(methods, key=lambda n: ORDER.index(n) if n in ORDER else 99)}
    return out


def same_file(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (sha256): the evaluated head is the shipped one."""
    from btnk_env.models.hub import sha256_file

    return a.is_file() and b.is_file() and sha256_file(a) == sha256_file(b)


def head_of(report: Dict) -> Dict:
    """The goal-distance head of a report: its training layouts and settings (from its run folder)."""
    import yaml

    folder = Path(report["planner"]["head"])
    config = folder.parent / "config.yaml"
    if not config.is_file():
        return {"name": str(folder)}
    c = yaml.safe_load(config.read_text())
    caches = (c["data"].get("cache") or "").split(",") if c["data"].get("cache") else []
    ranges = [m.groups() for m in (re.search(r"(\d+)-(\d+)/data\.npz$", p.strip()) for p in caches) if m]
    if not ranges:
        ranges = [tuple(c["data"]["layouts"].split("-"))]
    return {"layouts": sum(int(b) - int(a) + 1 for a, b in ranges),
            "layout_ranges": [f"{a}-{b}" for a, b in ranges],
            "width": c["model"]["width"], "steps": c["train"]["steps"], "weight_decay": c["train"]["weight_decay"]}


def curve_points(groups: Dict[str, List[str]]) -> Dict:
    """``{varied: [report paths]}`` -> the curve's JSON: one point per report."""
    points = []
    for varied, paths in groups.items():
        for path in paths:
            r = json.loads(Path(path).read_text())
            m, p, h = r["methods"]["planner"], r["planner"], head_of(r)
            head = (f"{h['layouts']}, {h['width']}, {h['steps']}, {h['weight_decay']}" if "layouts" in h else h["name"])
            planner = f"{p['solver']} {p['samples']} x {p['iterations']}, horizon {p['horizon']}, goal rolls {p.get('goal_rolls', 1)}"
            value = {"training layouts": h.get("layouts"), "planner": f"{p['samples']} x H{p['horizon']} x R{p.get('goal_rolls', 1)}",
                     "head regularisation": f"w{h.get('width')} s{h.get('steps')} wd{h.get('weight_decay')}",
                     "goal rolls": p.get("goal_rolls", 1)}.get(varied, path)
            points.append({"varied": varied, "value": value, "head": head, "planner": planner,
                           "success_rate": m["success_rate"], "spl": m["spl"], "seeds": r["seeds"],
                           "episodes": r["num_episodes"], "head_config": h, "planner_config": p, "source": path})
    reports = [json.loads(Path(p["source"]).read_text()) for p in points]
    stamped = max((r for r in reports if r.get("when")), key=lambda r: r["when"], default={})  # the last one run
    return {"when": stamped.get("when"), "machine": stamped.get("machine"),
            "command": "python -m benchmarks.plan_report curve " + " ".join(f'"{k}=..."' for k in groups),
            "points": points}


def plot_curve(curve: Dict, path) -> Path:
    """Success rate (dark) and SPL (light) of every point, grouped by what was varied; a PNG."""
    import numpy as np
    from PIL import Image, ImageDraw

    from btnk_env.models.image_file import save_png

    pts = curve["points"]
    groups = list(dict.fromkeys(p["varied"] for p in pts))
    bar, gap, group_gap, h, top, left = 20, 36, 40, 240, 40, 40
    width = left + sum(len([p for p in pts if p["varied"] == g]) * (2 * bar + gap) for g in groups) + group_gap * len(groups) + 20
    img = Image.new("RGB", (max(width, 420), h + 90), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    seeds = pts[0]["seeds"]
    draw.text((left, 6), f"validation layouts {seeds[0]}-{seeds[1]}: success rate (dark), SPL (light)", fill=(0, 0, 0))
    y = lambda v: top + (1 - v) * (h - top)  # noqa: E731
    for v in (0.0, 0.5, 0.8, 1.0):
        draw.line([(left, y(v)), (width - 10, y(v))], fill=(220, 220, 220))
        draw.text((4, y(v) - 6), f"{v:.1f}", fill=(0, 0, 0))
    x = left + 10
    for g in groups:
        draw.text((x, h + 36), g, fill=(0, 0, 120))
        for p in (p for p in pts if p["varied"] == g):
            for j, (key, color) in enumerate((("success_rate", (40, 90, 200)), ("spl", (150, 180, 240)))):
                draw.rectangle([x + j * bar, y(p[key]), x + (j + 1) * bar - 2, y(0)], fill=color)
            draw.text((x - 2, y(p["success_rate"]) - 12), f"{p['success_rate']:.2f}", fill=(0, 0, 0))
            draw.text((x - 4, h + 6), str(p["value"]).replace(" wd", "\nwd"), fill=(0, 0, 0))
            x += 2 * bar + gap
        x += group_gap
    return save_png(Path(path), np.asarray(img))


def main(argv: Sequence[str] | None = None) -> int:
    from btnk_env.models.files import atomic_write_text
    from btnk_env.planning.evaluate import plot

    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_report", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("table", help="join evaluation reports -> docs/planning_eval.json + docs/images/planning_eval.png")
    t.add_argument("reports", nargs="+")
    t.add_argument("--commands", nargs="*", default=[], help="the commands that wrote the reports (recorded)")
    c = sub.add_parser("curve", help="validation reports -> docs/planning_curve.json + docs/images/planning_curve.png")
    c.add_argument("groups", nargs="+", help="VARIED=REPORT,REPORT,...")
    args = parser.parse_args(argv)
    if args.what == "table":
        report = join_reports([json.loads(Path(p).read_text()) for p in args.reports])
        report["command"] = "python -m benchmarks.plan_report table " + " ".join(args.reports)
        report["head_is_shipped"] = same_file(Path(report["planner"].get("head", "")) / "model.safetensors",
                                              ROOT / "models/weights/panorama_rooms_small_goal_distance/model.safetensors")
        report["commands"] = args.commands
        atomic_write_text(ROOT / "docs/planning_eval.json", json.dumps(report, indent=1) + "\n")
        plot(report, ROOT / "docs/images/planning_eval.png")
        print("wrote docs/planning_eval.json, docs/images/planning_eval.png")
    else:
        groups = {}
        for g in args.groups:
            name, _, paths = g.partition("=")
            groups[name] = [p for p in paths.split(",") if p]
        curve = curve_points(groups)
        atomic_write_text(ROOT / "docs/planning_curve.json", json.dumps(curve, indent=1) + "\n")
        plot_curve(curve, ROOT / "docs/images/planning_curve.png")
        print("wrote docs/planning_curve.json, docs/images/planning_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
