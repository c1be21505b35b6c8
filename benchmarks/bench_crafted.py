"""Peak memory (ru_maxrss) of crafted inputs: small files that declare huge sizes.

Run: ``python benchmarks/bench_crafted.py [--json out.json] [--before old.json] [--timeout 300]``.
Each case runs in a fresh subprocess (so its peak is its own) with the checkout this script belongs
to, or with ``--code DIR`` (another checkout, to compare: run this script with that checkout's
Python); ``baseline`` is the same imports without the input. A case prints its peak RSS in MiB,
the wall time and how it ended (refused with one line, or not). ``--before`` embeds an earlier
run's JSON (the other checkout's) so that one file holds both columns of the docs' table
(``benchmarks/report.py`` view ``crafted``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PRELUDE = r'''
import io, json, os, resource, sys, tarfile, time
from pathlib import Path
import numpy as np
import torch
tmp = Path(sys.argv[1])
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
'''

CASES = {
    "baseline": "pass",
    "png_1bit_13000x13000": r'''
from PIL import Image
Image.new("1", (13000, 13000)).save(tmp / "big.png")
print("file_bytes", (tmp / "big.png").stat().st_size, file=sys.stderr)
from btnk_env.training.datasets import decode_image
start = peak()
decode_image(tmp / "big.png")
''',
    "sparse_tar_member_1GiB": r'''
from btnk_env.formats.shards import ShardWriter
from btnk_env import formats as F
src = tmp / "set"
with ShardWriter(src, image_size=(4, 8), max_count=4) as w:
    w.write(F.sample_key(0), np.zeros((4, 8, 3), np.uint8), {"index": 0})
shard = src / F.shard_name(0)
raw = bytearray(shard.read_bytes())
with tarfile.open(shard) as tar:
    m = tar.getmembers()[0]  # the PNG member: made a GNU sparse file of 1 GiB holding its 512 bytes at the end
h = bytearray(raw[m.offset:m.offset + 512])
real = 1 << 30
h[156] = ord("S")
h[124:136] = f"{512:011o}\0".encode()
h[386:398] = f"{real - 512:011o}\0".encode(); h[398:410] = f"{512:011o}\0".encode()
h[483:495] = f"{real:011o}\0".encode()
h[148:156] = b" " * 8
h[148:156] = f"{sum(h):06o}\0 ".encode()
raw[m.offset:m.offset + 512] = h
shard.write_bytes(bytes(raw))
index = json.loads((src / F.INDEX).read_text()); index["shards"][0]["bytes"] = len(raw)
(src / F.INDEX).write_text(json.dumps(index))
print("file_bytes", len(raw), file=sys.stderr)
from btnk_env.cli import main
rc = main(["collect", "--convert", str(src), "--out", str(tmp / "out"), "--no-progress"])
if rc: raise SystemExit(rc)
''',
    "dynamics_config_width_16384": r'''
from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics
d = tmp / "dyn"
LatentDynamics(DynamicsConfig()).save_pretrained(d)
c = json.loads((d / "config.json").read_text()); c["width"] = 16384
(d / "config.json").write_text(json.dumps(c))
LatentDynamics.from_pretrained(d)
''',
    "mae_config_embed_dim_12288": r'''
from btnk_env.models import BtnkMAE
d = tmp / "mae"
BtnkMAE("test", img_size=(16, 32)).save_pretrained(d)
m = json.loads((d / "config.json").read_text())
m["config"].update(embed_dim=12288, num_heads=12, decoder_embed_dim=12288, decoder_num_heads=12)
(d / "config.json").write_text(json.dumps(m))
BtnkMAE.from_pretrained(d)
''',
    "episodes_num_steps_1e8": r'''
from btnk_env.formats.episodes import Episode, EpisodeFolder, EpisodeFolderWriter
root = tmp / "eps"
w = EpisodeFolderWriter(root, (16, 32), "Discrete(3)", {"policy": "random"})
ep = Episode(np.zeros((3, 16, 32, 3), np.uint8), np.array([0, 1]), np.zeros(2), np.array([False, True]),
             np.zeros(2, bool), np.zeros((3, 3)), np.zeros(3), seed=0, scene="s", goal=np.zeros(3))
w.write(0, ep); w.close()
rec = json.loads((root / "episodes.jsonl").read_text()); rec["num_steps"] = 100_000_000
(root / "episodes.jsonl").write_text(json.dumps(rec) + "\n")
data = EpisodeFolder(root)
list(data.frame_files(0))
''',
}

RUNNER = r'''
t0 = time.perf_counter()
outcome = "accepted"
try:
{body}
except SystemExit as e:
    outcome = f"exit {{e.code}}"
except Exception as e:
    from btnk_env.models.errors import explain
    line = explain(e)
    outcome = ("refused: " + line[:150]) if line else f"traceback: {{type(e).__name__}}: {{str(e)[:120]}}"
print(json.dumps({{"peak_rss_mib": round(peak(), 1), "seconds": round(time.perf_counter() - t0, 2), "outcome": outcome}}))
'''


def run_case(name: str, code: Path, timeout: float) -> dict:
    body = "\n".join("    " + line for line in CASES[name].strip("\n").splitlines()) or "    pass"
    script = PRELUDE + RUNNER.format(body=body)
    with tempfile.TemporaryDirectory(prefix="crafted") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-c", script, tmp], cwd=code, capture_output=True, text=True,
                                  timeout=timeout, env={"PYTHONPATH": str(code), "OMP_NUM_THREADS": "1",
                                                        "PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return {"outcome": f"still running after {timeout:.0f} s (killed)"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"outcome": f"died (status {proc.returncode}): {proc.stderr[-200:]}"}
    sizes = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("file_bytes")]
    if sizes:
        result["input_bytes"] = int(sizes[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to run")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--before", type=Path, default=None, help="an earlier run's JSON to embed (the old code)")
    args = parser.parse_args()
    def run() -> dict:
        results = {}
        for name in args.cases:
            results[name] = run_case(name, args.code, args.timeout)
            print(f"{name:32s} {json.dumps(results[name])}", flush=True)
        return {"code": str(args.code), "git": _git_head(args.code), "timeout_s": args.timeout, "cases": results}

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, too
    from benchmarks.report import _stamped

    figures = _stamped(" ".join(["python", "benchmarks/bench_crafted.py", *sys.argv[1:]]), run)
    if args.before:
        figures["before"] = json.loads(args.before.read_text())
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _git_head(code: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


if __name__ == "__main__":
    main()
