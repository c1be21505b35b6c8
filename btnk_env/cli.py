"""The ``btnk-env`` command line.

Each subcommand lives in its own module, imported only when that subcommand runs, so that
``btnk-env --help`` is instant and a missing optional dependency of one subcommand never
breaks another. A subcommand module exposes:

- ``add_arguments(parser: argparse.ArgumentParser) -> None``
- ``run(args: argparse.Namespace) -> int | None`` (the exit status; ``None`` means 0)

Errors take one path (:func:`explain`): an input error (a :class:`models.errors.BtnkEnvError`, a
``ValueError``/``TypeError``/``KeyError`` raised by a check in this project's own code) or an
expected operating-system error (no space left, permission denied, read-only file system, a file
or folder in the way, a missing file) is printed as one line, ``btnk-env <command>: <problem>.
<fix>``, with exit status 2. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("btnk_env.demo", "run the demo of the main job on the built-in defaults"),
    "info": ("btnk_env.info", "print versions, devices and the model presets"),
    "collect": ("btnk_env.collection.collect", "walk a panorama environment and write a panorama dataset"),
    "train": ("training.cli", "train or finetune a bottleneck MAE from a config"),
    "eval": ("training.evaluate", "report PSNR/SSIM of a checkpoint on an image folder"),
    "video": ("btnk_env.video.cli", "decode a latent rollout into a video"),
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
    try:
        status = module.run(args)
    except KeyboardInterrupt:
        print(f"btnk-env {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - expected errors become one line, the rest re-raise
        line = explain(err)
        if line is None:
            raise
        print(f"btnk-env {name}: {line}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


# ---------------------------------------------------------------------------- the error path
_ROOT = Path(__file__).resolve().parents[1]
_OUR_CODE = tuple(str(_ROOT / pkg) + "/" for pkg in ("btnk_env", "models", "training"))

#: errno -> (problem, fix) of the operating-system errors a user causes or can fix.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "Free some space or write to another disk"),
    errno.EDQUOT: ("disk quota exceeded", "Free some space or write to another disk"),
    errno.EACCES: ("permission denied", "Choose a path you can write (or read)"),
    errno.EPERM: ("operation not permitted", "Choose a path you can write (or read)"),
    errno.EROFS: ("read-only file system", "Choose a writable folder"),
    errno.EEXIST: ("already exists", "Choose a new name or remove it yourself"),
    errno.ENOTEMPTY: ("folder is not empty", "Choose a new folder name"),
    errno.EISDIR: ("is a folder", "Give a file name"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "Fix the path"),
    errno.ENOENT: ("no such file or folder", "Check the path"),
    errno.ENAMETOOLONG: ("file name too long", "Choose a shorter name"),
}


def _raised_in_our_code(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is in btnk_env/, models/ or training/."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_OUR_CODE)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def explain(err: BaseException) -> Optional[str]:
    """The one line for an expected error (problem and fix), or ``None`` for a bug.

    Example:
        >>> explain(OSError(errno.ENOSPC, "No space left on device", "out/x.png"))
        'out/x.png: no space left on the device. Free some space or write to another disk.'
        >>> explain(ZeroDivisionError("division by zero")) is None
        True
    """
    from models.errors import BtnkEnvError

    if isinstance(err, BtnkEnvError):
        return _one_line(str(err))
    if isinstance(err, OSError):
        known = _OS_ERRORS.get(err.errno) if err.errno is not None else None
        if known is not None:
            problem, fix = known
            if err.strerror and err.strerror != os.strerror(err.errno):
                return _one_line(err.strerror)  # a message of ours, with its fix
            where = err.filename
            return _one_line(f"{where}: {problem}. {fix}" if where is not None else f"{problem}. {fix}")
        if err.errno is None and _raised_in_our_code(err):
            return _one_line(str(err))
        return None
    if isinstance(err, (ValueError, TypeError, KeyError)) and _raised_in_our_code(err):
        return _one_line(err.args[0] if isinstance(err, KeyError) and err.args else str(err))
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
