"""Packaging: setup.cfg lists every package and data folder (so ``pip install`` has no setuptools
warnings and the wheel holds the weights, the agent and the configs), and ``btnk-env config``
lists, shows and copies the shipped configs (a wheel built from this checkout was checked by hand:
see docs/training.md, Install)."""

from __future__ import annotations

import configparser
import fnmatch

import pytest

from btnk_env.cli import main as cli_main
from btnk_env.recipes import config_dir, config_names, config_path
from tests.conftest import ROOT
from btnk_env.training.config import load_config

DATA_ROOTS = ("models/weights", "btnk_env/agents", "configs")


def _options():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}
    package_dir = dict(line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    package_dir = {k.strip(): v.strip() for k, v in package_dir.items()}
    data = {k: [g.strip() for g in v.split(",")] for k, v in cfg["options.package_data"].items()}
    return packages, package_dir, data


def _folder(package, package_dir):
    """The repository folder of an installed package name (through the longest package_dir prefix)."""
    for prefix in sorted(package_dir, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            return ROOT / package_dir[prefix] / package[len(prefix) + 1:].replace(".", "/")
    return ROOT / package.replace(".", "/")


def _installed_name(folder: str) -> str:
    """``models/weights/x`` -> ``btnk_env.models.weights.x``: the name a repository folder installs as."""
    top, _, rest = folder.partition("/")
    base = {"models": "btnk_env.models", "training": "btnk_env.training", "configs": "btnk_env.configs"}.get(top, top)
    return base + ("." + rest.replace("/", ".") if rest else "")


def test_every_package_and_data_folder_is_listed():
    packages, package_dir, _ = _options()
    found = {_installed_name(p.parent.relative_to(ROOT).as_posix()) for top in ("btnk_env", "models", "training")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    data_folders = set()
    for root in DATA_ROOTS:
        for f in (ROOT / root).rglob("*"):
            if f.is_file() and f.suffix != ".py" and "__pycache__" not in f.parts:
                rel = f.parent.relative_to(ROOT).as_posix()
                data_folders.add(_installed_name(rel))
    parents = {".".join(p.split(".")[:i]) for p in data_folders for i in range(1, p.count(".") + 1)}
    assert packages == found | data_folders | parents, "setup.cfg [options] packages must list every package and data folder"
    assert all(_folder(p, package_dir).is_dir() for p in packages)


def test_package_data_covers_the_weights_the_agent_and_the_configs():
    packages, package_dir, data = _options()
    for root in DATA_ROOTS:
        for f in (ROOT / root).rglob("*"):
            if not f.is_file() or f.suffix == ".py" or "__pycache__" in f.parts:
                continue
            owner = next(p for p in packages if _folder(p, package_dir) == f.parent)
            assert any(fnmatch.fnmatch(f.name, g) for g in data.get(owner, [])), f"{f} is not in the package data of {owner}"


def test_config_list_show_copy(tmp_path, capsys):
    assert config_dir() == ROOT / "configs" and "smoke_cpu" in config_names()
    assert cli_main(["config", "list"]) == 0
    assert "smoke_cpu" in capsys.readouterr().out
    assert cli_main(["config", "show", "smoke_cpu"]) == 0
    assert capsys.readouterr().out == config_path("smoke_cpu").read_text()
    assert cli_main(["config", "copy", "smoke_cpu", str(tmp_path)]) == 0
    copy = tmp_path / "smoke_cpu.yaml"
    assert copy.read_text() == config_path("smoke_cpu").read_text()
    copy.write_text("# mine\n")
    assert cli_main(["config", "copy", "smoke_cpu", str(copy)]) == 2 and copy.read_text() == "# mine\n"  # never overwritten
    assert cli_main(["config", "show", "nope"]) == 2
    assert "smoke_cpu" in capsys.readouterr().out  # the error names the shipped ones


def test_train_config_by_shipped_name():
    assert load_config("smoke_cpu", ["data.path=x"]).model.preset == "test"
    with pytest.raises(Exception, match="btnk-env config list"):
        load_config("no_such_config", ["data.path=x"])
