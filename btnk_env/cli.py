"""The ``btnk-env`` command line.

Each subcommand lives in its own module, imported only when that subcommand runs, so that
``btnk-env --help`` is instant and a missing optional dependency of one subcommand never
breaks another. A subcommand module exposes:

- ``add_arguments(parser: argparse.ArgumentParser) -> None``
- ``run(args: argparse.Namespace) -> int | None`` (the exit status; ``None`` means 0)

Errors take one path (:func:`btnk_env.models.errors.explain`): an input error (a :class:`btnk_env.models.errors.BtnkEnvError`, a
``ValueError``/``TypeError``/``KeyError`` raised by a check in this project's own code) or an
expected operating-system error (no space left, permission denied, read-only file system, a file
or folder in the way, a missing file) is printed as one line, ``btnk-env <command>: <problem>.
<fix>``, with exit status 2. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence


# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("btnk_env.demo", "run the demo of the main job on the built-in defaults"),
    "info": ("btnk_env.info", "print versions, devices and the model presets"),
    "config": ("btnk_env.recipes", "list, show or copy the shipped training configs"),
    "collect": ("btnk_env.collection.collect", "walk a panorama environment and write a panorama dataset"),
    "train": ("btnk_env.training.cli", "train or finetune a bottleneck MAE from a config"),
    "eval": ("btnk_env.training.evaluate", "report PSNR/SSIM of a checkpoint on an image folder"),
    "video": ("btnk_env.video.cli", "decode a latent rollout into a video"),
    "export-scene": ("btnk_env.envs.export_scene", "export a built-in apartment as a .glb scene that Habitat-Sim loads"),
    "pointnav": ("btnk_env.envs.pointnav", "write a habitat-lab PointNav episode dataset (.json.gz) for a Habitat scene"),
    "encode": ("btnk_env.training.encode", "encode a panorama or episode dataset into latents (resumable, torchrun)"),
    "train-dynamics": ("btnk_env.training.dynamics", "train a latent dynamics model (world model) on latent episodes"),
    "eval-dynamics": ("btnk_env.training.dynamics_eval", "evaluate a dynamics model open loop vs copy-last and ridge"),
    "imagine": ("btnk_env.imagine", "imagine open loop with a dynamics model and write a truth/imagined/error video"),
    "train-goal-distance": ("btnk_env.training.goal_distance", "train the goal-distance head (the planning cost) in the built-in world"),
    "plan": ("btnk_env.planning.cli", "plan to a goal view in imagination and act; video of the plans, or an evaluation"),
}


def _usage() -> str:
    lines = ["usage: btnk-env <command> [options]", "", "commands:"]
    width = max(len(name) for name in SUBCOMMANDS)
    for name, (_, help_text) in SUBCOMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines += ["", "Run 'btnk-env <command> --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``btnk-env`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from btnk_env import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(f"btnk-env: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_text = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            print(f"btnk-env {name}: this command is not available in this version.", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"btnk-env {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from btnk_env.models.errors import run_cli  # here, not at the top: importing models imports torch (~1.4 s)

    return run_cli(module.run, args, f"btnk-env {name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
