"""The shipped training configs (``configs/*.yaml``), from a checkout or an installed wheel, and
``btnk-env config list|show NAME|copy NAME DEST``.

In a wheel they are the package data of ``btnk_env.configs`` (``setup.cfg`` maps that package to
the repository's ``configs/`` folder); in a checkout, that folder itself.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from btnk_env.models.errors import BtnkEnvError

__all__ = ["config_dir", "config_names", "config_path"]


def config_dir() -> Path:
    """The folder of the shipped configs (``btnk_env/configs`` installed, ``configs/`` in a checkout)."""
    spec = importlib.util.find_spec("btnk_env.configs")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[1] / "configs"


def config_names() -> list[str]:
    """Names of the shipped configs (file stems), sorted."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def config_path(name: str) -> Path:
    """The file of shipped config ``name`` (``smoke_cpu`` or ``smoke_cpu.yaml``); an error naming
    the known ones otherwise."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = config_dir() / f"{stem}.yaml"
    if "/" in stem or not path.is_file():
        raise BtnkEnvError(f"no shipped config {name!r}; the shipped configs: {', '.join(config_names())}")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env config``."""
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the shipped configs, with their first comment line")
    show = sub.add_parser("show", help="print a shipped config")
    show.add_argument("name")
    copy = sub.add_parser("copy", help="copy a shipped config to a file you own and can edit")
    copy.add_argument("name")
    copy.add_argument("dest", type=Path, help="a new file, or an existing folder to put NAME.yaml in")


def run(args: argparse.Namespace) -> int:
    """Run ``btnk-env config``."""
    if args.action == "list":
        for name in config_names():
            first = next((line.lstrip("# ").strip() for line in config_path(name).read_text().splitlines()
                          if line.startswith("#")), "")
            print(f"{name:<28} {first}")
        print(f"(in {config_dir()}; btnk-env train --config $(btnk-env config copy NAME .) ...)")
        return 0
    path = config_path(args.name)
    if args.action == "show":
        print(path.read_text(), end="")
        return 0
    from btnk_env.models.files import atomic_write_text

    dest = args.dest / path.name if args.dest.is_dir() else args.dest
    if dest.exists():
        raise BtnkEnvError(f"{dest} exists; copy never overwrites: choose another destination")
    atomic_write_text(dest, path.read_text())
    print(dest)
    return 0
