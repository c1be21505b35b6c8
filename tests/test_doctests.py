"""The docstring examples of ``btnk_env.models`` and ``btnk_env.training``, run under their installed names.

pytest's ``--doctest-modules`` would import ``models/x.py`` as a top-level ``models.x`` (the folder's
name), a second copy of the module beside ``btnk_env.models.x``; so the two folders installed under
``btnk_env`` are collected here instead, one test per module, by the names users import.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import btnk_env.models
import btnk_env.training


def _modules() -> list[str]:
    names = []
    for package in (btnk_env.models, btnk_env.training):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                  if not m.name.endswith(".__main__")]  # running it is the command, not an example
    return sorted(names)


MODULES = _modules()


def test_every_module_is_found():
    assert "btnk_env.models.btnk_mae" in MODULES and "btnk_env.training.trainer" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test, out=lambda text: print(text, end=""))
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
