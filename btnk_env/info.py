"""``btnk-env info``: versions, devices, the CPU tier and what was chosen for it (kernels, what
``precision="auto"`` means), and the model presets, for bug reports and set-up checks."""

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
    from btnk_env.models.config import PRESETS
    from btnk_env.models.hardware import cpu_name, cpu_tier
    from btnk_env.models.hub import BUNDLED, RELEASES
    from btnk_env.models.kernels import kernel_choice
    from btnk_env.models.backends import backend_choice
    from btnk_env.models.precision import auto_precision
    from btnk_env.models.threads import inference_threads

    tier = cpu_tier()
    fused, why = kernel_choice()
    threads, threads_why = inference_threads()
    backend = {p: backend_choice(p) for p in ("fp32", "bf16", "int8")}
    auto = {"cpu": auto_precision("cpu")}
    if torch.cuda.is_available():
        auto["cuda"] = auto_precision("cuda")

    return {
        "btnk_env": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_tier": tier.name,
        "cpu_capability": tier.capability,
        "cpu_onednn_limit": tier.onednn_limit,
        "cpu_bf16": tier.bf16_units,
        "cpu_tier_lowered": tier.lowered,
        "cpu_kernels": f"{'fused oneDNN, packed weights' if fused else 'plain PyTorch'} ({why})",
        "precision_auto": ", ".join(f"{device}: {name}" for device, name in auto.items()),
        "inference_threads": f"{threads} ({threads_why})",
        "backend_auto": " | ".join(f"{p}: {route.describe()} ({route.why})" for p, route in backend.items()),
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
