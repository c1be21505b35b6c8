"""``btnk-env info``: versions, devices and model presets, for bug reports and set-up checks."""

from __future__ import annotations

import argparse
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def collect_info() -> dict:
    """Versions of the main dependencies, the compute devices, and the model presets."""
    import gymnasium
    import torch

    from btnk_env import __version__
    from models.config import PRESETS
    from models.hub import BUNDLED, RELEASES

    return {
        "btnk_env": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "cpu_bf16": bool(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() in ("AVX512", "AMX")),
        "presets": {name: f"D={p['embed_dim']}, depth {p['depth']}, patch {p['patch_size']}" for name, p in PRESETS.items()},
        "releases": sorted(RELEASES),
        "bundled_models": sorted(BUNDLED),
    }


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        import json

        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, text in value.items():
                print(f"  {name:<8} {text}")
        else:
            print(f"{key.ljust(width)}  {value}")
    return 0
