"""This project against the original btnk_mae, side by side in one process.

The original code (github grasp-lyrl/btnk_mae at 0fa9f5f, unmodified) lies in
``../shared/upstream`` beside a checkout of the project (``BTNK_UPSTREAM`` overrides); users'
machines do not have it, and then the comparison is skipped with a note. Both models get the
same weights (this project's, converted with :func:`btnk_env.models.checkpoint.to_original`); each
round times one encode and one decode of every contender at every batch size, in turn, so
that load changes on a shared machine hit all of them alike. Two ratios to the original are
reported: best round over best round, and the median over rounds of each round's own ratio
(paired: a slow spell of the machine slows both sides of that round, so it cancels; the target
"at least as fast" is checked on it).
Outputs are compared too (largest absolute difference of the latent and the decoded patches).

Usage::

    python -m benchmarks.bench_original                       # base, 224x224, batch 1 and 8
    python -m benchmarks.bench_original --kernels default plain fused --rounds 7
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence

import torch

from btnk_env.models import BtnkMAE
from btnk_env.models.checkpoint import to_original
from btnk_env.models.files import atomic_write_text
from btnk_env.models.kernels import fused_kernels

UPSTREAM = Path(os.environ.get("BTNK_UPSTREAM", Path(__file__).resolve().parents[2] / "shared" / "upstream"))

#: Our contenders: ``default`` is what the package picked for this machine, ``plain`` and
#: ``fused`` force one kernel path (:func:`btnk_env.models.kernels.fused_kernels`).
KERNEL_MODES = ("default", "plain", "fused")


def original_available() -> Optional[str]:
    """``None`` where the original code can be imported, else why not (one line)."""
    if not (UPSTREAM / "btnk_mae" / "__init__.py").is_file():
        return f"the original code is not at {UPSTREAM} (set BTNK_UPSTREAM to a checkout of grasp-lyrl/btnk_mae)"
    try:
        _import_original()
    except ImportError as err:
        return f"the original code does not import: {err}"
    return None


def _import_original():
    if str(UPSTREAM) not in sys.path:
        sys.path.insert(0, str(UPSTREAM))
    import btnk_mae

    return btnk_mae


def original_pair(model: BtnkMAE, preset: str):
    """The original ``BtnkMAEEncoder``/``BtnkMAEDecoder`` of ``preset``, in eval mode, holding
    ``model``'s weights (a ``base``/``large``/``huge`` model at 224x224)."""
    btnk_mae = _import_original()
    state = to_original(model.state_dict(), model.config)
    encoder = btnk_mae.BtnkMAEEncoder(model_size=preset, act_fn=model.config.act_fn).eval()
    decoder = btnk_mae.BtnkMAEDecoder(model_size=preset).eval()
    for part, module in (("enc_model", encoder), ("dec_model", decoder)):
        missing, unexpected = module.load_state_dict(state[part], strict=False)
        if missing or unexpected:
            raise RuntimeError(f"original {part}: missing {missing}, unexpected {unexpected}")
    return encoder, decoder


@contextlib.contextmanager
def _kernels(mode: str) -> Iterator[None]:
    if mode == "default":
        yield
    else:
        with fused_kernels(mode == "fused"):
            yield


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def versus_original(preset: str = "base", batches: Sequence[int] = (1, 8), rounds: int = 5,
                    kernels: Sequence[str] = ("default",), seed: int = 0) -> dict:
    """Encode and decode images/s of the original and of this project (each ``kernels`` mode),
    CPU, float32, interleaved, best of ``rounds``; ratios to the original; output differences.

    Returns ``{"skipped": reason}`` where the original is not available.
    """
    reason = original_available()
    if reason is not None:
        return {"skipped": reason}
    for mode in kernels:
        if mode not in KERNEL_MODES:
            raise ValueError(f"kernel mode must be one of {KERNEL_MODES}, got {mode!r}")
    torch.manual_seed(seed)
    ours = BtnkMAE(preset).eval()
    encoder, decoder = original_pair(ours, preset)
    xs = {b: torch.randn(b, 3, *ours.img_size) for b in batches}
    contenders: Dict[str, Dict[str, Callable[[torch.Tensor], torch.Tensor]]] = {
        "original": {"encode": lambda x: encoder(x)[:, 0], "decode": decoder},
    }
    for mode in kernels:
        def enc(x, mode=mode):
            with _kernels(mode):
                return ours.encode(x)

        def dec(z, mode=mode):
            with _kernels(mode):
                return ours.decode_patches(z)

        contenders[f"ours {mode}"] = {"encode": enc, "decode": dec}
    times: Dict[tuple, list] = {}
    diffs: Dict[str, float] = {}
    with torch.inference_mode():
        zs = {b: contenders["original"]["encode"](x) for b, x in xs.items()}
        for name, fns in contenders.items():  # warm-up (packs weights) and output check
            for b, x in xs.items():
                z, patches = fns["encode"](x), fns["decode"](zs[b])
                if name != "original":
                    diffs[f"{name} latent"] = max(diffs.get(f"{name} latent", 0.0), (z - zs[b]).abs().max().item())
                    ref = contenders["original"]["decode"](zs[b])
                    diffs[f"{name} patches"] = max(diffs.get(f"{name} patches", 0.0), (patches - ref).abs().max().item())
        for _ in range(rounds):
            for b in batches:
                for name, fns in contenders.items():
                    for op, arg in (("encode", xs[b]), ("decode", zs[b])):
                        times.setdefault((name, op, b), []).append(_once(lambda: fns[op](arg)))
    best = {key: min(ts) for key, ts in times.items()}
    rows = []
    for b in batches:
        for name in contenders:
            row = {"contender": name, "batch": b}
            for op in ("encode", "decode"):
                row[f"{op}_img_s"] = b / best[(name, op, b)]
                row[f"{op}_vs_original"] = best[("original", op, b)] / best[(name, op, b)]
                # the same round's original / ours, median over rounds: drift of a shared machine cancels
                row[f"{op}_paired"] = statistics.median(
                    o / t for o, t in zip(times[("original", op, b)], times[(name, op, b)]))
            rows.append(row)
    return {"preset": preset, "size": list(ours.img_size), "rounds": rounds, "threads": torch.get_num_threads(),
            "rows": rows, "max_abs_diff": diffs}


def format_table(result: dict) -> str:
    """The comparison as a text table (one line per contender and batch size)."""
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    lines = [f"{'':<16}{'batch':>6}{'enc img/s':>11}{'vs orig':>9}{'paired':>8}{'dec img/s':>11}{'vs orig':>9}{'paired':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['contender']:<16}{r['batch']:>6}{r['encode_img_s']:>11.2f}{r['encode_vs_original']:>8.2f}x"
                     f"{r['encode_paired']:>7.2f}x{r['decode_img_s']:>11.2f}{r['decode_vs_original']:>8.2f}x"
                     f"{r['decode_paired']:>7.2f}x")
    lines.append("vs orig: best of rounds over best of rounds; paired: median over rounds of the same round's ratio")
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in result["max_abs_diff"].items())
    lines.append(f"max |ours - original|: {diffs}")
    return "\n".join(lines)


def main() -> None:
    from benchmarks.common import cpu_tier_line

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_original", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kernels", nargs="+", default=["default"], choices=KERNEL_MODES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_tier_line())
    result = versus_original(args.preset, args.batches, args.rounds, args.kernels)
    print(format_table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
