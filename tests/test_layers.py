"""The import graph follows the layers: ``models`` < ``btnk_env`` (data layer) < ``training`` < command line.

- ``models/``: the networks, their files and identity; imports nothing of the project above it.
- ``btnk_env/``: the data layer (worlds, wrappers, formats, collection, policies, planning, video);
  imports ``models`` only.
- ``training/``: datasets, losses and training loops; imports ``btnk_env`` and ``models``.
- the command line (``btnk_env/cli.py``, ``btnk_env/__main__.py`` and the subcommand modules
  ``btnk_env/*/cli.py``): parses arguments and dispatches to every layer.

Every import counts, the ones inside functions too (a lazy import is still a dependency), so a
cycle between the packages cannot hide in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = {"btnk_env/cli.py", "btnk_env/__main__.py"}
ALLOWED = {"models": {"models"}, "btnk_env": {"btnk_env", "models"},
           "training": {"training", "btnk_env", "models"}, "app": {"app", "training", "btnk_env", "models"}}


def layer_of_module(name: str) -> str | None:
    """The layer an imported module name belongs to, or None for third-party modules."""
    parts = name.split(".")
    if parts[0] == "btnk_env" and len(parts) > 1 and parts[1] in ("models", "training"):
        parts = parts[1:]  # the installed names btnk_env.models / btnk_env.training
    if parts[0] in ("models", "training"):
        return parts[0]
    if parts[0] == "btnk_env":
        return "app" if (len(parts) > 1 and parts[1] in ("cli", "__main__")) or parts[-1] == "cli" else "btnk_env"
    return None


def layer_of_file(rel: str) -> str:
    return "app" if rel in APP or (rel.startswith("btnk_env/") and rel.endswith("/cli.py")) else rel.split("/")[0]


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "btnk_env"]
    return found


def layer_violations() -> list[str]:
    bad = []
    for package in ALLOWED:
        if package == "app":
            continue
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            here = layer_of_file(rel)
            for line, module in imports(path):
                there = layer_of_module(module)
                if there is not None and there not in ALLOWED[here]:
                    bad.append(f"{rel}:{line} ({here}) imports {module} ({there})")
    return bad


def test_no_import_goes_up_a_layer():
    assert layer_violations() == []


def test_the_check_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    """The check is not vacuous: an import inside a function of the data layer is caught."""
    fake = tmp_path / "repo"
    for package in ("models", "btnk_env", "training"):
        (fake / package).mkdir(parents=True)
        (fake / package / "__init__.py").write_text("")
    (fake / "btnk_env" / "imagine.py").write_text("def f():\n    from btnk_env.training.encode import x\n")
    (fake / "models" / "m.py").write_text("import btnk_env.wrappers\n")
    (fake / "btnk_env" / "cli.py").write_text("import btnk_env.training.trainer\n")  # the command line may
    monkeypatch.setitem(globals(), "ROOT", fake)
    assert layer_violations() == ["models/m.py:1 (models) imports btnk_env.wrappers (btnk_env)",
                                  "btnk_env/imagine.py:2 (btnk_env) imports btnk_env.training.encode (training)"]


def test_nothing_imports_the_generic_top_level_names():
    """``models`` and ``training`` install as ``btnk_env.models`` / ``btnk_env.training``: an import by the
    bare name would take a user's own ``models/`` package (or fail) once installed."""
    bare = []
    for folder in ("models", "btnk_env", "training", "tests", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module in imports(path):
                if module.split(".")[0] in ("models", "training"):
                    bare.append(f"{path.relative_to(ROOT).as_posix()}:{line} imports {module}")
    assert bare == []
